"""Hostile input gets one line naming the file or value and the documented exit status, before any
image is processed where it is a setup error; never a traceback."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ov_explain.runs.audit.run import audit


def broken_summary(out: Path) -> None:
    (out / "summary.json").write_text("{ not json")


def row_without_keys(out: Path) -> None:
    with open(out / "manifest.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"key": "x.jpg", "case": "True_positive_high_confidence"}) + "\n")


@pytest.fixture
def finished_audit(run, photos_dir, tmp_path) -> Path:
    out = tmp_path / "audit"
    csv = tmp_path / "two.csv"
    csv.write_text(f"path,label\n{photos_dir / 'coffee.jpg'},espresso\n{photos_dir / 'camera.jpg'},tripod\n")
    assert run("audit", csv, "--out", out, "--no-grids").exit_code == 0
    return out


@pytest.mark.parametrize("damage, message", [
    (broken_summary, "summary.json: damaged ("),
    (row_without_keys, "manifest.jsonl: line 3: missing column"),
])
def test_report_on_a_damaged_audit_is_one_line(run, finished_audit, damage, message):
    damage(finished_audit)
    result = run("report", finished_audit)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_a_damaged_manifest_row_is_redone_on_resume(run, finished_audit, tmp_path):
    before = (finished_audit / "manifest.csv").read_text()
    row_without_keys(finished_audit)
    result = run("audit", tmp_path / "two.csv", "--out", finished_audit, "--no-grids")
    assert result.exit_code == 0 and "2 resumed" in result.output
    # The summary was given the rows as the recovery read them, then (the damaged row dropped) the kept ones
    # again: each image once, as before the damage.
    assert (finished_audit / "manifest.csv").read_text() == before
    assert json.loads((finished_audit / "summary.json").read_text())["images"] == 2


def test_a_file_name_that_is_not_utf8_is_one_line_before_any_image(run, photos_dir, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(photos_dir / "coffee.jpg", folder / "coffee.jpg")
    shutil.copy(photos_dir / "coffee.jpg", os.fsdecode(bytes(folder) + b"/caf\xe9.jpg"))  # latin-1 bytes
    result = run("audit", folder, "--out", tmp_path / "out")
    assert result.exit_code == 2 and not (tmp_path / "out").exists()
    assert result.output.strip() == (f"error: {folder}/caf\\xe9.jpg: path is not UTF-8; rename the file or "
                                     "folder (a run's rows, CSVs and report are UTF-8 text)")


def test_a_list_that_is_not_utf8_is_one_line(run, photos_dir, tmp_path):
    listing = tmp_path / "latin1.csv"
    listing.write_bytes(f"path,label\n{photos_dir / 'coffee.jpg'},caf\xe9\n".encode("latin-1"))
    result = run("audit", listing, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert result.output.strip() == (f"error: {listing}: not UTF-8 text (byte 0xe9 at offset "
                                     f"{listing.read_bytes().index(0xe9)}); save the list as UTF-8")


def test_explain_into_an_existing_file_is_one_line(run, photos_dir, tmp_path):
    target = tmp_path / "taken"
    target.write_text("mine")
    result = run("explain", photos_dir / "coffee.jpg", "--out", target)
    assert result.exit_code == 2 and target.read_text() == "mine"
    assert result.output.strip() == f"error: --out {target}: exists and is not a folder"


def test_unknown_targets_are_one_usage_error_before_any_image(run, photos_dir, tmp_path):
    images = [photos_dir / n for n in ("coffee.jpg", "camera.jpg", "chelsea.jpg")]
    result = run("explain", *images, "--targets", "unicorn", "--out", tmp_path / "maps")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --targets: ") and "unicorn" in lines[0]
    assert not (tmp_path / "maps").exists()


def test_predict_on_a_fifo_does_not_hang(run, photos_dir, tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    result = run("predict", fifo, photos_dir / "coffee.jpg")
    assert result.exit_code == 1
    assert f"error: {fifo}: not a regular file (a pipe or device), expected an image file" in result.output
    assert "1. espresso" in result.output


def test_id_folders_without_a_label_map_are_refused_with_the_hint(run, photos_dir, tmp_path):
    root = tmp_path / "ids"
    for folder, photo in (("n0001", "coffee.jpg"), ("n0002", "camera.jpg")):
        (root / folder).mkdir(parents=True)
        shutil.copy(photos_dir / photo, root / folder / photo)
    result = run("audit", root, "--out", tmp_path / "out")
    assert result.exit_code == 2
    line = result.output.strip()
    assert line.startswith(f"error: {root}: none of its 2 labels is a class of the model (label 'n0001'")
    assert line.endswith("pass --label-map FILE") and "\n" not in line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("*/*.jpg"))


def test_classes_matching_nothing_are_refused(run, photos_dir, tmp_path):
    result = run("audit", photos_dir / "ground_truth.csv", "--out", tmp_path / "out", "--classes", "unicorn")
    assert result.exit_code == 2
    assert "no image is left after --classes/--limit/--sample (dataset labels: " in result.output
    assert "espresso" in result.output


@pytest.mark.parametrize("priority", ["FOO,BAR", " , "])
def test_devices_with_a_priority_naming_no_device_is_a_usage_error(run, priority):
    result = run("devices", "--priority", priority)
    assert result.exit_code == 2 and result.output.startswith("error: --priority")


def test_audit_progress_reports_its_total_before_the_first_image(photos_dir, tmp_path):
    calls = []
    audit(photos_dir / "ground_truth.csv", tmp_path / "out", device="CPU", limit=2, grids=False, report=False,
          cache_dir=None, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(0, 2), (1, 2), (2, 2)]


def test_a_spec_that_does_not_fit_the_model_is_one_setup_error(run, classifier, photos_dir, tmp_path):
    spec = json.loads(json.dumps(classifier.spec.to_dict()))
    spec["size"] = [300, 300]  # the bundled model takes 224x224
    path = tmp_path / "wrong.json"
    path.write_text(json.dumps(spec))
    for command in (("predict", photos_dir / "coffee.jpg"), ("audit", photos_dir / "ground_truth.csv", "--out",
                                                             tmp_path / "out")):
        result = run(*command, "--preprocess", path)
        assert result.exit_code == 2
        assert result.output.strip().startswith("error: preprocessing spec: NCHW 300x300 does not fit "
                                                "efficientnet_lite0.xml, whose input is [")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("*/*.jpg"))


def test_preprocess_from_a_file_path_and_the_module_hint(run, classifier, photos_dir, tmp_path, monkeypatch):
    (tmp_path / "prep.py").write_text(
        "from ov_explain import Classifier\n"
        "_reference = Classifier(device='CPU', cache_dir=None)\n"
        "def fn(rgb):\n    return _reference.prepare(rgb).tensor\n")
    monkeypatch.chdir(tmp_path)
    result = run("predict", photos_dir / "coffee.jpg", "--preprocess", "./prep.py:fn")
    assert result.exit_code == 0 and "1. espresso" in result.output
    missing = run("predict", photos_dir / "coffee.jpg", "--preprocess", "prep:fn")
    assert missing.exit_code == 2
    assert "cannot import module 'prep'" in missing.output and "write ./prep.py:fn or add its folder to " \
        "PYTHONPATH" in missing.output
    (tmp_path / "broken.py").write_text("def fn(:\n")
    broken = run("predict", photos_dir / "coffee.jpg", "--preprocess", "./broken.py:fn")
    assert broken.exit_code == 2 and "loading broken.py failed (SyntaxError" in broken.output


@pytest.mark.parametrize("method", ["reciprocam", "activationmap"])
def test_a_cnn_method_on_a_transformer_names_the_method_that_fits(run, photos_dir, tmp_path, method):
    from support import save_model, tiny_vit

    model = save_model(tiny_vit(), tmp_path)
    result = run("explain", photos_dir / "coffee.jpg", "--model", model, "--method", method, "--out", tmp_path / "m")
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (f"error: {method} needs a CNN feature map, and this model "
                                                      "is a vision transformer: use vitreciprocam")


def test_vit_method_on_a_cnn_names_reciprocam(run, photos_dir, tmp_path):
    result = run("explain", photos_dir / "coffee.jpg", "--method", "vitreciprocam", "--out", tmp_path / "m")
    assert result.exit_code == 2 and "for a CNN use reciprocam" in result.output


def _immutable(folder: Path) -> Path:
    """A folder nobody, root included, can write into (``chattr +i``); skips where that is not possible."""
    folder.mkdir()
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not possible on this filesystem")
    return folder


@pytest.fixture
def unwritable(tmp_path):
    folder = _immutable(tmp_path / "locked")
    yield folder
    subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.mark.parametrize("command", ["audit", "explain", "export-xai"])
def test_an_unwritable_output_folder_is_one_line_before_any_work(run, photos_dir, unwritable, command):
    args = {"audit": ("audit", photos_dir / "ground_truth.csv", "--out", unwritable),
            "explain": ("explain", photos_dir / "coffee.jpg", "--out", unwritable),
            "export-xai": ("export-xai", "--out", unwritable / "xai.xml")}[command]
    result = run(*args)
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].endswith(f"{unwritable}: cannot write there (Operation not "
                                                           "permitted)")
    assert list(unwritable.iterdir()) == []


def test_an_unexpected_error_is_one_line_and_a_trace_file(run, photos_dir, monkeypatch):
    from ov_explain.core import model

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(model.Classifier, "predict_many", broken)
    result = run("predict", photos_dir / "coffee.jpg")
    assert result.exit_code == 3
    line = result.output.strip()
    assert line.startswith("error: unexpected ZeroDivisionError: a bug (full trace in ") and "\n" not in line
    trace = Path(line.split("full trace in ", 1)[1].split(";", 1)[0])
    assert "ZeroDivisionError: a bug" in trace.read_text() and "Traceback" not in line
    trace.unlink()
    verbose = run("-vv", "predict", photos_dir / "coffee.jpg")  # what the one line promises
    assert verbose.exit_code == 3 and "Traceback (most recent call last)" in verbose.output
    Path(verbose.output.split("full trace in ", 1)[1].split(";", 1)[0]).unlink()


def test_an_unexpected_error_is_still_one_line_when_no_trace_file_can_be_written(run, photos_dir, monkeypatch):
    import tempfile

    from ov_explain.core import model

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    def no_room(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(model.Classifier, "predict_many", broken)
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", no_room)
    result = run("predict", photos_dir / "coffee.jpg")
    assert result.exit_code == 3 and "Traceback" not in result.output
    assert result.output.strip() == ("error: unexpected ZeroDivisionError: a bug (no trace file: [Errno 28] No space "
                                     "left on device; -vv also prints it)")


def test_a_static_batch_vit_whose_tail_cannot_grow_falls_back_or_says_why(run, photos_dir, tmp_path):
    from support import save_model, tiny_vit

    from ov_explain import Classifier
    from ov_explain.explain import Explainer

    model = save_model(tiny_vit(batch=1, literal_shapes=True), tmp_path)
    classifier = Classifier(model, device="CPU", cache_dir=None)
    auto = Explainer(classifier, mode="auto")
    assert auto.mode == "blackbox" and "vitreciprocam cannot run on this graph ([cpu]reshape" in auto.fallback_reason
    result = run("explain", photos_dir / "coffee.jpg", "--model", model, "--mode", "whitebox",
                 "--out", tmp_path / "maps")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error: vitreciprocam cannot run on this graph (") and "Traceback" not in result.output


@pytest.mark.skipif(importlib.util.find_spec("ray") is not None, reason="Ray is installed here")
def test_the_ray_engine_without_the_extra_names_it(run, photos_dir, tmp_path):
    result = run("audit", photos_dir / "ground_truth.csv", "--out", tmp_path / "audit", "--engine", "ray")
    assert result.exit_code == 2 and not (tmp_path / "audit").exists()
    assert result.output.strip() == 'error: --engine ray needs Ray Data: pip install "ov-explain[distributed]"'
