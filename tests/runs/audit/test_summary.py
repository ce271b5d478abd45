"""summary.json, the CSVs, confusion.csv and the grids, from a folder's rows (the committed audit of three photos)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import pytest

from ov_explain.runs.audit.folder import read_errors, read_rows
from ov_explain.runs.audit.summary import AuditSummary, write_csv, write_grids, write_summary

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
    summary = write_summary(folder, read_errors(folder), RUN, grid_tiles=4)
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


def test_the_manifest_csv_is_streamed_with_every_column_in_first_seen_order(folder):
    rows = [r.to_dict() for r in read_rows(folder)]
    write_summary(folder, read_errors(folder), RUN, grid_tiles=None)
    write_csv(folder / "expected.csv", rows)
    assert (folder / "manifest.csv").read_bytes() == (folder / "expected.csv").read_bytes()
    # A folder resumed from an earlier version: its first rows lack columns the later ones have.
    older = [{k: v for k, v in row.items() if k not in ("readout", "map_left")} for row in rows[:2]]
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in older + rows[2:]))
    write_summary(folder, read_errors(folder), RUN, grid_tiles=None)
    write_csv(folder / "expected.csv", older + rows[2:])
    assert (folder / "manifest.csv").read_bytes() == (folder / "expected.csv").read_bytes()
    with open(folder / "manifest.csv", newline="") as handle:
        read = list(csv.DictReader(handle))
    assert read[0]["readout"] == "" and read[2]["readout"] == rows[2]["readout"]


def test_grids_from_the_stream_are_the_grids_of_every_row(folder):
    summary = write_summary(folder, read_errors(folder), RUN, grid_tiles=1)
    streamed = {case: (folder / path).read_bytes() for case, path in summary.grids.items()}
    every = write_grids(folder, list(read_rows(folder)), 1)  # the tiles chosen from all the rows held at once
    assert len(streamed) == 2 and {case: (folder / path).read_bytes() for case, path in every.items()} == streamed


def test_a_damaged_row_is_one_error_naming_its_line(folder):
    lines = (folder / "manifest.jsonl").read_text().splitlines(keepends=True)
    damaged = json.loads(lines[1])
    del damaged["case"]
    (folder / "manifest.jsonl").write_text(lines[0] + json.dumps(damaged) + "\n" + "".join(lines[2:]))
    with pytest.raises(ValueError, match=r"manifest.jsonl: line 2: missing column 'case'"):
        write_summary(folder, read_errors(folder), RUN, grid_tiles=None)
    assert not (folder / "manifest.csv").exists()  # nothing half-written left in its place
