"""Device discovery, AUTO policy and compile fallback, driven by an injected fake Core."""

from __future__ import annotations

import logging

import openvino as ov
import pytest
from support import tiny_classifier_model

from ov_explain.core.devices import (
    DeviceRequest,
    auto_choice,
    candidates_for,
    compile_config,
    compile_with_fallback,
    default_cache_dir,
    default_precision,
    discover,
    precision_name,
)
from ov_explain.core.errors import DeviceError


class FakeCompiled:
    def __init__(self, device: str, model, precision: str) -> None:
        self.device, self.model, self.precision = device, model, precision
        self.inputs = model.inputs
        self.property_reads: list[str] = []

    def get_property(self, key: str):
        self.property_reads.append(key)
        if key == "INFERENCE_PRECISION_HINT":
            return {"f32": ov.Type.f32, "bf16": ov.Type.bf16, "f16": ov.Type.f16}[self.precision]
        if key == "OPTIMAL_NUMBER_OF_INFER_REQUESTS":
            return FAKE_REQUESTS[self.device]
        assert key == "EXECUTION_DEVICES"
        return [self.device]


#: OPTIMAL_NUMBER_OF_INFER_REQUESTS per device, as a plugin reports it for a compiled model.
FAKE_REQUESTS = {"CPU": 2, "GPU": 4, "NPU": 8}


#: Per device kind: (OPTIMIZATION_CAPABILITIES, default working precision), as the real plugins report
#: them on an AMX Xeon, an Arc GPU and a Core Ultra NPU.
FAKE_DEVICES = {"CPU": (["BF16", "FP32", "FP16", "INT8", "BIN"], "bf16"), "GPU": (["FP32", "FP16", "INT8"], "f16"),
                "NPU": (["FP16", "INT8"], "f16")}


class FakeCore:
    """Devices and failures are injected: ``fails`` maps a device to 'always' or 'dynamic'.

    ``kinds`` overrides a device kind's (capabilities, default precision), e.g. an f32-only CPU.
    """

    def __init__(self, devices: list[str], fails: dict[str, str] | None = None,
                 kinds: dict[str, tuple[list[str], str]] | None = None) -> None:
        self.available_devices = devices
        self.fails = fails or {}
        self.kinds = {**FAKE_DEVICES, **(kinds or {})}
        self.calls: list[tuple[str, bool, dict]] = []

    def _kind(self, device: str) -> tuple[list[str], str]:
        return self.kinds[device.split(".")[0]]

    def get_property(self, device: str, key: str):
        if key == "FULL_DEVICE_NAME":
            return f"Fake {device}"
        if key == "OPTIMIZATION_CAPABILITIES":
            return self._kind(device)[0]
        if key == "INFERENCE_PRECISION_HINT":
            return {"f32": ov.Type.f32, "bf16": ov.Type.bf16, "f16": ov.Type.f16}[self._kind(device)[1]]
        raise RuntimeError(f"{device} does not support {key}")

    def compile_model(self, model, device: str, config: dict):
        dynamic = any(i.get_partial_shape().is_dynamic for i in model.inputs)
        self.calls.append((device, dynamic, config))
        rule = self.fails.get(device)
        if rule == "always":
            raise RuntimeError(f"Exception from src/plugin.cpp:42:\n{device} plugin is not installed\n")
        if rule == "dynamic" and dynamic:
            raise RuntimeError("Exception from src/npu.cpp:7:\nDynamic shapes are not supported\n")
        return FakeCompiled(device, model, config.get("INFERENCE_PRECISION_HINT", self._kind(device)[1]))


@pytest.fixture
def dynamic_model():
    return tiny_classifier_model(batch=-1)


@pytest.mark.parametrize("text, candidates, auto", [
    (None, ("NPU", "GPU", "CPU"), True),
    ("AUTO", ("NPU", "GPU", "CPU"), True),
    ("auto:gpu,cpu", ("GPU", "CPU"), True),
    ("CPU", ("CPU",), False),
    ("gpu.1", ("GPU.1",), False),
])
def test_parse_device_request(text, candidates, auto):
    request = DeviceRequest.parse(text)
    assert request.candidates == candidates and request.auto is auto


@pytest.mark.parametrize("text", ["CPU,GPU", "AUTO:", "AUTO: , "])
def test_parse_rejects_malformed_requests(text):
    with pytest.raises(DeviceError, match="device"):
        DeviceRequest.parse(text)


@pytest.mark.parametrize("available, request_text, expected", [
    (["CPU", "GPU.0", "GPU.1", "NPU"], "AUTO", ["NPU", "GPU.0", "GPU.1", "CPU"]),
    (["CPU", "GPU"], "AUTO", ["GPU", "CPU"]),
    (["CPU"], "AUTO", ["CPU"]),
    (["CPU", "GPU.0", "GPU.1"], "AUTO:GPU.1,CPU", ["GPU.1", "CPU"]),
    (["CPU", "NPU"], "AUTO:CPU,NPU", ["CPU", "NPU"]),
    (["CPU", "GPU.0"], "GPU", ["GPU.0"]),
])
def test_candidates_follow_priority(available, request_text, expected):
    assert candidates_for(DeviceRequest.parse(request_text), available) == expected


def test_missing_device_names_what_is_available():
    with pytest.raises(DeviceError, match=r"asked for NPU; available: CPU, GPU"):
        candidates_for(DeviceRequest.parse("NPU"), ["CPU", "GPU"])


def test_discover_reports_names_and_capabilities_and_survives_unknown_properties():
    devices = discover(FakeCore(["CPU", "NPU"]))
    assert [d.name for d in devices] == ["CPU", "NPU"]
    assert devices[1].full_name == "Fake NPU"
    assert devices[1].capabilities == ("FP16", "INT8")
    assert (devices[0].default_precision, devices[0].precisions) == ("bf16", ("f32", "bf16", "f16"))
    assert (devices[1].default_precision, devices[1].precisions) == ("f16", ("f16",))
    assert "DEVICE_ARCHITECTURE" not in devices[0].properties  # the fake raises for it: skipped, not fatal


def test_auto_choice_prefers_npu_then_gpu_then_cpu():
    assert auto_choice(FakeCore(["CPU", "GPU", "NPU"])) == "NPU"
    assert auto_choice(FakeCore(["CPU", "GPU"])) == "GPU"
    assert auto_choice(FakeCore(["CPU"])) == "CPU"
    assert auto_choice(FakeCore(["CPU", "GPU"]), ["CPU", "GPU"]) == "CPU"


def test_npu_rejecting_dynamic_shapes_gets_static_retry(dynamic_model, tmp_path):
    core = FakeCore(["CPU", "NPU"], fails={"NPU": "dynamic"})
    result = compile_with_fallback(core, dynamic_model, "AUTO", cache_dir=tmp_path)
    assert result.device == "NPU" and result.static_shapes
    assert result.execution_devices == ("NPU",)
    assert [(d, dyn) for d, dyn, _ in core.calls] == [("NPU", True), ("NPU", False)]
    static_input = result.compiled.model.inputs[0].get_partial_shape()
    assert static_input.is_static and static_input[0].get_length() == 1
    # Read once, here: owners read the fields, never the compiled model's properties per image
    assert (result.optimal_requests, result.max_batch) == (8, 1)
    assert result.compiled.property_reads.count("OPTIMAL_NUMBER_OF_INFER_REQUESTS") == 1
    assert not dynamic_model.inputs[0].get_partial_shape().is_static, "the caller's model must not be reshaped"


def test_falls_back_to_next_device_with_a_warning(dynamic_model, caplog, tmp_path):
    core = FakeCore(["CPU", "GPU", "NPU"], fails={"NPU": "always", "GPU": "always"})
    with caplog.at_level(logging.WARNING, logger="ov_explain"):
        result = compile_with_fallback(core, dynamic_model, "AUTO", cache_dir=tmp_path)
    assert result.device == "CPU" and result.execution_devices == ("CPU",)
    assert [a.device for a in result.attempts if a.reason] == ["NPU", "NPU", "GPU", "GPU"]
    assert (result.optimal_requests, result.max_batch) == (2, None)  # the CPU's figure, its dynamic batch kept
    warnings = " ".join(r.getMessage() for r in caplog.records)
    assert "NPU plugin is not installed" in warnings and "GPU plugin is not installed" in warnings
    assert "Exception from" not in warnings  # one useful line, not the C++ location


def test_explicit_device_does_not_fall_back(dynamic_model, tmp_path):
    core = FakeCore(["CPU", "GPU"], fails={"GPU": "always"})
    with pytest.raises(DeviceError, match=r"GPU: GPU plugin is not installed"):
        compile_with_fallback(core, dynamic_model, "GPU", cache_dir=tmp_path)
    assert {d for d, _, _ in core.calls} == {"GPU"}


def test_every_candidate_failing_lists_each_reason(dynamic_model, tmp_path):
    core = FakeCore(["CPU", "GPU"], fails={"GPU": "always", "CPU": "always"})
    with pytest.raises(DeviceError) as info:
        compile_with_fallback(core, dynamic_model, "AUTO:GPU,CPU", cache_dir=tmp_path)
    message = str(info.value)
    assert "GPU: GPU plugin is not installed" in message and "CPU: CPU plugin is not installed" in message
    assert "\n" not in message


def test_hint_and_cache_dir_reach_the_compiler(dynamic_model, tmp_path):
    core = FakeCore(["CPU"])
    compile_with_fallback(core, dynamic_model, "CPU", hint="THROUGHPUT", cache_dir=tmp_path / "cache")
    assert core.calls[0][2] == {"PERFORMANCE_HINT": "THROUGHPUT", "CACHE_DIR": str(tmp_path / "cache"),
                                "INFERENCE_PRECISION_HINT": "f32"}
    assert (tmp_path / "cache").is_dir()
    core = FakeCore(["CPU"])
    compile_with_fallback(core, dynamic_model, "CPU", cache_dir=None)
    assert "CACHE_DIR" not in core.calls[0][2]


def test_cache_dir_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("OV_EXPLAIN_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.setenv("OV_EXPLAIN_CACHE_DIR", "off")
    assert default_cache_dir() is None
    monkeypatch.delenv("OV_EXPLAIN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "ov_explain" / "model_cache"


def test_unknown_hint_is_refused():
    with pytest.raises(DeviceError, match="LATENCY or THROUGHPUT"):
        compile_config("FAST", None)


def test_real_cpu_compile_records_execution_device(tmp_path):
    import openvino as ov

    result = compile_with_fallback(ov.Core(), tiny_classifier_model(), "AUTO", cache_dir=tmp_path)
    assert result.device == "CPU" and result.execution_devices == ("CPU",)
    assert any(tmp_path.iterdir()), "the compiled-model cache should have been written"


# ----- precision ----------------------------------------------------------------------------------
F32_ONLY_CPU = {"CPU": (["FP32", "INT8", "BIN"], "f32")}  # an EPYC or a Xeon without AVX512-BF16 / AMX


@pytest.mark.parametrize("kinds, precision, hint, executed", [
    (None, "f32", "f32", "f32"),              # the default: reproducible, even where the CPU has bf16
    (None, "device", None, "bf16"),           # what deployment sees on an AMX Xeon
    (None, "bf16", "bf16", "bf16"),
    (F32_ONLY_CPU, "f32", "f32", "f32"),
    (F32_ONLY_CPU, "device", None, "f32"),
])
def test_cpu_precision_reaches_the_compiler_and_is_read_back(dynamic_model, tmp_path, kinds, precision, hint,
                                                             executed):
    core = FakeCore(["CPU"], kinds=kinds)
    result = compile_with_fallback(core, dynamic_model, "CPU", cache_dir=None, precision=precision)
    assert core.calls[0][2].get("INFERENCE_PRECISION_HINT") == hint
    assert (result.precision, result.requested_precision) == (executed, precision)


@pytest.mark.parametrize("device, kinds, precision, offered, executed", [
    ("NPU", None, "f32", "f16", "f16"),              # an NPU has no f32
    ("NPU", None, "bf16", "f16", "f16"),
    ("CPU", F32_ONLY_CPU, "bf16", "f32", "f32"),     # bf16 asked of a CPU without it
    ("CPU", F32_ONLY_CPU, "f16", "f32", "f32"),
])
def test_precision_the_device_lacks_falls_back_with_one_warning(dynamic_model, caplog, device, kinds, precision,
                                                                offered, executed):
    core = FakeCore([device], kinds=kinds)
    with caplog.at_level(logging.WARNING, logger="ov_explain"):
        result = compile_with_fallback(core, dynamic_model, device, cache_dir=None, precision=precision)
    assert "INFERENCE_PRECISION_HINT" not in core.calls[0][2]
    assert (result.precision, result.requested_precision) == (executed, precision)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"{device} cannot compute in {precision} (it offers {offered}); running in {executed}"]


def test_precision_is_chosen_per_device_along_the_fallback(dynamic_model, tmp_path):
    core = FakeCore(["CPU", "GPU", "NPU"], fails={"NPU": "always"})
    result = compile_with_fallback(core, dynamic_model, "AUTO", cache_dir=None, precision="f32")
    assert [c[2].get("INFERENCE_PRECISION_HINT") for c in core.calls] == [None, None, "f32"]  # NPU twice, GPU
    assert (result.device, result.precision) == ("GPU", "f32")


def test_unknown_precision_is_refused_before_compiling(dynamic_model):
    core = FakeCore(["CPU"])
    with pytest.raises(DeviceError, match=r"precision 'fp64': expected one of f32, bf16, f16, device"):
        compile_with_fallback(core, dynamic_model, "CPU", precision="fp64")
    assert core.calls == []


@pytest.mark.parametrize("value, name", [(ov.Type.f32, "f32"), (ov.Type.bf16, "bf16"), (ov.Type.f16, "f16"),
                                         ("bfloat16", "bf16"), ("FP16", "f16"), (ov.Type.i8, None),
                                         ("<Type: 'float32'>", "f32")])
def test_precision_names(value, name):
    assert precision_name(value) == name


def test_real_cpu_runs_f32_when_asked_and_reports_its_default_otherwise(tmp_path):
    core = ov.Core()
    model = tiny_classifier_model()
    pinned = compile_with_fallback(core, model, "CPU", cache_dir=None, precision="f32")
    native = compile_with_fallback(core, model, "CPU", cache_dir=None, precision="device")
    assert pinned.precision == "f32"
    assert native.precision == default_precision(core, "CPU")
    assert native.precision in ("f32", "bf16")
