"""The audit's output folder contract: it owns exactly the files it lists, one writer at a time, and an
output folder inside the dataset is not audited as part of it. Every case hashes the user's files
before and after."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ov_explain.core.storage import LOCK_FILE, FolderLock


def digests(paths: list[Path]) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def manifest_keys(out: Path) -> list[str]:
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    return [r["key"] for r in rows if r["target_rank"] == 0]


@pytest.fixture
def gt(photos_dir, tmp_path) -> Path:
    """A CSV list of 3 bundled photos (coffee, camera, chelsea), by absolute path."""
    header, *rows = (photos_dir / "ground_truth.csv").read_text().splitlines()
    path = tmp_path / "gt.csv"
    path.write_text(header + "\n" + "".join(f"{photos_dir / row.split(',', 1)[0]},{row.split(',', 1)[1]}\n"
                                             for row in rows[:3]))
    return path


def json_of(output: str) -> dict:
    """The JSON document of a CLI output (warning lines may come first)."""
    return json.loads(output[output.index("{"):])


def test_restart_on_a_folder_without_an_audit_is_refused_and_touches_nothing(run, gt, tmp_path):
    out = tmp_path / "mine"
    (out / "True_positive_high_confidence" / "sub").mkdir(parents=True)
    user = [out / "True_positive_high_confidence" / "keep.jpg", out / "manifest.csv", out / "report.html",
            out / "summary.json", out / "confusion.csv", out / "True_positive_high_confidence" / "sub" / "x.txt"]
    for i, path in enumerate(user):
        path.write_bytes(f"user data {i}".encode())
    before = digests(user)
    result = run("audit", gt, "--out", out, "--restart")
    assert result.exit_code == 2
    assert f"error: {out}: folder is not empty and holds no audit" in result.output
    assert digests(user) == before and not (out / "audit.json").exists()


@pytest.mark.slow
def test_restart_and_resume_remove_only_the_audits_files(run, gt, tmp_path):
    out = tmp_path / "audit"
    assert run("audit", gt, "--out", out).exit_code == 0
    ours = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg"))
    case = ours[0].split("/")[0]
    user = [out / "grids" / "my_grid.png", out / case / "my_note.txt", out / case / "holiday.jpg",
            out / "notes.md"]
    for i, path in enumerate(user):
        path.write_bytes(f"user data {i}".encode())
    before = digests(user)

    resumed = run("audit", gt, "--out", out)  # a plain resume: nothing to do, nothing of the user's goes
    assert resumed.exit_code == 0 and "0 images audited" not in resumed.output
    assert "3 resumed" in resumed.output and "left 2 file(s) that are not the audit's alone" in resumed.output
    assert digests(user) == before

    restarted = run("audit", gt, "--out", out, "--restart")
    assert restarted.exit_code == 0 and "0 resumed" in restarted.output
    assert digests(user) == before
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg") if p.name != "holiday.jpg") == ours


def test_a_killed_runs_unlisted_maps_are_removed_but_lookalikes_of_other_stems_are_not(run, gt, tmp_path):
    out = tmp_path / "audit"
    assert run("audit", gt, "--out", out, "--no-grids", "--no-report").exit_code == 0
    case = out / "True_positive_high_confidence"
    stray_ours = case / "coffee_gt_espresso_0.50_pr_espresso_0.50.jpg"  # a map whose row never landed
    lookalike = case / "my_photo_pr_cat_0.90.jpg"  # structured, but no image of this dataset is my_photo
    stray_ours.write_bytes(b"half")
    lookalike.write_bytes(b"user")
    assert run("audit", gt, "--out", out, "--no-grids", "--no-report").exit_code == 0
    assert not stray_ours.exists() and lookalike.read_bytes() == b"user"


def test_a_held_lock_refuses_a_second_run_naming_the_holder(run, gt, tmp_path):
    out = tmp_path / "audit"
    out.mkdir()
    with FolderLock(out):
        result = run("audit", gt, "--out", out)
    assert result.exit_code == 2
    assert f"another ov-explain audit (PID {os.getpid()}) is writing there" in result.output
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]
    # A lock file left by a dead process (its PID inside) is no obstacle.
    (out / LOCK_FILE).write_text("999999999\n")
    assert run("audit", gt, "--out", out, "--no-grids", "--no-report").exit_code == 0


@pytest.mark.slow
def test_two_real_processes_on_one_folder_give_one_audit_and_one_refusal(photo_copies, tmp_path):
    dataset = photo_copies(40)  # 280 images: the first run is still working when the second starts
    out = tmp_path / "audit"
    command = [sys.executable, "-m", "ov_explain.cli", "audit", str(dataset), "--out", str(out), "--no-cache",
               "--device", "CPU", "--workers", "1", "--no-grids", "--no-report"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and first.poll() is None:
        if (out / "manifest.jsonl").exists() and (out / "manifest.jsonl").stat().st_size > 0:
            break
        time.sleep(0.01)
    assert first.poll() is None, "the first audit ended before the second could start"
    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert first.poll() is None, "the first audit ended before the second was refused: the test proves nothing"
    first_out, first_err = first.communicate(timeout=300)
    assert second.returncode == 2
    assert second.stderr.strip() == (f"error: {out}: another ov-explain audit (PID {first.pid}) is writing there; "
                                     "wait for it to finish or choose another output folder")
    assert first.returncode == 0, first_err
    keys = manifest_keys(out)
    assert len(keys) == len(set(keys)) == 280
    assert json.loads((out / "summary.json").read_text())["images"] == 280


@pytest.mark.slow
def test_an_output_folder_inside_the_dataset_is_not_audited(run, photos_dir, photo_copies, tmp_path):
    unlabeled = tmp_path / "unlabeled"
    unlabeled.mkdir()
    for name in ("coffee.jpg", "camera.jpg", "rocket.jpg"):
        shutil.copy(photos_dir / name, unlabeled / name)
    for attempt in range(2):
        result = run("audit", unlabeled, "--out", unlabeled / "audit", *(["--restart"] if attempt else []))
        assert result.exit_code == 0 and result.output.startswith("3 images audited"), result.output

    folders = photo_copies(1)
    result = run("audit", folders, "--out", folders / "audit", "--json")
    assert result.exit_code == 0
    summary = json_of(result.output)
    assert summary["images"] == 7 and "audit" not in summary["per_class"]
    again = json_of(run("audit", folders, "--out", folders / "audit", "--json").output)
    assert again["images"] == 7 and again["resumed"] == 7


# ----- the rows: typed, round-tripped, damaged ones refused ------------------------------------------
@pytest.fixture
def audited(classifier, gt, tmp_path) -> Path:
    from ov_explain.explain import Explainer
    from ov_explain.runs.audit.run import AuditOptions, run_audit
    from ov_explain.runs.dataset import read_dataset

    with Explainer(classifier) as explainer:
        run_audit(read_dataset(gt), explainer, tmp_path / "audit", options=AuditOptions(grids=False, report=False,
                                                                                         save_raw=True))
    return tmp_path / "audit"


def test_manifest_rows_read_back_as_typed_rows_and_write_the_same_columns(audited):
    from ov_explain.runs.audit.folder import AuditRow, read_rows

    lines = [json.loads(line) for line in (audited / "manifest.jsonl").read_text().splitlines()]
    rows = list(read_rows(audited))
    assert len(rows) == len(lines) >= 3
    for line, row in zip(lines, rows):
        assert row.to_dict() == line and list(row.to_dict()) == list(line)  # same columns, same order
        assert AuditRow.from_dict(line) == row
        assert len(row.top) == 5 and row.top1.name == line["top1_class"] and row.paths == [row.overlay_path,
                                                                                           row.raw_path]
        assert set(row.timings_ms) == {"decode_ms", "preprocess_ms", "explain_ms", "write_ms"}
    header = (audited / "manifest.csv").read_text().splitlines()[0].split(",")
    assert header == list(lines[0])


@pytest.mark.parametrize("damage, message", [
    (lambda row: row.pop("source"), "missing column 'source'"),
    (lambda row: row.update(case="Somewhere_else"), "case: unknown 'Somewhere_else'"),
    (lambda row: row.update(target_rank=4), "target_rank 4 outside 0..0"),
    (lambda row: row.update(top1_probability="high"), "could not convert string to float"),
])
def test_a_damaged_row_is_refused_by_name(audited, damage, message):
    from ov_explain.runs.audit.folder import AuditRow

    row = json.loads((audited / "manifest.jsonl").read_text().splitlines()[0])
    damage(row)
    with pytest.raises(ValueError, match=message):
        AuditRow.from_dict(row)
    with pytest.raises(ValueError, match="expected a JSON object, got list"):
        AuditRow.from_dict([row])


def test_an_audit_folder_written_before_the_configs_resumes_and_grows(run, photos_dir, tmp_path):
    """``data/audit_eadc0a2`` was written by main at eadc0a2 (the last commit before the configs, where
    audit.json named the requested precision ``precision``) with the command below: the same command
    resumes every image and rewrites nothing but the settings' names; a larger run adds only the new image."""
    out = tmp_path / "audit"
    shutil.copytree(Path(__file__).parent / "data" / "audit_eadc0a2", out)
    maps = sorted(p for p in out.rglob("*") if p.suffix in (".jpg", ".npy"))
    before, rows_before = digests(maps), (out / "manifest.jsonl").read_text()
    command = ("audit", photos_dir / "ground_truth.csv", "--out", out, "--device", "CPU", "--no-grids", "--no-report")
    resumed = run(*command, "--limit", "3", "--json")
    assert resumed.exit_code == 0, resumed.output
    summary = json_of(resumed.output)
    assert (summary["resumed"], summary["images"]) == (3, 3)
    assert digests(maps) == before and (out / "manifest.jsonl").read_text() == rows_before
    settings = json.loads((out / "audit.json").read_text())
    assert "precision" not in settings and (settings["requested_precision"], settings["executed_precision"]) == \
        ("f32", "f32")
    grown = run(*command, "--limit", "4", "--json")
    assert grown.exit_code == 0, grown.output
    assert (json_of(grown.output)["resumed"], json_of(grown.output)["images"]) == (3, 4)
    assert digests(maps) == before and manifest_keys(out)[:3] == ["coffee.jpg", "camera.jpg", "chelsea.jpg"]
