"""summary.json, the CSVs, confusion.csv and the grids, from a folder's rows (the committed audit of three photos)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import pytest

from ov_explain.runs.audit.folder import read_errors, read_rows
from ov_explain.runs.audit.summary import AuditSummary, SummaryBuilder, write_csv, write_grids, write_summary

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


def test_rows_fed_as_they_are_appended_give_the_files_of_one_pass_over_the_manifest(folder, monkeypatch):
    """An audit feeds the builder each image's rows as it appends them (the first two here already in the
    folder, as a resumed run's): the same summary and byte-equal CSVs, and the end reads no row again."""
    lines = (folder / "manifest.jsonl").read_text().splitlines(keepends=True)
    write_summary(folder, read_errors(folder), RUN, grid_tiles=2)
    expected = {name: (folder / name).read_bytes() for name in ("manifest.csv", "summary.json", "confusion.csv")}
    for name in expected:
        (folder / name).unlink()
    (folder / "manifest.jsonl").write_text("".join(lines[:2]))
    import ov_explain.runs.audit.summary as summary_module

    read = []
    original = summary_module.read_row_columns
    monkeypatch.setattr(summary_module, "read_row_columns", lambda out: (read.append(r) or r for r in original(out)))
    builder = SummaryBuilder(folder, 2)
    with builder.building():
        builder.add_rows(json.loads(line) for line in lines[:2])  # the resumed rows, as the recovery reads them
        for line in lines[2:]:  # the run appends the others, and feeds them
            with open(folder / "manifest.jsonl", "a") as handle:
                handle.write(line)
            builder.add_rows([json.loads(line)])
    builder.finish(read_errors(folder), RUN)
    assert read == []  # the end of the run read no row again
    assert {name: (folder / name).read_bytes() for name in expected} == expected


def _build(folder: Path, lines: list[str], earlier: dict | None, *, fail_after: int | None = None) -> SummaryBuilder:
    """A run's building: ``lines`` given as the recovery and the run would, the end written (``fail_after``:
    the run stops after that many lines instead)."""
    builder = SummaryBuilder(folder, None)
    try:
        with builder.building(earlier):
            for number, line in enumerate(lines):
                if number == fail_after:
                    raise KeyboardInterrupt
                builder.add_rows([json.loads(line)])
    except KeyboardInterrupt:
        return builder
    builder.finish(read_errors(folder), RUN)
    return builder


def test_a_resume_keeps_the_earlier_manifest_csv_when_it_is_as_that_run_left_it(folder):
    """The rows given first are the last run's (the engine checked the rows file against its record): its
    manifest.csv is left as it is when no row comes after them, extended when some do (byte-equal to writing
    it anew), and written anew when someone changed it or the record does not match it."""
    lines = (folder / "manifest.jsonl").read_text().splitlines(keepends=True)
    write_summary(folder, read_errors(folder), RUN, grid_tiles=None)
    whole = (folder / "manifest.csv").read_bytes()
    first = _build(folder, lines[:2], None).record()
    assert first is not None and first["manifest.csv"]["finished"]["rows"] == 2
    before = (folder / "manifest.csv").stat()
    again = _build(folder, lines[:2], first).record()  # nothing new: the file is not touched
    assert again == first and (folder / "manifest.csv").stat().st_mtime_ns == before.st_mtime_ns
    grown = _build(folder, lines, first).record()  # two rows more: copied and extended
    assert (folder / "manifest.csv").read_bytes() == whole and grown["manifest.csv"]["finished"]["rows"] == 4
    with open(folder / "manifest.csv", "a") as handle:  # the user's own edit
        handle.write("a line of mine\n")
    _build(folder, lines, grown)
    assert (folder / "manifest.csv").read_bytes() == whole  # not as recorded: written anew
    recorded = _build(folder, lines[:2], None).record()["manifest.csv"]
    stale = {"manifest.csv": {"finished": {**recorded["finished"], "rows": 3}}}
    assert _build(folder, lines[:2], stale).record() is None  # fewer rows given than recorded
    assert (folder / "manifest.csv").read_bytes() == whole  # from the rows file (all four rows)
    assert not [p for p in folder.iterdir() if p.name.startswith(".manifest.csv")]


def test_a_stopped_runs_partial_csv_is_continued_by_the_next_run(folder):
    """A run that stops leaves no manifest.csv, but its partial file whole to the rows it had: the next run,
    given those rows first, continues it (cut back to what was recorded, whatever was written after)."""
    lines = (folder / "manifest.jsonl").read_text().splitlines(keepends=True)
    write_summary(folder, read_errors(folder), RUN, grid_tiles=None)
    whole = (folder / "manifest.csv").read_bytes()
    (folder / "manifest.csv").unlink()
    stopped = _build(folder, lines, None, fail_after=3).record()
    assert not (folder / "manifest.csv").exists() and stopped["manifest.csv"]["partial"]["rows"] == 3
    partial = folder / ".manifest.csv.partial"
    assert partial.stat().st_size == stopped["manifest.csv"]["partial"]["bytes"]
    with open(partial, "a") as handle:  # what a killed run wrote after its last record
        handle.write("half a ro")
    resumed = _build(folder, lines, stopped)
    assert (folder / "manifest.csv").read_bytes() == whole and not partial.exists()
    assert resumed.record()["manifest.csv"]["finished"]["rows"] == 4
    _build(folder, lines, None, fail_after=1)  # a partial file that no record describes: written anew
    _build(folder, lines, None)
    assert (folder / "manifest.csv").read_bytes() == whole and not partial.exists()


def test_a_partial_csv_is_not_continued_once_a_row_brought_more_columns(folder):
    """A folder resumed from an earlier version: its first rows lack columns the new ones have, so manifest.csv
    is written again at the end with every column. A run stopped after such a row records no partial CSV,
    and one stopped before it is continued, both ending in the CSV of every column."""
    rows = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    older = [{k: v for k, v in row.items() if k not in ("readout", "map_left")} for row in rows[:2]]
    lines = [json.dumps(r) + "\n" for r in older + rows[2:]]
    (folder / "manifest.jsonl").write_text("".join(lines))
    write_csv(folder / "expected.csv", older + rows[2:])
    assert _build(folder, lines, None, fail_after=3).record() is None  # the third row has more columns
    stopped = _build(folder, lines, None, fail_after=2).record()
    assert stopped["manifest.csv"]["partial"]["rows"] == 2
    _build(folder, lines, stopped)
    assert (folder / "manifest.csv").read_bytes() == (folder / "expected.csv").read_bytes()
    assert not (folder / ".manifest.csv.partial").exists()


def test_a_rebuild_that_fails_leaves_no_csv_behind(folder):
    lines = (folder / "manifest.jsonl").read_text().splitlines(keepends=True)
    (folder / "manifest.jsonl").write_text(lines[0] + "{}\n")  # a damaged second row
    with pytest.raises(ValueError, match="line 2"):
        write_summary(folder, read_errors(folder), RUN, grid_tiles=None)
    assert not (folder / "manifest.csv").exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(".manifest.csv")]  # no temp file either


def test_a_grid_of_an_earlier_version_is_replaced_and_the_users_pictures_stay(folder):
    grids = folder / "grids"
    grids.mkdir(exist_ok=True)
    former = grids / "True_positive_high_confidence.png"  # what 0.1-0.2 wrote
    theirs = [grids / "my_grid.png", grids / "True_positive_high_confidence_notes.png"]
    for path in [former, *theirs]:
        path.write_bytes(b"\x89PNG older")
    summary = write_summary(folder, read_errors(folder), RUN, grid_tiles=4)
    assert summary.grids["True_positive_high_confidence"] == "grids/True_positive_high_confidence.jpg"
    assert not former.exists() and all(p.read_bytes() == b"\x89PNG older" for p in theirs)
