"""Drift audits: a planted change is found, identical deployments show none, the gate exits both ways,
a stopped run resumes to the rows of an uninterrupted one, and the real INT8 / bf16 deployments."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from support import save_model, tiny_cnn

from ov_explain import Classifier, PreprocessSpec, resources
from ov_explain.explain import Explainer
from ov_explain.runs.config import RunConfig
from ov_explain.runs.dataset import read_dataset
from ov_explain.runs.drift.run import ATTENTION_MOVED, PREDICTION_CHANGED, STABLE, run_drift
from ov_explain.runs.engine import RunInterrupted

PLANTED = 2  # the class whose map the candidate moves to the top-left feature cell
LABELS = [f"c{i}" for i in range(5)]


def planted_candidate():
    """The reference CNN plus a term on class 2's logit read from feature cell (0, 0) only."""
    import openvino as ov

    from ov_explain.core._compat import opset

    model = tiny_cnn()
    features = next(n for n in model.get_ordered_ops() if n.get_type_name() == "Relu")
    logits = model.outputs[0].get_node().input_value(0)
    # (N, 16, 16 cells), then cell 0 = row 0, column 0: no second spatial feature map for ReciproCAM to pick.
    flat = opset.reshape(features.output(0), np.array([0, 16, 16], np.int64), special_zero=True)
    cell = opset.gather(flat, np.array(0, np.int64), np.array(2, np.int64))
    weights = np.zeros((16, 5), np.float32)
    weights[:, PLANTED] = 3.0
    moved = opset.add(logits, opset.matmul(cell, weights, False, False))
    return ov.Model([moved], model.get_parameters(), "planted")


def save_deployment(model, folder: Path, name: str) -> Path:
    path = save_model(model, folder, name)
    PreprocessSpec(size=16, std=(255.0, 255.0, 255.0)).to_json(folder / f"{name}.preprocess.json")
    (folder / f"{name}.labels.txt").write_text("\n".join(LABELS) + "\n")
    return path


@pytest.fixture
def tiny(tmp_path):
    """A dataset of 6 random images labelled c0, the reference CNN, a copy of it and the planted one
    (the reference's top-1 on these images is c2, the planted class: both are explained)."""
    rng = np.random.default_rng(11)
    (tmp_path / "data" / "c0").mkdir(parents=True)
    for i in range(6):
        cv2.imwrite(str(tmp_path / "data" / "c0" / f"image{i}.png"), rng.integers(0, 256, (24, 24, 3), np.uint8))
    models = tmp_path / "models"
    models.mkdir()
    reference = save_deployment(tiny_cnn(), models, "reference")
    same = save_deployment(tiny_cnn(), models, "same")
    planted = save_deployment(planted_candidate(), models, "planted")
    return {"data": tmp_path / "data", "reference": reference, "same": same, "planted": planted}


def explainer_of(path: Path) -> Explainer:
    return Explainer(Classifier(path, device="CPU", cache_dir=None), method="reciprocam")


def rows_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "drift.jsonl").read_text().splitlines()]


def test_the_planted_change_is_found_and_only_there(tiny, tmp_path):
    reference, candidate = explainer_of(tiny["reference"]), explainer_of(tiny["planted"])
    summary = run_drift(read_dataset(tiny["data"]), reference, candidate, tmp_path / "drift")
    rows = rows_of(tmp_path / "drift")
    planted = [r for r in rows if r["target_index"] == PLANTED]
    others = [r for r in rows if r["target_index"] != PLANTED]
    assert len(planted) == 6 and len(others) >= 6  # c2 (the top-1) and c0 (the truth) on every image
    assert all(r["reference_top1_class"] == "c2" for r in planted)
    assert all(r["correlation"] < 0.5 and r["case"] in (ATTENTION_MOVED, PREDICTION_CHANGED) for r in planted)
    assert all(r["correlation"] > 0.999 for r in others)  # the other classes' maps did not move
    assert summary.map_correlation_p05 < 0.5 and summary.worst_classes[0]["class"] == "c2"
    assert summary.cases.get(STABLE, 0) == 0  # every image has the moved c2 map
    # The candidate's map of the planted class peaks where the change was planted.
    image = cv2.cvtColor(cv2.imread(planted[0]["source"]), cv2.COLOR_BGR2RGB)
    moved = candidate.explain(image, targets=[PLANTED]).maps[0].raw
    assert np.unravel_index(int(np.argmax(moved)), moved.shape) == (0, 0)
    for row in rows:  # each row's picture is in its case folder under its structured name
        assert (tmp_path / "drift" / row["image_path"]).is_file() and row["image_path"].startswith(row["case"])
    picture = cv2.imread(str(tmp_path / "drift" / rows[0]["image_path"]))
    assert picture.shape == (24, 72, 3)  # reference | candidate | difference
    report = (tmp_path / "drift" / "report.html").read_text()
    assert "Drift of 6 images" in report and "data:image/jpeg;base64," in report


def test_identical_deployments_show_no_drift(tiny, tmp_path):
    summary = run_drift(read_dataset(tiny["data"]), explainer_of(tiny["reference"]), explainer_of(tiny["same"]),
                        tmp_path / "drift")
    rows = rows_of(tmp_path / "drift")
    assert {r["case"] for r in rows} == {STABLE} and summary.cases == {STABLE: 6}
    assert all(r["correlation"] == pytest.approx(1.0, abs=1e-6) and r["iou_top10"] == 1.0 for r in rows)
    assert summary.top1_agreement == 1.0 and all(r["probability_change"] == 0.0 for r in rows)
    assert all(set(row) == {before} for before, row in summary.case_transitions.items())  # no case changed


def test_the_gate_fails_on_the_planted_change_and_passes_identical_deployments(run, tiny, tmp_path):
    common = ["drift", tiny["data"], "--reference", tiny["reference"], "--reference-device", "CPU", "--no-cache",
              "--method", "reciprocam"]
    failed = run(*common, "--candidate", tiny["planted"], "--out", tmp_path / "planted",
                 "--fail-on", "top1-agreement<0.5,map-correlation-p05<0.9")
    assert failed.exit_code == 4, failed.output
    assert "gate failed: map-correlation-p05<0.9 (measured" in failed.stderr
    assert "top1-agreement" not in failed.stderr.split("gate failed:")[1]  # only the limit crossed is named
    passed = run(*common, "--candidate", tiny["same"], "--out", tmp_path / "same",
                 "--fail-on", "top1-agreement<0.99,map-correlation-p05<0.9")
    assert passed.exit_code == 0, passed.output
    bad = run(*common, "--candidate", tiny["same"], "--out", tmp_path / "bad", "--fail-on", "accuracy<0.9")
    assert bad.exit_code == 2 and "--fail-on: 'accuracy<0.9' is not METRIC<VALUE" in bad.stderr


def test_a_stopped_drift_audit_resumes_to_the_rows_of_an_uninterrupted_one(tiny, tmp_path):
    samples = read_dataset(tiny["data"])
    run_drift(samples, explainer_of(tiny["reference"]), explainer_of(tiny["planted"]), tmp_path / "whole",
              run=RunConfig(workers=1))
    stop = threading.Event()

    def progress(done: int, total: int) -> None:
        if done >= 2:
            stop.set()

    with pytest.raises(RunInterrupted) as stopped:
        run_drift(samples, explainer_of(tiny["reference"]), explainer_of(tiny["planted"]), tmp_path / "resumed",
                  run=RunConfig(workers=1), progress=progress, stop=stop)
    assert 2 <= stopped.value.saved < 6 and stopped.value.total == 6
    (tmp_path / "resumed" / "Stable" / "mine.txt").parent.mkdir(exist_ok=True)
    (tmp_path / "resumed" / "Stable" / "mine.txt").write_text("the user's")
    summary = run_drift(samples, explainer_of(tiny["reference"]), explainer_of(tiny["planted"]),
                        tmp_path / "resumed", run=RunConfig(workers=1))
    assert summary.resumed == stopped.value.saved and summary.images == 6

    def comparable(rows):
        return [{k: v for k, v in r.items() if not k.endswith("_ms")} for r in rows]

    assert comparable(rows_of(tmp_path / "resumed")) == comparable(rows_of(tmp_path / "whole"))
    assert (tmp_path / "resumed" / "Stable" / "mine.txt").read_text() == "the user's"
    with pytest.raises(Exception, match="holds a drift audit with different settings"):
        run_drift(samples, explainer_of(tiny["reference"]), explainer_of(tiny["same"]), tmp_path / "resumed")


@pytest.mark.slow
def test_int8_against_fp32_on_the_bundled_photos(run, photos_dir, tmp_path):
    pytest.importorskip("nncf", reason="the quantize extra (NNCF) is not installed here")
    int8 = tmp_path / "int8" / "lite0_int8.xml"
    quantized = run("quantize", "--calibration", photos_dir / "ground_truth.csv", "--out", int8)
    assert quantized.exit_code == 0, quantized.output
    result = run("drift", photos_dir / "ground_truth.csv", "--reference-device", "CPU", "--candidate", int8,
                 "--out", tmp_path / "drift", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["images"] == 7 and summary["errors"] == 0
    assert summary["candidate"]["model"].endswith("lite0_int8.xml") and summary["candidate"]["precision"] == "f32"
    # Measured on this model: INT8 keeps 6 of the 7 top-1 answers and every map at r >= 0.98.
    assert summary["top1_agreement"] >= 5 / 7 and summary["map_correlation_median"] > 0.95
    assert (tmp_path / "drift" / "report.html").is_file() and (tmp_path / "drift" / "correlation.png").is_file()


@pytest.mark.slow
def test_f32_against_bf16_on_a_cpu_with_bf16(run, photos_dir, tmp_path):
    import openvino as ov

    from ov_explain.core.devices import default_precision

    if default_precision(ov.Core(), "CPU") != "bf16":
        pytest.skip("this CPU runs f32 by default: the same IR in 'device' precision is the reference")
    result = run("drift", photos_dir / "ground_truth.csv", "--reference-device", "CPU", "--candidate-precision",
                 "device", "--out", tmp_path / "drift", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["candidate"]["precision"] == "bf16" and summary["reference"]["precision"] == "f32"
    rows = [json.loads(line) for line in (tmp_path / "drift" / "drift.jsonl").read_text().splitlines()]
    # Each row says what the two deployments predicted, as each predicts alone. Whether bf16 changes a
    # top-1 depends on the CPU: on an AMX Xeon grace_hopper goes academic gown -> mortarboard; on an AMD
    # EPYC with AVX512-BF16 it stays (both measured), so the rows are checked against the real predictions.
    model = resources.default_model_path()
    with Classifier(model, device="CPU", precision="f32") as f32, \
            Classifier(model, device="CPU", precision="device") as bf16:
        for row in rows:
            image = photos_dir / Path(row["source"]).name
            expected = (f32.predict(image).top[0].index, bf16.predict(image).top[0].index)
            assert (row["reference_top1_index"], row["candidate_top1_index"]) == expected
            assert row["top1_agreement"] == (expected[0] == expected[1])
            assert (row["case"] == PREDICTION_CHANGED) == (expected[0] != expected[1])


def test_drift_configs_reach_both_deployments_and_an_earlier_folder_resumes(tiny, tmp_path):
    """drift() takes the configs and keyword shortcuts (``candidate=`` a path, ``reference_device``, a model
    field for both); a drift.json written before --preprocess existed (no ``preprocess`` key) resumes."""
    from ov_explain.runs.drift.run import drift

    out = tmp_path / "drift"
    summary = drift(tiny["data"], out, reference=tiny["reference"], candidate=tiny["planted"], method="reciprocam",
                    reference_device="CPU", cache_dir=None, report=False, limit=4)
    assert summary.images == 4 and summary.reference["device"] == summary.candidate["device"] == "CPU"
    assert Path(summary.candidate["model"]).name == "planted.xml"
    assert summary.reference["preprocess"] is None  # the model's own spec
    settings = json.loads((out / "drift.json").read_text())
    for role in ("reference", "candidate"):
        del settings[role]["preprocess"]
    (out / "drift.json").write_text(json.dumps(settings))
    again = drift(tiny["data"], out, reference=tiny["reference"], candidate={"path": tiny["planted"]},
                  method="reciprocam", reference_device="CPU", cache_dir=None, report=False, limit=4)
    assert again.resumed == 4
    assert json.loads((out / "drift.json").read_text())["candidate"]["preprocess"] is None
    with pytest.raises(TypeError, match="unknown option 'candidate_colour'"):
        drift(tiny["data"], out, reference=tiny["reference"], candidate_colour="red")
    with pytest.raises(Exception, match="the candidate deployment is the reference"):
        drift(tiny["data"], out, reference=tiny["reference"], reference_device="CPU")


def test_the_reference_model_is_closed_when_the_dataset_cannot_be_read(tmp_path, monkeypatch):
    from ov_explain.core.runtime import ImageModel
    from ov_explain.runs.dataset import DatasetError
    from ov_explain.runs.drift.run import drift

    closed = []
    original = ImageModel.close
    monkeypatch.setattr(ImageModel, "close", lambda self: (closed.append(self), original(self)))
    with pytest.raises(DatasetError, match="dataset not found"):
        drift(tmp_path / "no-such-dataset", tmp_path / "out", candidate={"precision": "device"},
              reference_device="CPU", cache_dir=None)
    assert len(closed) == 1 and not (tmp_path / "out").exists()
