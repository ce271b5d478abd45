"""Per-box cases of a detection audit, pure functions: detections matched to ground-truth boxes by IoU.

Matching is COCO's: detections in decreasing score, each takes the unmatched ground-truth box of its class it
overlaps most, at IoU >= ``iou``; a detection over a crowd box (``iscrowd``) is ignored by the scores (its own
case, kept out of precision and AP), and crowd boxes are never missed. Then one case per box:

| case | a detection that ... |
|---|---|
| ``True_positive_high_confidence`` / ``_low_confidence`` | matched a box of its class (score vs ``high_confidence``) |
| ``Ignored_crowd`` | lies on a crowd box of its class (its share inside it >= ``iou``): neither right nor wrong |
| ``False_positive_duplicate`` | overlaps a box of its class at IoU >= ``iou`` that a better detection took |
| ``False_positive_wrong_class`` | overlaps a box of another class at IoU >= ``iou`` |
| ``False_positive_mislocalized`` | overlaps a box of its class at ``mislocalized_iou`` <= IoU < ``iou`` |
| ``False_positive_background_high_confidence`` / ``_low_confidence`` | overlaps nothing enough |
| ``False_negative`` | (a ground-truth box) was matched by no detection |
| ``No_ground_truth_high_confidence`` / ``_low_confidence`` | (an image without boxes listed) by score alone |

The first rule that applies decides, in the table's order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ov_explain.core.detection import iou as box_iou
from ov_explain.core.errors import OvExplainError

logger = logging.getLogger(__name__)

TP_HIGH, TP_LOW = "True_positive_high_confidence", "True_positive_low_confidence"
FP_DUPLICATE, FP_WRONG_CLASS, FP_MISLOCALIZED = ("False_positive_duplicate", "False_positive_wrong_class",
                                                 "False_positive_mislocalized")
FP_BACKGROUND_HIGH, FP_BACKGROUND_LOW = "False_positive_background_high_confidence", \
    "False_positive_background_low_confidence"
IGNORED_CROWD = "Ignored_crowd"
FALSE_NEGATIVE = "False_negative"
NO_GT_HIGH, NO_GT_LOW = "No_ground_truth_high_confidence", "No_ground_truth_low_confidence"
BOX_CASES = (TP_HIGH, TP_LOW, IGNORED_CROWD, FP_DUPLICATE, FP_WRONG_CLASS, FP_MISLOCALIZED, FP_BACKGROUND_HIGH,
             FP_BACKGROUND_LOW, FALSE_NEGATIVE, NO_GT_HIGH, NO_GT_LOW)


@dataclass(frozen=True)
class BoxThresholds:
    """IoU for a match (and for a wrong class or a duplicate), the lowest IoU of a mislocalised box, and the
    score from which a detection counts as confident."""

    iou: float = 0.5
    mislocalized_iou: float = 0.1
    high_confidence: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.mislocalized_iou < self.iou <= 1.0 or not 0.0 < self.high_confidence <= 1.0:
            raise OvExplainError(f"box thresholds: expected 0 < mislocalized IoU < IoU <= 1 and 0 < high confidence "
                                 f"<= 1, got {self.mislocalized_iou}, {self.iou}, {self.high_confidence}")


@dataclass(frozen=True)
class Truth:
    """A ground-truth box: x1, y1, x2, y2 in the image's pixels, its class index, and COCO's crowd flag."""

    box: tuple[float, float, float, float]
    class_index: int
    crowd: bool = False


@dataclass(frozen=True)
class Found:
    """A detection as the rules see it."""

    box: tuple[float, float, float, float]
    class_index: int
    score: float


@dataclass(frozen=True)
class BoxCase:
    """One box's case: the detection (position in the detections, or None for a missed box), the ground-truth
    box it is compared with (or None) and their IoU."""

    case: str
    detection: int | None
    truth: int | None
    iou: float | None


def _ious(found: Sequence[Found], truths: Sequence[Truth]) -> np.ndarray:
    if not found or not truths:
        return np.zeros((len(found), len(truths)), np.float32)
    boxes = np.array([t.box for t in truths], np.float32)
    return np.stack([box_iou(np.array(f.box, np.float32), boxes) for f in found])


def classify_boxes(found: Sequence[Found], truths: Sequence[Truth] | None,
                   thresholds: BoxThresholds = BoxThresholds()) -> list[BoxCase]:
    """Every detection's case (in their order), then every missed ground-truth box's; ``truths=None``: the image
    has no ground truth, cases by score alone."""
    high = lambda score: score >= thresholds.high_confidence  # noqa: E731
    if truths is None:
        return [BoxCase(NO_GT_HIGH if high(f.score) else NO_GT_LOW, i, None, None) for i, f in enumerate(found)]
    overlap = _ious(found, truths)
    taken: set[int] = set()
    cases: dict[int, BoxCase] = {}
    for i in sorted(range(len(found)), key=lambda i: -found[i].score):  # COCO: best detections match first
        same = [j for j, t in enumerate(truths) if t.class_index == found[i].class_index and not t.crowd]
        free = [j for j in same if j not in taken and overlap[i, j] >= thresholds.iou]
        if free:
            j = max(free, key=lambda j: overlap[i, j])
            taken.add(j)
            cases[i] = BoxCase(TP_HIGH if high(found[i].score) else TP_LOW, i, j, float(overlap[i, j]))
            continue
        covered = {j: _covered(found[i].box, t.box) for j, t in enumerate(truths)
                   if t.crowd and t.class_index == found[i].class_index}
        crowd = max((j for j in covered if covered[j] >= thresholds.iou), key=covered.get, default=None)
        if crowd is not None:  # on a crowd region: neither right nor wrong (COCO), shown but not scored
            cases[i] = BoxCase(IGNORED_CROWD, i, crowd, float(covered[crowd]))
            continue
        cases[i] = _unmatched(i, found[i], truths, overlap[i], same, thresholds)
    missed = [BoxCase(FALSE_NEGATIVE, None, j, None) for j, t in enumerate(truths) if j not in taken and not t.crowd]
    return [cases[i] for i in range(len(found)) if i in cases] + missed


def _unmatched(i: int, found: Found, truths: Sequence[Truth], overlap: np.ndarray, same: list[int],
               thresholds: BoxThresholds) -> BoxCase:
    def best(indices: list[int]) -> tuple[int | None, float]:
        if not indices:
            return None, 0.0
        j = max(indices, key=lambda j: overlap[j])
        return j, float(overlap[j])

    j, value = best(same)
    if j is not None and value >= thresholds.iou:
        return BoxCase(FP_DUPLICATE, i, j, value)
    other, other_value = best([k for k, t in enumerate(truths) if t.class_index != found.class_index and not t.crowd])
    if other is not None and other_value >= thresholds.iou:
        return BoxCase(FP_WRONG_CLASS, i, other, other_value)
    if j is not None and value >= thresholds.mislocalized_iou:
        return BoxCase(FP_MISLOCALIZED, i, j, value)
    high = found.score >= thresholds.high_confidence
    return BoxCase(FP_BACKGROUND_HIGH if high else FP_BACKGROUND_LOW, i, None, None)


def _covered(box: Sequence[float], region: Sequence[float]) -> float:
    """The share of ``box`` inside ``region`` (COCO's IoU for crowd regions: intersection over the detection)."""
    left, top = max(box[0], region[0]), max(box[1], region[1])
    right, bottom = min(box[2], region[2]), min(box[3], region[3])
    inter = max(0.0, right - left) * max(0.0, bottom - top)
    area = max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])
    return inter / area if area > 0 else 0.0


def average_precision(scores: Sequence[float], true_positive: Sequence[bool], positives: int) -> float:
    """COCO's AP at one IoU: precision made monotone, sampled at 101 recall points. ``scores`` and
    ``true_positive`` over every image's (non-ignored) detections of one class, ``positives`` its non-crowd
    ground-truth boxes; no ground truth gives NaN, as COCO reports -1."""
    if positives == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores, np.float64), kind="mergesort")
    hits = np.asarray(true_positive, bool)[order]
    tp, fp = np.cumsum(hits), np.cumsum(~hits)
    recall = tp / positives
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    for k in range(len(precision) - 2, -1, -1):
        precision[k] = max(precision[k], precision[k + 1])
    points = np.linspace(0.0, 1.0, 101)
    found = np.searchsorted(recall, points, side="left")
    return float(np.mean([precision[f] if f < len(precision) else 0.0 for f in found]))
