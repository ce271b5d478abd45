"""Detector drift: boxes matched across deployments (table-tested), and FP32 vs INT8 of the real YOLOv8n on the
bundled faces, through the CLI with its gate."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from ov_explain.runs.detection.cases import Found
from ov_explain.runs.detection.drift import BoxDriftRow, DetectionDriftSummary, match_boxes
from ov_explain.runs.drift.gate import parse_gate

FACE, OTHER = 1, 12


def box(x: float, cls: int = FACE, score: float = 0.8, size: float = 100.0) -> Found:
    return Found((x, 0.0, x + size, size), cls, score)


@pytest.mark.parametrize("reference, candidate, expected", [
    ([box(0)], [box(5)], [(0, 0)]),  # the same face, moved a little: kept
    ([box(0)], [], [(0, None)]),  # lost
    ([], [box(0)], [(None, 0)]),  # new
    ([box(0)], [box(0, OTHER)], [(0, 0)]),  # same place, another class: paired (Class_changed)
    ([box(0)], [box(0, OTHER), box(2)], [(0, 1), (None, 0)]),  # its own class first, the other box is new
    ([box(0), box(300)], [box(310), box(4)], [(0, 1), (1, 0)]),  # in any order
    ([box(0)], [box(60)], [(0, None), (None, 0)]),  # IoU 0.25: not the same box
    ([box(0), box(10)], [box(5)], [(0, 0), (1, None)]),  # one candidate box for two: the better overlap keeps it
], ids=["kept", "lost", "new", "class-changed", "own-class-first", "any-order", "too-far", "one-for-two"])
def test_boxes_are_matched_across_deployments(reference, candidate, expected):
    assert match_boxes(reference, candidate, 0.5) == expected


def test_a_share_of_nothing_is_not_measured_and_fails_a_gate(tmp_path):
    nothing = DetectionDriftSummary(
        out_dir=tmp_path, images=3, rows=3, errors=0, resumed=0, reference_boxes=0, candidate_boxes=0, kept=0, lost=0,
        new=0, class_changed=0, box_agreement=None, score_change_median=None, map_correlation_median=None,
        map_correlation_p05=None, iou_top10_median=None, cases={"No_boxes": 3}, case_transitions={}, reference={},
        candidate={}, thresholds={}, seconds=1.0)
    metrics = nothing.metrics()
    assert metrics["boxes-lost"] is metrics["boxes-new"] is metrics["attention-moved"] is None
    assert parse_gate("boxes-lost>0.1")[0].crossed(metrics)  # no box in either deployment: not a pass
    some = dataclasses.replace(nothing, reference_boxes=4, candidate_boxes=2, kept=2, lost=2, cases={"Stable": 2})
    assert some.metrics()["boxes-lost"] == 0.5 and some.metrics()["boxes-new"] == 0.0
    assert some.metrics()["attention-moved"] == 0.0


@pytest.fixture(scope="module")
def int8_detector(tmp_path_factory, yolov8_path, photos_dir):
    pytest.importorskip("nncf", reason="the quantize extra is not installed")
    from ov_explain.tools.quantize import quantize

    out = tmp_path_factory.mktemp("int8") / "yolov8n_int8.xml"
    report = quantize(yolov8_path, photos_dir, out)
    assert report.quantized_ops > 100 and report.size_after_bytes < report.size_before_bytes / 2
    return out


@pytest.mark.slow
def test_fp32_vs_int8_drift_of_the_detector_through_the_cli(run, int8_detector, yolov8_path, faces_coco, tmp_path):
    out = tmp_path / "drift"
    common = ["drift", faces_coco, "--reference", yolov8_path, "--candidate", int8_detector, "--reference-device",
              "CPU", "--no-cache", "--out", out]
    result = run(*common, "--json", "--fail-on", "box-agreement<0.5")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["task"] == "detection" and summary["images"] == 7 and summary["errors"] == 0
    assert summary["reference_boxes"] == 3 and summary["class_changed"] == 0  # the three faces, as FP32 finds them
    # INT8 keeps the faces (measured here: 3 kept, none lost or new; one lost or new face is allowed across CPUs)
    assert summary["kept"] >= 2 and summary["lost"] + summary["new"] <= 1
    assert summary["box_agreement"] == pytest.approx(
        summary["kept"] / (summary["kept"] + summary["lost"] + summary["new"] + summary["class_changed"]), abs=1e-4)
    assert -1 <= summary["map_correlation_p05"] <= summary["map_correlation_median"] <= 1
    assert summary["candidate"]["target_layer"] != summary["reference"]["target_layer"]  # the INT8 graph's own cut
    rows = [BoxDriftRow.from_dict(json.loads(line)) for line in (out / "drift.jsonl").read_text().splitlines()]
    kept = [r for r in rows if r.correlation is not None]
    assert kept and all((out / r.image_path).is_file() and (out / r.reference_map_path).is_file() and
                        (out / r.candidate_map_path).is_file() for r in kept)
    for row in kept:  # the row's correlation is the one of its two maps
        a, b = np.load(out / row.reference_map_path).ravel(), np.load(out / row.candidate_map_path).ravel()
        assert row.correlation == pytest.approx(float(np.corrcoef(a, b)[0, 1]), abs=1e-5)
    assert {r.reference_case for r in kept} == {"True_positive_high_confidence"}
    report = (out / "report.html").read_text()
    assert report.count('class="item"') == len(rows) - sum(r.image_path is None for r in rows) and \
        "box agreement" in report
    again = run(*common, "--fail-on", "box-agreement>0.0,top1-agreement<0.9")
    assert again.exit_code == 4 and "7 resumed" in again.output and "boxes:" in again.output
    assert "top1-agreement<0.9 (not measured for this model" in again.output
    exported = run("export", out, "--to", tmp_path / "objects")
    assert exported.exit_code == 2 and "a detector's drift folder is not exported" in exported.output
    assert "Traceback" not in exported.output and not (tmp_path / "objects").exists()
