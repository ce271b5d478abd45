"""The per-box case rules, table-tested (edge cases included), and AP50 against pycocotools' COCOeval on the same
boxes."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from ov_explain.runs.detection.cases import (
    FALSE_NEGATIVE,
    FP_BACKGROUND_HIGH,
    FP_BACKGROUND_LOW,
    FP_DUPLICATE,
    FP_MISLOCALIZED,
    FP_WRONG_CLASS,
    IGNORED_CROWD,
    NO_GT_HIGH,
    NO_GT_LOW,
    TP_HIGH,
    TP_LOW,
    BoxThresholds,
    Found,
    Truth,
    average_precision,
    classify_boxes,
)

FACE, CAT = 0, 1
BOX = (10.0, 10.0, 50.0, 50.0)


def shifted(dx: float) -> tuple[float, float, float, float]:
    return (BOX[0] + dx, BOX[1], BOX[2] + dx, BOX[3])


@pytest.mark.parametrize("found, truths, expected", [
    # one detection, one box
    ([Found(BOX, FACE, 0.9)], [Truth(BOX, FACE)], [(TP_HIGH, 0, 0)]),
    ([Found(BOX, FACE, 0.3)], [Truth(BOX, FACE)], [(TP_LOW, 0, 0)]),
    ([Found(BOX, CAT, 0.9)], [Truth(BOX, FACE)], [(FP_WRONG_CLASS, 0, 0), (FALSE_NEGATIVE, None, 0)]),
    ([Found(shifted(25), FACE, 0.9)], [Truth(BOX, FACE)], [(FP_MISLOCALIZED, 0, 0), (FALSE_NEGATIVE, None, 0)]),
    ([Found((100, 100, 120, 120), FACE, 0.9)], [Truth(BOX, FACE)],
     [(FP_BACKGROUND_HIGH, 0, None), (FALSE_NEGATIVE, None, 0)]),
    ([Found((100, 100, 120, 120), FACE, 0.2)], [], [(FP_BACKGROUND_LOW, 0, None)]),
    ([], [Truth(BOX, FACE)], [(FALSE_NEGATIVE, None, 0)]),
    # two detections on one box: the better one matches, the other is a duplicate (listed in detection order)
    ([Found(shifted(2), FACE, 0.6), Found(BOX, FACE, 0.9)], [Truth(BOX, FACE)],
     [(FP_DUPLICATE, 0, 0), (TP_HIGH, 1, 0)]),
    # one detection over two boxes of its class: it matches the one it overlaps most; the other is missed
    ([Found(shifted(10), FACE, 0.9)], [Truth(BOX, FACE), Truth(shifted(12), FACE)],
     [(TP_HIGH, 0, 1), (FALSE_NEGATIVE, None, 0)]),
    # a crowd box: a detection on it is its own case (kept out of the scores), and the crowd is never missed
    ([Found((12, 12, 30, 30), FACE, 0.9)], [Truth(BOX, FACE, crowd=True)], [(IGNORED_CROWD, 0, 0)]),
    ([Found((12, 12, 30, 30), CAT, 0.9)], [Truth(BOX, FACE, crowd=True)], [(FP_BACKGROUND_HIGH, 0, None)]),
    # a better-overlapping box of another class does not stop a match of its own class
    ([Found(BOX, FACE, 0.9)], [Truth(BOX, CAT), Truth(shifted(5), FACE)],
     [(TP_HIGH, 0, 1), (FALSE_NEGATIVE, None, 0)]),
])
def test_each_box_gets_the_first_case_that_applies(found, truths, expected):
    assert [(c.case, c.detection, c.truth) for c in classify_boxes(found, truths)] == expected


def test_without_ground_truth_the_score_decides():
    cases = classify_boxes([Found(BOX, FACE, 0.7), Found(BOX, CAT, 0.1)], None)
    assert [c.case for c in cases] == [NO_GT_HIGH, NO_GT_LOW]
    with pytest.raises(Exception, match="box thresholds"):
        BoxThresholds(iou=0.05, mislocalized_iou=0.1)


def _coco(images: list[tuple[list[Truth], list[Found]]]) -> float:
    """AP50 (mean over classes with ground truth) by pycocotools' COCOeval."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = {"images": [{"id": i, "width": 200, "height": 200} for i in range(len(images))],
          "categories": [{"id": c} for c in (FACE, CAT)], "annotations": []}
    detections = []
    for i, (truths, found) in enumerate(images):
        for t in truths:
            x1, y1, x2, y2 = t.box
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i, "category_id": t.class_index,
                                      "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                      "iscrowd": int(t.crowd)})
        detections += [{"image_id": i, "category_id": f.class_index, "score": f.score,
                        "bbox": [f.box[0], f.box[1], f.box[2] - f.box[0], f.box[3] - f.box[1]]} for f in found]
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints its progress
        truth = COCO()
        truth.dataset = gt
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(detections), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[1])


def _ours(images: list[tuple[list[Truth], list[Found]]]) -> float:
    per_class = []
    for cls in (FACE, CAT):
        scores, hits, positives = [], [], 0
        for truths, found in images:
            positives += sum(t.class_index == cls and not t.crowd for t in truths)
            for case in classify_boxes(found, truths):
                if case.detection is not None and found[case.detection].class_index == cls \
                        and case.case != IGNORED_CROWD:
                    scores.append(found[case.detection].score)
                    hits.append(case.case in (TP_HIGH, TP_LOW))
        per_class.append(average_precision(scores, hits, positives))
    return float(np.nanmean(per_class))


@pytest.mark.parametrize("seed", range(8))
def test_ap50_agrees_with_cocoeval(seed):
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(6):
        truths = []
        for _ in range(int(rng.integers(1, 5))):
            x, y, w, h = (float(v) for v in rng.uniform([0, 0, 20, 20], [150, 150, 50, 50]))
            truths.append(Truth((x, y, x + w, y + h), int(rng.integers(0, 2)), crowd=bool(rng.random() < 0.1)))
        found = []
        for t in truths:  # near each box, sometimes twice, sometimes the other class; plus background
            for _ in range(int(rng.integers(0, 3))):
                jitter = rng.normal(0, 6, 4)
                found.append(Found(tuple(float(v) for v in np.array(t.box) + jitter),
                                   t.class_index if rng.random() < 0.8 else 1 - t.class_index,
                                   float(rng.uniform(0.05, 1.0))))
        for _ in range(int(rng.integers(0, 3))):
            x, y = (float(v) for v in rng.uniform(0, 150, 2))
            found.append(Found((x, y, x + 30, y + 30), int(rng.integers(0, 2)), float(rng.uniform(0.05, 1.0))))
        images.append((truths, found))
    assert _ours(images) == pytest.approx(_coco(images), abs=1e-6)
