"""ReciproCAM for detectors on the real YOLOv8n: the cut where the neck begins, each face's map peaking in its box
from one inference, and every cell of the map equal to its definition (the network run with only that cell of
every backbone output kept, built independently by masking a plain copy of the graph)."""

from __future__ import annotations

import json

import numpy as np
import openvino as ov
import pytest

from ov_explain.core._compat import opset
from ov_explain.explain.detection import DetectionExplainer
from ov_explain.explain.detection_graph import cell_masks, class_branches, neck_cuts

pytestmark = pytest.mark.slow


def test_the_cut_is_the_backbone_output_at_each_head_scale(yolov8):
    """(Friendly names depend on how OpenVINO's ONNX reader numbers unnamed nodes: the structure is checked.)"""
    branches = class_branches(yolov8.model, 18)  # the last 1 x 1 convolution of each scale's class branch
    assert sorted(list(c.get_output_partial_shape(0))[2].get_length() for c in branches) == [10, 20, 40]
    assert all(list(c.input_value(1).get_partial_shape().to_shape())[2:] == [1, 1] for c in branches)
    cuts = neck_cuts(yolov8.model, 18)  # Ultralytics' layers 4, 6 and 9 (SPPF): what the FPN reads
    assert [(c.channels, c.height, c.width) for c in cuts] == [(64, 40, 40), (128, 20, 20), (256, 10, 10)]
    nodes = {n.get_friendly_name(): n for n in yolov8.model.get_ordered_ops()}
    coarsest = nodes[cuts[-1].name]
    assert any(t.get_node().get_type_name() == "Interpolate" for t in coarsest.output(0).get_target_inputs())


def test_each_face_map_peaks_in_its_box_from_one_inference(yolov8, photos_dir):
    explainer = DetectionExplainer(yolov8)
    for name in ("astronaut.jpg", "grace_hopper.jpg", "camera.jpg"):
        result = explainer.explain(photos_dir / name)
        assert (result.method, result.mode, result.inferences, result.images_inferred) == \
            ("detreciprocam", "whitebox", 1, 1)
        assert result.readout == "logit" and len(result.maps) == 1 and result.maps[0].raw.shape == (10, 10)
        saliency, (x1, y1, x2, y2) = result.maps[0], result.maps[0].box
        y, x = np.unravel_index(np.argmax(saliency.on_image), saliency.on_image.shape)
        assert x1 <= x <= x2 and y1 <= y <= y2, (name, (x, y), saliency.box)
        plain = yolov8.predict(photos_dir / name).detections  # the mosaic's graph detects exactly the same
        assert [(d.label, d.anchor, d.box) for d in result.detections.detections] == \
            [(d.label, d.anchor, d.box) for d in plain]


def _kept(model, cuts, cell: int, grid=(10, 10)):
    """The plain graph with only grid cell ``cell`` of every cut kept where the neck reads it (a Multiply before
    each neck consumer; the backbone itself runs on the whole image, as it does once in the mosaic)."""
    copy = model.clone()
    ops = list(copy.get_ordered_ops())
    order = {n.get_friendly_name(): i for i, n in enumerate(ops)}
    neck = next(i for i, n in enumerate(ops) if n.get_type_name() == "Interpolate")
    nodes = {n.get_friendly_name(): n for n in ops}
    for cut in cuts:
        value = nodes[cut.name].output(0)
        consumers = [t for t in value.get_target_inputs() if order[t.get_node().get_friendly_name()] >= neck]
        masked = opset.multiply(value, opset.constant(cell_masks(cut, grid)[cell][None]))
        for consumer in consumers:
            consumer.replace_source_output(masked.output(0))
    sigmoid = next(n for n in copy.get_ordered_ops() if n.get_type_name() == "Sigmoid"
                   and n.get_output_partial_shape(0)[1].get_length() == 18)
    return ov.Model([sigmoid.input_value(0)], copy.get_parameters(), "kept")


def test_every_cell_is_the_network_with_only_that_cell_kept(yolov8, photos_dir):
    explainer = DetectionExplainer(yolov8)
    prepared = explainer.prepare(photos_dir / "camera.jpg")
    result = explainer.explain_prepared(prepared)
    face, saliency = result.detections.detections[0], result.maps[0].raw.reshape(-1)
    cuts = neck_cuts(yolov8.model, 18)
    core = ov.Core()
    for cell in (int(np.argmax(saliency)), 0, 37, 99):  # the hottest cell and three others
        compiled = core.compile_model(_kept(yolov8.model, cuts, cell), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        logits = compiled(prepared.tensor[None])[0]
        assert saliency[cell] == pytest.approx(float(logits[0, face.class_index, face.anchor]), abs=1e-3)


def test_the_cli_explains_a_detector_white_box_by_default(run, yolov8_path, photos_dir, tmp_path):
    result = run("explain", photos_dir / "astronaut.jpg", "--model", yolov8_path, "--device", "CPU", "--out",
                 tmp_path / "maps", "--raw", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert (report["method"], report["mode"]) == ("detreciprocam", "whitebox")
    files = report["explanations"][0]["detections"][0]["maps"][0]
    assert np.load(files["raw"]).shape == (10, 10) and np.load(files["raw_on_image"]).shape == (512, 512)
