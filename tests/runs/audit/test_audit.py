"""Dataset audit on the real model and photos: folders, names, manifest, errors, resume, refusal."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ov_explain.explain import Explainer
from ov_explain.runs.audit.run import AuditError, AuditOptions, run_audit
from ov_explain.runs.cases import CASES, CaseThresholds
from ov_explain.runs.config import RunConfig
from ov_explain.runs.dataset import LabelResolver, read_dataset
from ov_explain.runs.naming import parse_name

TIMING_FIELDS = {"decode_ms", "preprocess_ms", "explain_ms", "write_ms"}


@pytest.fixture(scope="module")
def explainer(classifier):
    return Explainer(classifier, mode="whitebox")


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def audit_command(dataset: Path) -> tuple[list[str], dict[str, str]]:
    """The CLI audit of ``dataset`` as a fresh process (add ``--out``), and its environment."""
    return ([sys.executable, "-m", "ov_explain.cli", "audit", str(dataset), "--no-cache", "--workers", "2",
             "--device", "CPU"], {**os.environ, "PYTHONUNBUFFERED": "1"})


def start_and_wait_for_rows(command: list[str], env: dict[str, str], out: Path, rows: int,
                            **popen: Any) -> subprocess.Popen:
    """Start an audit process and return once its manifest has ``rows`` rows (it must still be running)."""
    popen = popen or {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    process = subprocess.Popen(command, env=env, **popen)
    manifest = out / "manifest.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if manifest.exists() and manifest.read_text().count("\n") >= rows:
            break
        time.sleep(0.005)
    assert process.poll() is None, "the audit finished before it could be stopped"
    return process


@dataclass(frozen=True)
class Interruptible:
    """An audit to interrupt as a fresh process: its command (add ``--out``), environment, images, and the
    summary entries that must come out the same."""

    command: list[str]
    env: dict[str, str]
    images: int
    compared: tuple[str, ...]


@pytest.fixture(params=["classifier", "detector"])
def copies(request, photo_copies, face_copies, yolov8_path) -> Interruptible:
    """The classifier on the 7 photos 6 times each in class folders (42 images), or the detector on a COCO file
    of them 3 times each (21 images: its white-box maps take longer)."""
    if request.param == "classifier":
        command, env = audit_command(photo_copies(6))
        return Interruptible(command, env, 42, ("cases", "per_class", "confusion", "top1_accuracy"))
    command, env = audit_command(face_copies(3))
    return Interruptible(command + ["--model", str(yolov8_path)], env, 21, ("cases", "per_class", "mean_ap", "boxes"))


@pytest.mark.slow
def test_audit_of_the_bundled_photos(explainer, photos_dir, tmp_path):
    out = tmp_path / "audit"
    samples = read_dataset(photos_dir / "ground_truth.csv")
    summary = run_audit(samples, explainer, out, options=AuditOptions(save_raw=True, save_rgba=True))

    assert summary.images == 7 and summary.errors == 0 and summary.resumed == 0
    # What the bundled model does on these photos (DESIGN.md): 4 of 7 right at top-1.
    assert summary.cases == {"True_positive_high_confidence": 2, "True_positive_low_confidence": 2,
                             "True_positive_two_predictions": 1, "False_positive_low_confidence": 2}
    assert summary.top1_accuracy == pytest.approx(4 / 7, abs=1e-3)
    rows = rows_of(out / "manifest.jsonl")
    by_stem = {}
    for row in rows:
        by_stem.setdefault(row["stem"], []).append(row)
    coffee = by_stem["coffee"]
    assert len(coffee) == 1 and coffee[0]["case"] == "True_positive_high_confidence"
    assert coffee[0]["target_class"] == "espresso" and coffee[0]["top1_probability"] > 0.9
    chelsea = by_stem["chelsea"]  # tabby predicted as tiger cat: both maps, the truth's marked
    assert [(r["target_class"], r["target_role"]) for r in chelsea] == [("tiger cat", "predicted"),
                                                                      ("tabby", "ground_truth")]
    hopper = by_stem["grace_hopper"]
    assert hopper[0]["case"] == "True_positive_two_predictions" and len(hopper) == 2
    for row in rows:
        overlay = out / row["overlay_path"]
        assert overlay.is_file() and overlay.parent.name == row["case"]
        parts = parse_name(overlay.name)
        assert parts.stem == row["stem"] and parts.extension == ".jpg"
        assert parts.target_confidence == pytest.approx(row["target_probability"], abs=0.005)
        assert parts.ground_truth_confidence == pytest.approx(row["ground_truth_probability"], abs=0.005)
        raw = np.load(out / row["raw_path"])
        assert raw.shape == (7, 7) and raw.dtype == np.float32
        assert (out / row["rgba_path"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert row["method"] == "cam" and row["mode"] == "whitebox" and row["device"] == "CPU"
        assert row["precision"] == "f32"  # pinned by default: these cases hold on every CPU
    with open(out / "manifest.csv", newline="") as handle:
        csv_rows = list(csv.DictReader(handle))
    assert len(csv_rows) == len(rows) == 10 and csv_rows[0]["overlay_path"] == rows[0]["overlay_path"]
    summary_file = json.loads((out / "summary.json").read_text())
    assert summary.precision == summary_file["precision"] == "f32"
    assert summary_file["cases"] == summary.cases and summary_file["confusion"]["tabby"] == {"tiger cat": 1}
    assert summary_file["per_class"]["espresso"] == {"images": 1, "True_positive_high_confidence": 1, "correct": 1}
    for case in summary.cases:
        assert (out / "grids" / f"{case}.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    assert set(summary.cases) <= set(CASES)


@pytest.mark.slow
def test_bad_images_and_unknown_labels_become_error_rows_and_the_rest_goes_on(explainer, photos_dir, tmp_path):
    root = tmp_path / "data"
    (root / "espresso").mkdir(parents=True)
    (root / "not a class").mkdir()
    shutil.copy(photos_dir / "coffee.jpg", root / "espresso" / "good.jpg")
    (root / "espresso" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    (root / "espresso" / "truncated.jpg").write_bytes((photos_dir / "coffee.jpg").read_bytes()[:5000])
    shutil.copy(photos_dir / "camera.jpg", root / "not a class" / "camera.jpg")
    out = tmp_path / "audit"
    samples = read_dataset(root)
    summary = run_audit(samples, explainer, out)
    assert summary.images == 1 and summary.errors == 3
    errors = {row["key"]: row for row in rows_of(out / "errors.jsonl")}
    assert set(errors) == {"espresso/corrupt.jpg", "espresso/truncated.jpg", "not a class/camera.jpg"}
    assert "corrupt.jpg" in errors["espresso/corrupt.jpg"]["error"]
    assert "truncated" in errors["espresso/truncated.jpg"]["error"].lower()
    assert "unknown class 'not a class'" in errors["not a class/camera.jpg"]["error"]
    assert all("\n" not in e["error"] for e in errors.values())
    with open(out / "errors.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 3
    # Fixing a file and running again retries only the failures.
    shutil.copy(photos_dir / "coffee.jpg", root / "espresso" / "corrupt.jpg")
    again = run_audit(samples, explainer, out)
    assert again.images == 2 and again.errors == 2 and again.resumed == 1


@pytest.mark.slow
def test_hostile_class_names_stay_inside_their_case_folder(classifier, photos_dir, tmp_path):
    from ov_explain import Classifier

    names = list(classifier.labels)
    names[967], names[968] = "../../etc/passwd", "cat/dog"  # espresso, cup
    hostile = Classifier(classifier.files.model, device="CPU", labels=names, cache_dir=None)
    listing = tmp_path / "list.csv"
    listing.write_text(f"path,label\n{photos_dir / 'coffee.jpg'},cat/dog\n")
    out = tmp_path / "audit"
    run_audit(read_dataset(listing), Explainer(hostile, mode="whitebox"), out,
              resolver=LabelResolver(names, 1000), options=AuditOptions(grids=False))
    written = [p for p in tmp_path.rglob("*.jpg") if p.parent != photos_dir]
    assert written, "no overlay written"
    for path in written:
        assert path.parent.parent == out and path.parent.name == "False_positive_high_confidence"
    assert not (tmp_path / "etc").exists()
    assert {parse_name(p.name).target for p in written} == {"etc_passwd", "cat_dog"}


@pytest.mark.slow
def test_different_settings_are_refused_unless_restarting(explainer, photos_dir, tmp_path):
    samples = read_dataset(photos_dir / "ground_truth.csv")[:2]
    out = tmp_path / "audit"
    run_audit(samples, explainer, out, options=AuditOptions(grids=False))
    stricter = AuditOptions(thresholds=CaseThresholds(high_confidence=0.99), grids=False)
    with pytest.raises(AuditError, match=r"different settings \(thresholds\).*restart"):
        run_audit(samples, explainer, out, options=stricter)
    summary = run_audit(samples, explainer, out, options=stricter, run=RunConfig(restart=True))
    assert summary.resumed == 0 and summary.cases == {"True_positive_low_confidence": 2}
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "thesis.tex").write_text("precious")
    with pytest.raises(AuditError, match="not empty and holds no audit"):
        run_audit(samples, explainer, tmp_path / "other")


@pytest.mark.slow
def test_resume_repairs_a_torn_row_orphan_files_and_temp_files(explainer, photos_dir, tmp_path):
    samples = read_dataset(photos_dir / "ground_truth.csv")
    reference, out = tmp_path / "reference", tmp_path / "audit"
    run_audit(samples, explainer, reference, options=AuditOptions(grids=False))
    run_audit(samples[:4], explainer, out, options=AuditOptions(grids=False), all_samples=samples)
    manifest = out / "manifest.jsonl"
    with open(manifest, "a") as handle:
        handle.write('{"key": "rocket.jpg", "stem": "rock')  # a row torn by a kill
    (out / "True_positive_low_confidence" / "rocket_gt_missile_0.26_pr_missile_0.26.jpg").write_bytes(b"half")
    (out / "True_positive_low_confidence" / ".x.jpg.123.ov-explain-tmp").write_bytes(b"temp")
    summary = run_audit(samples, explainer, out, options=AuditOptions(grids=False))
    assert summary.resumed == 4 and summary.images == 7
    assert files_under(out) - {"audit.json"} == files_under(reference) - {"audit.json"}
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in rows]  # noqa: E731
    assert strip(rows_of(manifest)) == strip(rows_of(reference / "manifest.jsonl"))


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_to_exactly_an_uninterrupted_run(copies, tmp_path):
    command, env = copies.command, copies.env
    reference, out = tmp_path / "reference", tmp_path / "killed"
    subprocess.run(command + ["--out", str(reference)], check=True, capture_output=True, env=env)
    total = len(rows_of(reference / "manifest.jsonl"))

    victim = start_and_wait_for_rows(command + ["--out", str(out)], env, out, 8)
    manifest = out / "manifest.jsonl"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_rows = manifest.read_text().count("\n")
    assert 8 <= killed_rows < total and not (out / "summary.json").exists()

    resumed = subprocess.run(command + ["--out", str(out), "--json"], check=True, capture_output=True, env=env,
                             text=True)
    summary = json.loads(resumed.stdout)
    assert summary["resumed"] >= 4 and summary["images"] == copies.images and summary["errors"] == 0  # <= 2 rows
    assert files_under(out) == files_under(reference)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in rows]  # noqa: E731
    assert strip(rows_of(out / "manifest.jsonl")) == strip(rows_of(reference / "manifest.jsonl"))
    keys = [r["key"] for r in rows_of(out / "manifest.jsonl") if r["target_rank"] == 0]
    assert len(keys) == len(set(keys)) == copies.images
    reference_summary = json.loads((reference / "summary.json").read_text())
    for key in copies.compared:
        assert summary[key] == reference_summary[key]


@pytest.mark.slow
@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_run_records_what_it_finished_and_resumes_to_an_uninterrupted_run(copies, tmp_path, signum,
                                                                                        status):
    command, env = copies.command, copies.env
    reference, out = tmp_path / "reference", tmp_path / "interrupted"
    subprocess.run(command + ["--out", str(reference)], check=True, capture_output=True, env=env)

    victim = start_and_wait_for_rows(command + ["--out", str(out)], env, out, 8, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
    manifest = out / "manifest.jsonl"
    victim.send_signal(signum)
    _, stderr = victim.communicate(timeout=120)
    assert victim.returncode == status, stderr
    rows = rows_of(manifest)
    saved = len({r["key"] for r in rows})
    total = copies.images
    assert f"interrupted: {saved} of {total} images saved in {out}; run the same command to resume" in stderr
    assert "Traceback" not in stderr and 4 <= saved < total
    on_disk = {p.relative_to(out).as_posix() for p in out.glob("*/*.jpg")}
    assert on_disk == {r["overlay_path"] for r in rows if r["overlay_path"]}, "every finished image recorded, " \
        "nothing unrecorded left"

    # The stop recorded the rows file and (a classifier's audit, which streams it) the part of manifest.csv
    # written: the resume checks none of those rows again and continues that CSV.
    recorded, streamed = json.loads((out / ".ov-explain-checked.json").read_text()), "confusion" in copies.compared
    assert recorded["lines"] == len(rows) and not (out / "manifest.csv").exists()
    if streamed:
        assert recorded["sink"]["manifest.csv"]["partial"]["rows"] == len(rows)
    assert (out / ".manifest.csv.partial").is_file() == streamed and (recorded["sink"] is None) != streamed

    resumed = subprocess.run(command + ["--out", str(out), "--json"], check=True, capture_output=True, env=env,
                             text=True)
    assert json.loads(resumed.stdout)["resumed"] == saved
    assert files_under(out) == files_under(reference)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in rows]  # noqa: E731
    assert strip(rows_of(out / "manifest.jsonl")) == strip(rows_of(reference / "manifest.jsonl"))
    csv_rows = lambda folder: [{k: v for k, v in r.items() if not k.endswith("_ms")}  # noqa: E731
                               for r in csv.DictReader(open(folder / "manifest.csv", newline=""))]
    assert csv_rows(out) == csv_rows(reference)


@pytest.mark.parametrize("workers, images_at_once, per_image", [(None, 2, None), (6, 2, 3), (1, 1, 1)])
def test_a_blackbox_audit_shares_one_inference_budget(classifier, photos_dir, tmp_path, monkeypatch, workers,
                                                      images_at_once, per_image):
    """The audit's budget is split between the images explained at once and passed down to the method,
    instead of every image thread starting its own full set of requests and threads."""
    import threading

    from ov_explain.explain import registry

    rise = registry.METHODS["rise"]
    seen, running, peak, lock = [], [0], [0], threading.Lock()

    def run(score, prepared, targets, options, *, seed, parallel, progress):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            seen.append(parallel)
            time.sleep(0.05)  # long enough for another image thread to start if the plan allows it
            return type(rise).run(rise, score, prepared, targets, options, seed=seed, parallel=parallel,
                                  progress=progress)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(rise, "run", run)
    with Explainer(classifier, method="rise", num_masks=16, num_cells=2) as explainer:
        # By default the budget is what one explanation alone keeps in flight: 2 requests per stream, at least 8.
        per_image = per_image or max(8, 2 * explainer.parallel_requests) // 2
        assert explainer.plan(workers) == (images_at_once, per_image)
        summary = run_audit(read_dataset(photos_dir / "ground_truth.csv"), explainer, tmp_path / "audit",
                            options=AuditOptions(grids=False, report=False), run=RunConfig(workers=workers))
    assert summary.images == 7 and summary.errors == 0
    assert set(seen) == {per_image} and peak[0] <= images_at_once
