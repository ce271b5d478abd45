"""summary.json, the CSVs, confusion.csv and the grids, from a folder's rows (the committed audit of three photos)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import pytest

from ov_explain.runs.audit.folder import read_errors, read_rows
from ov_explain.runs.audit.summary import AuditSummary, write_summary

RUN = {"model": "efficientnet_lite0.xml", "method": "cam", "mode": "whitebox", "device": "CPU", "precision": "f32",
       "target_layer": "Clamp_1", "thresholds": {"high_confidence": 0.5, "two_predictions": 0.2}, "seconds": 1.0,
       "images_per_second": 3.0, "resumed": 0, "readout": "probability"}


@pytest.fixture
def folder(tmp_path) -> Path:
    out = tmp_path / "audit"
    shutil.copytree(Path(__file__).parent / "data" / "audit_eadc0a2", out)
    for name in ("summary.json", "confusion.csv", "manifest.csv", "errors.csv"):
        (out / name).unlink()
    return out


def test_the_summary_counts_cases_accuracy_and_confusion_from_the_rows(folder):
    rows = list(read_rows(folder))
    summary = write_summary(folder, rows, read_errors(folder), RUN, grid_tiles=4)
    assert (summary.images, summary.errors) == (3, 0)  # coffee, camera, chelsea
    assert summary.cases == {"True_positive_high_confidence": 2, "False_positive_low_confidence": 1}
    assert (summary.top1_accuracy, summary.top5_accuracy) == (0.6667, 1.0)  # chelsea: tiger cat over tabby
    assert summary.confusion["tabby"] == {"tiger cat": 1}
    with open(folder / "confusion.csv", newline="") as handle:
        assert list(csv.DictReader(handle)) == [
            {"ground_truth": "espresso", "predicted": "espresso", "images": "1"},
            {"ground_truth": "tabby", "predicted": "tiger cat", "images": "1"},
            {"ground_truth": "tripod", "predicted": "tripod", "images": "1"}]
    with open(folder / "manifest.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == len(rows) == 4  # chelsea has two explained classes
    assert json.loads((folder / "summary.json").read_text())["cases"] == summary.cases
    grid = cv2.imread(str(folder / summary.grids["True_positive_high_confidence"]))
    assert grid is not None and grid.shape[0] > 100 and grid.shape[1] > 100


def test_a_summary_whose_counts_do_not_add_up_is_refused(folder):
    with pytest.raises(ValueError, match="add up to 2, not 3 images"):
        AuditSummary(out_dir=folder, images=3, errors=0, cases={"True_positive_high_confidence": 2}, per_class={},
                     confusion={}, top1_accuracy=None, top5_accuracy=None, **{k: v for k, v in RUN.items()})
