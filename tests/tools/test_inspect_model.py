"""inspect_model: what the tool reads in a model, checked on real graphs of each kind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
from support import save_model, tiny_classifier_model, tiny_cnn, tiny_vit

from ov_explain.core.preprocess import PreprocessSpec
from ov_explain.tools.inspect_model import inspect_model


def nhwc_softmax_onnx(path: Path) -> Path:
    """An ONNX classifier on NHWC pixels with the softmax inside the graph:
    Transpose -> Conv (16 channels, stride 4) -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> Softmax."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    weights = [numpy_helper.from_array(rng.normal(0, 0.3, (16, 3, 4, 4)).astype(np.float32), "conv_w"),
               numpy_helper.from_array(rng.normal(0, 0.5, (16, 6)).astype(np.float32), "fc_w"),
               numpy_helper.from_array(rng.normal(0, 0.1, (6,)).astype(np.float32), "fc_b")]
    nodes = [helper.make_node("Transpose", ["pixels"], ["nchw"], name="to_nchw", perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["nchw", "conv_w"], ["conv"], name="conv", strides=[4, 4]),
             helper.make_node("Relu", ["conv"], ["features"], name="features"),
             helper.make_node("GlobalAveragePool", ["features"], ["pooled"], name="gap"),
             helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten", axis=1),
             helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["scores"], name="fc"),
             helper.make_node("Softmax", ["scores"], ["probs"], name="head_softmax", axis=1)]
    graph = helper.make_graph(nodes, "nhwc_softmax",
                              [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [1, 32, 32, 3])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 6])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


class InjectedCore:
    """The real CPU plus injected devices: ``fails`` maps a device to 'always' or 'dynamic' (it
    rejects dynamic shapes, as an NPU does); an injected device that accepts compiles on the CPU."""

    def __init__(self, extra: dict[str, str]) -> None:
        self.real = ov.Core()
        self.fails = extra
        self.available_devices = ["CPU", *extra]
        self.compiled_on: list[str] = []

    def get_property(self, device: str, key: str):
        if device == "CPU":
            return self.real.get_property(device, key)
        if key == "FULL_DEVICE_NAME":
            return f"Injected {device}"
        raise RuntimeError(f"{device} does not support {key}")

    def compile_model(self, model, device: str, config: dict):
        dynamic = any(i.get_partial_shape().is_dynamic for i in model.inputs)
        rule = self.fails.get(device)
        if rule == "always":
            raise RuntimeError(f"Exception from src/plugin.cpp:42:\n{device} plugin is not installed\n")
        if rule == "dynamic" and dynamic:
            raise RuntimeError("Exception from src/npu.cpp:7:\nDynamic shapes are not supported\n")
        self.compiled_on.append(device)
        return self.real.compile_model(model, "CPU", config)


@pytest.fixture(scope="module")
def bundled():
    return inspect_model(device="CPU")


def test_bundled_model_ports_scores_and_preprocessing(bundled):
    from ov_explain.core.resources import default_model_path

    assert bundled.model == str(default_model_path()) and bundled.format == "OpenVINO IR"
    [image] = bundled.inputs
    assert (image.shape, image.element_type, image.layout, image.role) == ((None, 3, 224, 224), "f32", "NCHW", "image")
    [logits] = bundled.outputs
    assert (logits.name, logits.shape, logits.role) == ("logits", (None, 1000), "classification")
    scores = bundled.scores
    assert (scores.output, scores.num_classes, scores.kind, scores.softmax_node) == ("logits", 1000, "logits", None)
    assert scores.decided_by == "no Softmax in the graph; values on a grey image"
    assert scores.labels and scores.labels_origin == str(default_model_path().with_suffix(".labels.txt"))
    spec = bundled.preprocess
    assert spec.origin == "ov_explain spec in model rt_info" and spec.found and not spec.embedded
    assert (spec.size, spec.layout, spec.resize, spec.crop_fraction, spec.interpolation) == \
        ((224, 224), "NCHW", "center_crop", 0.875, "cubic")
    assert (spec.mean, spec.std, spec.color) == ((127.0,) * 3, (128.0,) * 3, "RGB")


def test_bundled_model_whitebox_and_cpu(bundled):
    white = bundled.whitebox
    assert (white.architecture, white.method, white.works, white.reason, white.fallback, white.readout) == \
        ("cnn", "cam", True, None, None, "probability")
    assert white.target.kind == "feature_map" and white.target.shape == (1280, 7, 7)
    assert white.target.layout == "NCHW" and white.target.name == "__module._swish/aten::hardtanh/Clamp_1"
    assert white.linear_head is True and white.shortcut is True and white.map_size == (7, 7)
    assert len(white.other_candidates) == 5 and white.target.name not in [c.name for c in white.other_candidates]
    assert white.other_candidates[0].shape == (1280, 7, 7)  # nearest the head first
    [cpu] = bundled.devices
    assert cpu.device == "CPU" and cpu.ok and cpu.execution_devices == ("CPU",) and cpu.precision == "f32"
    assert cpu.compile_ms > 0 and cpu.error is None


def test_nhwc_onnx_with_softmax_in_the_graph_and_no_spec(tmp_path, caplog):
    path = nhwc_softmax_onnx(tmp_path / "nhwc" / "classifier.onnx")
    report = inspect_model(path, device="CPU", probe_devices=False)
    assert report.format == "ONNX"
    [image] = report.inputs
    assert (image.shape, image.layout) == ((1, 32, 32, 3), "NHWC")
    scores = report.scores
    assert (scores.kind, scores.decided_by, scores.num_classes) == ("probabilities", "Softmax in the graph", 6)
    model = ov.Core().read_model(str(path))
    [softmax] = [n for n in model.get_ordered_ops() if n.get_type_name() == "Softmax"]
    assert scores.softmax_node == softmax.get_friendly_name() == "probs"  # OpenVINO names ONNX ops by output
    assert not scores.labels and scores.labels_origin is None
    spec = report.preprocess
    assert spec.origin == "none found: plain resize to 32x32" and not spec.found
    assert (spec.size, spec.layout, spec.mean, spec.std) == ((32, 32), "NHWC", (0.0,) * 3, (1.0,) * 3)
    assert "no preprocessing spec found" in caplog.text
    white = report.whitebox
    assert white.works and white.method == "cam" and white.architecture == "cnn"
    assert white.target.shape == (16, 8, 8) and white.target.layout == "NCHW"
    assert white.map_size == (8, 8)
    # As read, ONNX's GlobalAveragePool has ShapeOf -> Range axes and Gemm an alpha Multiply: constant
    # folding shows the head, so the default CAM (and ReciproCAM's shortcut) apply to an ONNX export too.
    assert white.linear_head is True and white.shortcut is True and white.readout == "probability"
    with_reciprocam = inspect_model(path, device="CPU", method="reciprocam", probe_devices=False).whitebox
    assert (with_reciprocam.shortcut, with_reciprocam.readout) == (True, "logit")


def test_transformer_reports_the_token_stream(tmp_path):
    path = save_model(tiny_vit(), tmp_path / "vit")
    report = inspect_model(path, device="CPU", probe_devices=False)
    white = report.whitebox
    assert (white.architecture, white.method, white.works) == ("transformer", "vitreciprocam", True)
    target = white.target
    assert (target.kind, target.name, target.shape, target.grid, target.aux_tokens) == \
        ("token_stream", "block2.input", (17, 16), (4, 4), 1)
    assert [c.name for c in white.other_candidates] == ["block1.input"]
    assert white.linear_head is None and white.map_size == (4, 4)


def test_cnn_method_asked_for_on_a_transformer_says_why(tmp_path):
    path = save_model(tiny_vit(), tmp_path / "vit")
    white = inspect_model(path, device="CPU", method="reciprocam", probe_devices=False).whitebox
    assert not white.works and white.target is None and "use vitreciprocam" in white.reason
    assert white.fallback is None  # a method named runs in its own mode: nothing falls back


def test_no_feature_map_reports_why_and_the_blackbox_fallback(tmp_path):
    path = save_model(tiny_classifier_model(softmax=True), tmp_path / "pool")
    report = inspect_model(path, device="CPU", probe_devices=False)
    white = report.whitebox
    assert (white.works, white.target, white.other_candidates, white.linear_head) == (False, None, [], None)
    assert white.reason.startswith("no spatial feature map") and white.fallback == "aise"
    assert report.scores.kind == "probabilities" and report.scores.softmax_node


def test_bad_target_layer_is_reported_without_a_fallback(tmp_path):
    path = save_model(tiny_cnn(), tmp_path / "cnn")
    white = inspect_model(path, device="CPU", target_layer="nowhere", probe_devices=False).whitebox
    assert not white.works and white.fallback is None and "no node named 'nowhere'" in white.reason


def test_mlp_head_is_not_a_linear_head(tmp_path):
    path = save_model(tiny_cnn(head="mlp"), tmp_path / "mlp")
    white = inspect_model(path, device="CPU", probe_devices=False).whitebox
    assert white.works and white.linear_head is False and white.shortcut is False
    assert white.target.shape == (16, 4, 4)


def test_a_failing_device_is_reported_and_the_others_still_compile(tmp_path):
    path = save_model(tiny_cnn(), tmp_path / "cnn")  # dynamic batch
    core = InjectedCore({"GPU.0": "always", "NPU": "dynamic"})
    devices = {d.device: d for d in inspect_model(path, device="CPU", core=core).devices}
    assert list(devices) == ["CPU", "GPU.0", "NPU"]
    assert devices["CPU"].ok and devices["CPU"].precision == "f32" and not devices["CPU"].static_shapes
    gpu = devices["GPU.0"]
    assert not gpu.ok and gpu.error == "GPU.0 plugin is not installed" and gpu.full_name == "Injected GPU.0"
    assert gpu.compile_ms is None and gpu.execution_devices == ()
    npu = devices["NPU"]
    assert npu.ok and npu.static_shapes and npu.compile_ms > 0
    assert core.compiled_on == ["CPU", "NPU"]


def test_labels_origin_and_output_given(tmp_path):
    path = save_model(tiny_cnn(num_classes=5), tmp_path / "cnn")
    labels = tmp_path / "names.txt"
    labels.write_text("\n".join("abcde") + "\n")
    scores = inspect_model(path, device="CPU", labels=labels, output="probabilities", probe_devices=False).scores
    assert scores.labels and scores.labels_origin == str(labels)
    assert (scores.kind, scores.decided_by) == ("probabilities", "--output")


def _custom(image):
    return np.zeros((3, 8, 8), np.float32)


@pytest.mark.parametrize("setup, expected", [
    ("none", "none found: plain resize to 8x8"),
    ("sidecar", "ov_explain spec {sidecar}"),
    ("spec", "a PreprocessSpec object"),
    ("function", f"custom function {__name__}:_custom"),
    ("embedded", "embedded in the IR"),
])
def test_preprocess_origin(tmp_path, setup, expected):
    spec = PreprocessSpec(size=(8, 8), mean=(1, 2, 3))
    model = tiny_classifier_model()
    if setup == "embedded":
        model = spec.embed(model)
    path = save_model(model, tmp_path / "m")
    sidecar = path.with_name("model.preprocess.json")
    if setup == "sidecar":
        spec.to_json(sidecar)
    preprocess = {"spec": spec, "function": _custom}.get(setup)
    report = inspect_model(path, device="CPU", preprocess=preprocess, probe_devices=False)
    assert report.preprocess.origin == expected.format(sidecar=sidecar)
    assert report.preprocess.embedded is (setup == "embedded")
    assert report.preprocess.custom_function is (setup == "function")
    if setup == "embedded":
        assert (report.inputs[0].element_type, report.inputs[0].layout) == ("u8", "NHWC")


def test_a_detector_is_reported_as_one(run, yolov8_path):
    """The real YOLOv8n: its task, format, classes and thresholds, and what explains it."""
    result = run("inspect", yolov8_path, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["task"] == "detection" and report["scores"] is None
    detection = report["detection"]
    assert (detection["output_format"], detection["decided_by"], detection["num_classes"]) == \
        ("yolov8", "the output shapes", 18)
    assert detection["classes"][1] == "FACE_FEMALE" and detection["labels_origin"] == "the exporter's metadata (names)"
    assert detection["exporter"]["task"] == "detect" and "drise" in detection["methods"]
    assert report["preprocess"]["resize"] == "letterbox" and report["preprocess"]["pad_value"] == 114
    white = report["whitebox"]
    assert [o["role"] for o in report["outputs"]] == ["detection"]
    assert (white["method"], white["works"], white["map_size"], white["target"]["shape"]) == \
        ("detreciprocam", True, [10, 10], [256, 10, 10])
    text = run("inspect", yolov8_path).output
    assert "format         yolov8 (the output shapes)" in text and "one inference); auto runs it" in text
