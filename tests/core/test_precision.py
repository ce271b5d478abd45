"""Precision is part of the result: f32 by default on every CPU, ``device`` runs what the device runs,
and every result, manifest row, summary, settings file and report says what executed."""

from __future__ import annotations

import json
import logging

import openvino as ov
import pytest

from ov_explain import Classifier
from ov_explain.core.devices import default_precision
from ov_explain.explain import Explainer

CPU_DEFAULT = default_precision(ov.Core(), "CPU")
needs_bf16_cpu = pytest.mark.skipif(
    CPU_DEFAULT != "bf16", reason=f"this CPU computes in {CPU_DEFAULT} by default (no AMX / AVX512-BF16), so "
                                  "'device' precision is f32 and there is no bf16 run to check")
#: Photos the model is sure of in f32 (DESIGN.md: espresso 0.945, tripod 0.976): their top-1 must
#: survive bf16. The low-confidence photos may flip (grace_hopper: gown 0.213 vs mortarboard 0.209).
CONFIDENT = {"coffee.jpg": "espresso", "camera.jpg": "tripod"}


class F32OnlyCore:
    """The real Core seen as a CPU without bf16 (an AMD EPYC or an older Xeon): it offers f32 only,
    and computes in f32 when nobody asks for a precision."""

    def __init__(self) -> None:
        self._core = ov.Core()
        self.available_devices = ["CPU"]

    def get_property(self, device: str, key: str):
        if key == "OPTIMIZATION_CAPABILITIES":
            return ["FP32", "INT8", "BIN", "EXPORT_IMPORT"]
        if key == "INFERENCE_PRECISION_HINT":
            return ov.Type.f32
        return self._core.get_property(device, key)

    def read_model(self, path: str):
        return self._core.read_model(path)

    def compile_model(self, model, device: str, config: dict):
        return self._core.compile_model(model, device, {"INFERENCE_PRECISION_HINT": "f32", **config})


def test_results_record_f32_by_default(classifier, photos_dir):
    assert (classifier.precision, classifier.requested_precision) == ("f32", "f32")
    prediction = classifier.predict(photos_dir / "coffee.jpg")
    assert prediction.precision == "f32" and prediction.to_dict()["precision"] == "f32"
    white = Explainer(classifier, mode="whitebox").explain(photos_dir / "coffee.jpg")
    black = Explainer(classifier, method="rise", num_masks=16).explain(photos_dir / "coffee.jpg")
    for explanation in (white, black):
        assert explanation.precision == "f32" and explanation.to_dict()["precision"] == "f32"
        assert explanation.prediction.precision == "f32"


def test_device_precision_is_read_back_from_the_compiled_model(photos_dir):
    classifier = Classifier(device="CPU", cache_dir=None, precision="device")
    assert classifier.requested_precision == "device"
    assert classifier.precision == CPU_DEFAULT  # whatever this CPU runs: bf16 with AMX, else f32
    explainer = Explainer(classifier, mode="whitebox")
    assert explainer.explain(photos_dir / "coffee.jpg").precision == CPU_DEFAULT


@needs_bf16_cpu
@pytest.mark.slow
def test_bf16_cpu_runs_the_real_model_in_bf16_and_keeps_confident_top1(photos_dir):
    native = Classifier(device="CPU", cache_dir=None, precision="device")
    pinned = Classifier(device="CPU", cache_dir=None, precision="f32")
    assert (native.precision, pinned.precision) == ("bf16", "f32")
    for name, label in CONFIDENT.items():
        in_bf16, in_f32 = native.predict(photos_dir / name), pinned.predict(photos_dir / name)
        assert in_bf16.precision == "bf16" and in_bf16.label == in_f32.label == label
        # bf16 keeps 8 bits of mantissa: a confident probability moves, but by little (measured <= 0.01).
        assert abs(in_bf16.top[0].probability - in_f32.top[0].probability) < 0.02


def test_f32_only_cpu_runs_f32_for_device_and_falls_back_from_bf16(photos_dir, caplog):
    native = Classifier(device="CPU", cache_dir=None, precision="device", core=F32OnlyCore())
    assert native.precision == "f32"
    with caplog.at_level(logging.WARNING, logger="ov_explain"):
        asked = Classifier(device="CPU", cache_dir=None, precision="bf16", core=F32OnlyCore())
    assert (asked.precision, asked.requested_precision) == ("f32", "bf16")
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == \
        ["CPU cannot compute in bf16 (it offers f32); running in f32"]
    assert asked.predict(photos_dir / "coffee.jpg").label == "espresso"


def test_cli_precision_flag_json_and_devices(run, photos_dir):
    data = json.loads(run("predict", photos_dir / "coffee.jpg", "--device", "CPU", "--precision", "device",
                          "--json").output)
    assert (data["precision"], data["requested_precision"]) == (CPU_DEFAULT, "device")
    assert data["predictions"][0]["precision"] == CPU_DEFAULT
    data = json.loads(run("predict", photos_dir / "coffee.jpg", "--json").output)
    assert data["precision"] == "f32" and data["predictions"][0]["top"][0]["name"] == "espresso"

    devices = json.loads(run("devices", "--json").output)
    cpu = next(d for d in devices["devices"] if d["name"] == "CPU")
    assert cpu["default_precision"] == CPU_DEFAULT and "f32" in cpu["precisions"]
    assert ("bf16" in cpu["precisions"]) == ("BF16" in cpu["capabilities"])
    text = run("devices").output
    assert f"precision: {CPU_DEFAULT} by default; offers {', '.join(cpu['precisions'])}" in text

    bad = run("predict", photos_dir / "coffee.jpg", "--precision", "fp64")
    assert bad.exit_code == 2 and "'fp64' is not one of 'f32', 'bf16', 'f16', 'device'" in bad.output


@pytest.mark.slow
def test_explain_and_export_say_what_executed(run, photos_dir, tmp_path):
    data = json.loads(run("explain", photos_dir / "coffee.jpg", "--out", tmp_path / "maps", "--json").output)
    assert data["precision"] == "f32" and data["explanations"][0]["precision"] == "f32"
    result = run("export-xai", "--out", tmp_path / "xai.xml", "--precision", "device")
    assert result.exit_code == 0 and result.output.rstrip().endswith(f"runs on CPU in {CPU_DEFAULT}")


@pytest.mark.slow
def test_audit_records_precision_and_refuses_to_resume_in_another(run, photos_dir, tmp_path):
    out = tmp_path / "audit"
    args = ("audit", photos_dir / "ground_truth.csv", "--out", out, "--limit", "2", "--no-grids")
    first = run(*args, "--precision", "device")
    assert first.exit_code == 0, first.output
    assert f"on CPU in {CPU_DEFAULT};" in first.output
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert rows and {r["precision"] for r in rows} == {CPU_DEFAULT}
    assert json.loads((out / "summary.json").read_text())["precision"] == CPU_DEFAULT
    settings = json.loads((out / "audit.json").read_text())
    assert (settings["requested_precision"], settings["executed_precision"]) == ("device", CPU_DEFAULT)
    assert f"on CPU in {CPU_DEFAULT}" in (out / "report.html").read_text()
    again = run(*args)  # the default, f32: a different setting
    assert again.exit_code == 2 and "different settings (" in again.output and "precision" in again.output
    assert run(*args, "--precision", "device").exit_code == 0  # the same setting resumes
