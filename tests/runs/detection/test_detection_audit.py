"""Detection audits of the real YOLOv8n on the bundled photos and their hand-drawn face boxes: cases per box,
maps of missed boxes, names, the manifest, AP against pycocotools, resume, refusals, the CLI."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ov_explain.core.detection import iou, to_input_box, truth_target
from ov_explain.explain.detection import DetectionExplainer
from ov_explain.runs.audit.run import AuditError, audit
from ov_explain.runs.detection.cases import FALSE_NEGATIVE, IGNORED_CROWD, TP_HIGH, TP_LOW, average_precision
from ov_explain.runs.detection.folder import NO_BOXES, BoxRow, read_box_rows
from ov_explain.runs.detection.summary import NOT_EVALUATED, write_detection_summary
from ov_explain.runs.naming import parse_box_name

pytestmark = pytest.mark.slow


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def without_timings(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.endswith("_ms")} for r in rows]


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def faces_audit(tmp_path_factory, faces_coco, yolov8_path) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("faces") / "audit"
    return out, audit(faces_coco, out, model=yolov8_path, device="CPU", cache_dir=None)


def test_faces_are_true_positives_and_the_missed_face_is_a_false_negative_with_its_map(faces_audit):
    out, summary = faces_audit
    rows = list(read_box_rows(out))
    by_stem = {r.stem: r for r in rows}
    assert summary.images == 7 and summary.errors == 0 and summary.boxes == 4
    assert summary.cases == {TP_HIGH: 3, FALSE_NEGATIVE: 1} and summary.images_without_boxes == 3
    for stem, label in (("astronaut", "FACE_FEMALE"), ("grace_hopper", "FACE_FEMALE"), ("camera", "FACE_MALE")):
        row = by_stem[stem]
        assert (row.case, row.detected_class, row.ground_truth_class) == (TP_HIGH, label, label)
        assert row.iou > 0.8 and row.score > 0.5 and row.detected_box is not None and row.truth_box is not None
    assert {by_stem[s].case for s in ("coffee", "motorcycle", "rocket")} == {NO_BOXES}
    missed = by_stem["chelsea"]
    assert missed.case == FALSE_NEGATIVE and missed.detection is None and missed.detected_class is None
    assert missed.truth_box == (80.0, 10.0, 380.0, 300.0) and missed.target_class == "FACE_FEMALE"
    # Its map is the class's score at the anchor whose proposal overlaps the box most: what the model made of it.
    raw = np.load(out / missed.raw_path)
    assert raw.shape == (10, 10) and raw.std() > 0
    assert missed.target_score < 0.25 and missed.anchor is not None
    for row in rows:
        if row.overlay_path is None:
            continue
        parts = parse_box_name(Path(row.overlay_path).name)
        assert (parts.name.stem, parts.box, parts.extension) == (row.stem, row.target_rank, ".jpg")
        assert parts.name.ground_truth == row.ground_truth_class
        assert Path(row.overlay_path).parent.name == row.case and (out / row.overlay_path).is_file()
    assert json.loads((out / "audit.json").read_text())["task"] == "detection"
    assert (out / "grids" / f"{FALSE_NEGATIVE}.jpg").is_file() and (out / "classes.csv").is_file()
    report = (out / "report.html").read_text()
    assert report.count('class="item"') == 4 and "chelsea box 0" in report and "(missed)" in report
    assert f"IoU {by_stem['astronaut'].iou:.2f}" in report and "IoU 0.00" not in report  # a missed box has no IoU


def test_a_missed_box_s_map_reads_the_best_overlapping_anchor(yolov8, photos_dir):
    explainer = DetectionExplainer(yolov8)
    box, face = (80.0, 10.0, 380.0, 300.0), yolov8.names.index("FACE_FEMALE")
    prepared = explainer.prepare(photos_dir / "chelsea.jpg")
    result = explainer.explain_prepared(prepared, [], truths=[(box, face)])
    assert result.detections.detections == [] and len(result.maps) == 1 and len(result.truths) == 1
    target = result.truths[0]
    assert target.box == box and target.scores[face] == 1.0
    # Its anchor: the proposal overlapping the box most (on a tie, scoring the class higher), computed here.
    proposals = result.detections.proposals
    overlaps = iou(np.array(to_input_box(box, prepared.geometry), np.float32), proposals.boxes)
    best = np.flatnonzero(overlaps == overlaps.max())
    assert target.anchor == best[np.argmax(proposals.scores[best, face])]
    assert target.score == pytest.approx(float(proposals.scores[target.anchor, face]))
    # The same map as a detection at that anchor would have: the mosaic's class logit there, cell by cell.
    expected = truth_target(proposals, prepared.geometry, box, face, yolov8.names)
    again = explainer.raw_maps(prepared, [expected])
    assert np.array_equal(result.maps[0].raw, again[0])


def test_ap_agrees_with_pycocotools_on_the_same_boxes(faces_audit, faces_coco):
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    out, summary = faces_audit
    data = json.loads(faces_coco.read_text())
    ids = {i["file_name"]: i["id"] for i in data["images"]}
    categories = {c["name"]: c["id"] for c in data["categories"]}
    found = [{"image_id": ids[r["key"]], "category_id": categories[r["detected_class"]], "score": r["score"],
              "bbox": [r["detected_left"], r["detected_top"], r["detected_right"] - r["detected_left"],
                       r["detected_bottom"] - r["detected_top"]]}
             for r in manifest(out) if r["detection"] is not None]
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = data
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(found), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
    precision = evaluation.eval["precision"][0, :, :, 0, 2]  # IoU 0.5, every recall point, class, all areas, 100
    for name, column in sorted(categories.items(), key=lambda item: item[1]):
        expected = float(np.mean(precision[:, column - 1]))
        assert summary.per_class[name]["ap"] == pytest.approx(expected, abs=1e-4), name
    assert summary.per_class["FACE_FEMALE"]["ap"] == pytest.approx(67 / 101, abs=1e-4)  # recall 2/3 at precision 1


def test_a_rerun_resumes_and_a_torn_row_is_redone(faces_audit, faces_coco, yolov8_path, tmp_path):
    reference, _ = faces_audit
    out = tmp_path / "audit"
    shutil.copytree(reference, out)
    (out / "True_positive_high_confidence" / "notes.txt").write_text("the user's")
    lines = (out / "manifest.jsonl").read_text().splitlines(keepends=True)
    (out / "manifest.jsonl").write_text("".join(lines[:-1]) + lines[-1][:40])  # a row torn by a kill
    summary = audit(faces_coco, out, model=yolov8_path, device="CPU", cache_dir=None)
    assert summary.resumed == 6 and summary.images == 7
    assert without_timings(manifest(out)) == without_timings(manifest(reference))
    assert files_under(out) == files_under(reference) | {"True_positive_high_confidence/notes.txt"}
    again = audit(faces_coco, out, model=yolov8_path, device="CPU", cache_dir=None)
    assert again.resumed == 7 and again.cases == summary.cases


def test_different_box_thresholds_or_a_classifier_audit_folder_are_refused(faces_audit, faces_coco, yolov8_path,
                                                                            photos_dir, tmp_path):
    reference, _ = faces_audit
    out = tmp_path / "audit"
    shutil.copytree(reference, out)
    with pytest.raises(AuditError, match=r"different settings \(thresholds\)"):
        audit(faces_coco, out, model=yolov8_path, device="CPU", cache_dir=None, match_iou=0.7)
    with pytest.raises(AuditError, match=r"different settings \(.*task"):
        audit(photos_dir / "ground_truth.csv", out, device="CPU", cache_dir=None, limit=1)
    before = files_under(out)
    with pytest.raises(AuditError, match="holds a detection run, and restart only replaces a classification run"):
        audit(photos_dir / "ground_truth.csv", out, device="CPU", cache_dir=None, limit=1, restart=True)
    assert files_under(out) == before  # the detector's run is left whole, not half cleared
    stricter = audit(faces_coco, out, model=yolov8_path, device="CPU", cache_dir=None, match_iou=0.9, restart=True)
    assert stricter.resumed == 0 and stricter.cases.get(TP_HIGH, 0) == 1  # only grace_hopper's box fits at 0.9


def test_unknown_ground_truth_classes_are_one_setup_error_and_a_label_map_fixes_them(faces_coco, yolov8_path,
                                                                                    photos_dir, tmp_path):
    data = json.loads(faces_coco.read_text())
    data["categories"] = [{"id": 1, "name": "woman"}, {"id": 2, "name": "man"}]
    renamed = tmp_path / "renamed.json"
    renamed.write_text(json.dumps(data))
    with pytest.raises(AuditError, match=r"2 ground-truth class name\(s\) are none of the model's classes "
                                         r"\('man', 'woman'.*--label-map"):
        audit(renamed, tmp_path / "out", model=yolov8_path, images=photos_dir, device="CPU", cache_dir=None)
    assert not (tmp_path / "out").exists()  # refused before any image
    summary = audit(renamed, tmp_path / "mapped", model=yolov8_path, images=photos_dir, device="CPU", cache_dir=None,
                    label_map={"woman": "FACE_FEMALE", "man": "FACE_MALE"}, limit=3)
    rows = list(read_box_rows(tmp_path / "mapped"))
    assert summary.cases == {TP_HIGH: 2, FALSE_NEGATIVE: 1} and {r.ground_truth for r in rows if r.truth is not None} \
        == {"man", "woman"}


def test_without_ground_truth_boxes_are_cased_by_score(yolov8_path, photos_dir, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("astronaut.jpg", "camera.jpg", "rocket.jpg"):
        shutil.copy(photos_dir / name, folder / name)
    summary = audit(folder, tmp_path / "audit", model=yolov8_path, device="CPU", cache_dir=None, high_confidence=0.7)
    rows = {r.stem: r for r in read_box_rows(tmp_path / "audit")}
    assert summary.cases == {"No_ground_truth_high_confidence": 1, "No_ground_truth_low_confidence": 1}
    assert rows["astronaut"].case == "No_ground_truth_high_confidence" and rows["rocket"].case == NO_BOXES
    assert summary.mean_ap is None and rows["camera"].truths is None


def test_the_cli_audits_a_yolo_folder(run, yolov8_path, photos_dir, tmp_path):
    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "data.yaml").write_text("names: [FACE_FEMALE, FACE_MALE]\n")
    shutil.copy(photos_dir / "astronaut.jpg", root / "images" / "astronaut.jpg")
    # (170, 80, 276, 184) of 512 x 512, and a second face nowhere near one: a miss
    (root / "labels" / "astronaut.txt").write_text("0 0.4355 0.2578 0.2070 0.2031\n1 0.1 0.9 0.1 0.1\n")
    result = run("audit", root, "--model", yolov8_path, "--device", "CPU", "--no-cache", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "1 image, 2 boxes audited" in result.output and "True_positive_high_confidence              1" in \
        result.output and "FACE_MALE: 1 box, 0 detections; recall 0.000, AP50 0.000" in result.output
    rows = [BoxRow.from_dict(r) for r in manifest(tmp_path / "out")]
    assert [r.case for r in rows] == [TP_HIGH, FALSE_NEGATIVE] and rows[1].ground_truth_class == "FACE_MALE"
    wrong = run("audit", root, "--model", yolov8_path, "--kind", "csv", "--out", tmp_path / "csv")
    assert wrong.exit_code == 2 and "a detector audits a COCO file, a YOLO folder or a folder of images" in \
        wrong.output and "Traceback" not in wrong.output


def test_a_blackbox_audit_explains_a_missed_box_with_drise_against_it(faces_coco, yolov8_path, yolov8, photos_dir,
                                                                      tmp_path):
    from ov_explain.core.detection import to_input_box
    from ov_explain.explain.config import ExplainConfig
    from ov_explain.explain.methods.drise import drise

    options = {"num_masks": 96, "num_cells": 8}
    summary = audit(faces_coco, tmp_path / "audit", model=yolov8_path, device="CPU", cache_dir=None, limit=3,
                    explain=ExplainConfig(mode="blackbox", options=options))
    assert summary.method == "drise" and summary.cases == {TP_HIGH: 2, FALSE_NEGATIVE: 1}
    missed = next(r for r in read_box_rows(tmp_path / "audit") if r.case == FALSE_NEGATIVE)
    assert missed.inferences == 1 + 96 // 8 and missed.readout is None
    # D-RISE's definition with the ground-truth box and its class's one-hot vector as the target.
    prepared = DetectionExplainer(yolov8, mode="blackbox", **options).prepare(photos_dir / "chelsea.jpg")
    one_hot = np.zeros((1, yolov8.num_classes), np.float32)
    one_hot[0, missed.target_index] = 1.0
    expected = drise(yolov8, prepared, np.array([to_input_box(missed.truth_box, prepared.geometry)], np.float32),
                     one_hot, seed=0, chunk=8, **options)
    np.testing.assert_allclose(np.load(tmp_path / "audit" / missed.raw_path), expected[0], rtol=1e-6, atol=1e-7)


def test_a_yolo_folder_audits_like_the_same_boxes_in_coco(faces_audit, faces_coco, yolov8_path, photos_dir, tmp_path):
    """YOLO's fractions become the same pixel boxes once each image is read; an image without a labels file is a
    background image: its detections would be false positives, and it counts as an image with nothing to find."""
    reference, _ = faces_audit
    data = json.loads(faces_coco.read_text())
    names = [c["name"] for c in sorted(data["categories"], key=lambda c: c["id"])]
    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("\n".join(names) + "\n")
    for image in data["images"]:
        if image["file_name"] not in ("astronaut.jpg", "camera.jpg", "coffee.jpg"):
            continue
        shutil.copy(photos_dir / image["file_name"], root / "images" / image["file_name"])
        lines = [f"{a['category_id'] - 1} {(a['bbox'][0] + a['bbox'][2] / 2) / image['width']} "
                 f"{(a['bbox'][1] + a['bbox'][3] / 2) / image['height']} {a['bbox'][2] / image['width']} "
                 f"{a['bbox'][3] / image['height']}" for a in data["annotations"] if a["image_id"] == image["id"]]
        if lines:
            (root / "labels" / image["file_name"]).with_suffix(".txt").write_text("\n".join(lines) + "\n")
    summary = audit(root, tmp_path / "audit", model=yolov8_path, device="CPU", cache_dir=None)
    rows, coco = ({r.stem: r for r in read_box_rows(folder)} for folder in (tmp_path / "audit", reference))
    assert summary.cases == {TP_HIGH: 2} and summary.images_without_boxes == 1
    for stem in ("astronaut", "camera"):
        assert rows[stem].truth_box == pytest.approx(coco[stem].truth_box, abs=1e-3)
        assert (rows[stem].iou, rows[stem].case) == (pytest.approx(coco[stem].iou, abs=1e-4), coco[stem].case)
    assert rows["coffee"].case == NO_BOXES and rows["coffee"].truths == 0  # background: nothing to find


def test_a_detection_on_a_crowd_box_is_shown_but_not_scored(faces_coco, yolov8_path, photos_dir, tmp_path):
    data = json.loads(faces_coco.read_text())
    astronaut = next(i["id"] for i in data["images"] if i["file_name"] == "astronaut.jpg")
    for annotation in data["annotations"]:
        annotation["iscrowd"] = int(annotation["image_id"] == astronaut)
    crowd = tmp_path / "crowd.json"
    crowd.write_text(json.dumps(data))
    summary = audit(crowd, tmp_path / "audit", model=yolov8_path, images=photos_dir, device="CPU", cache_dir=None,
                    limit=3)  # astronaut (its face a crowd box), camera, chelsea
    rows = {r.stem: r for r in read_box_rows(tmp_path / "audit")}
    assert rows["astronaut"].case == IGNORED_CROWD and rows["astronaut"].ground_truth_class == "FACE_FEMALE"
    assert (tmp_path / "audit" / rows["astronaut"].overlay_path).is_file()
    assert summary.cases == {TP_HIGH: 1, IGNORED_CROWD: 1, FALSE_NEGATIVE: 1}
    female = summary.per_class["FACE_FEMALE"]
    # the crowd detection is neither a true nor a false positive, and the crowd box is no positive to find
    assert (female["true_positives"], female["false_positives"], female["ground_truth"], female["ap"]) == (0, 0, 1, 0.0)


def run_of(summary) -> dict:
    """What a detection summary takes besides the rows, as the audit that made ``summary`` passed it."""
    return {k: getattr(summary, k) for k in ("model", "method", "mode", "device", "precision", "target_layer",
                                             "readout", "thresholds", "ap_iou", "seconds", "images_per_second",
                                             "resumed")}


def test_the_summary_is_one_pass_over_the_rows_and_counts_what_the_rows_held_at_once_say(faces_audit, tmp_path):
    out, summary = faces_audit
    copy = tmp_path / "audit"
    shutil.copytree(out, copy)
    passes = []

    def rows():
        passes.append(1)
        return read_box_rows(copy)

    again = write_detection_summary(copy, rows, [], run_of(summary), grid_tiles=24)
    assert len(passes) == 1 and (copy / "manifest.csv").read_bytes() == (out / "manifest.csv").read_bytes()
    held = list(read_box_rows(copy))
    evaluated = [r for r in held if r.case not in NOT_EVALUATED]
    assert again.images == len({r.key for r in held}) == 7 and again.boxes == sum(r.case != NO_BOXES for r in held)
    assert set(again.per_class) == {r.detected_class for r in held if r.detected_class} | {
        r.ground_truth_class for r in evaluated if r.ground_truth_class}
    for name, values in again.per_class.items():
        found = [r for r in evaluated if r.detection is not None and r.detected_class == name]
        hits = [r.case in (TP_HIGH, TP_LOW) for r in found]
        missed = sum(r.case == FALSE_NEGATIVE and r.ground_truth_class == name for r in evaluated)
        ap = average_precision([r.score for r in found], hits, sum(hits) + missed)
        assert (values["true_positives"], values["false_positives"], values["false_negatives"]) == (
            sum(hits), len(found) - sum(hits), missed)
        assert values["ap"] == (None if np.isnan(ap) else round(ap, 4))
    assert again.per_class == summary.per_class and again.grids == summary.grids
    assert all((copy / p).read_bytes() == (out / p).read_bytes() for p in summary.grids.values())


def test_a_first_row_without_boxes_gives_every_column_in_a_second_pass(faces_audit, tmp_path):
    from ov_explain.runs.audit.summary import write_csv

    out, summary = faces_audit
    copy = tmp_path / "audit"
    shutil.copytree(out, copy)
    lines = (copy / "manifest.jsonl").read_text().splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if f'"{NO_BOXES}"' in line)  # no detected_* or truth_* columns
    (copy / "manifest.jsonl").write_text("".join([lines[first]] + lines[:first] + lines[first + 1:]))
    passes = []

    def rows():
        passes.append(1)
        return read_box_rows(copy)

    again = write_detection_summary(copy, rows, [], run_of(summary), grid_tiles=None)
    write_csv(tmp_path / "expected.csv", [r.to_dict() for r in read_box_rows(copy)])
    assert len(passes) == 2 and (copy / "manifest.csv").read_bytes() == (tmp_path / "expected.csv").read_bytes()
    assert again.per_class == summary.per_class and again.images == 7
