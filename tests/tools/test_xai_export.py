"""A detector's XAI IR: written by export-xai, read with plain OpenVINO by its documented recipe (the map of a
box is the mosaic at its anchor and class), equal to the explainer's maps; ov_explain still detects with it."""

from __future__ import annotations

import json

import numpy as np
import openvino as ov
import pytest

from ov_explain.core.detection import MOSAIC_OUTPUT
from ov_explain.core.detector import Detector
from ov_explain.explain.detection import DetectionExplainer
from ov_explain.tools.xai_export import DETECTION_INFO_KEY

pytestmark = pytest.mark.slow


def test_a_detectors_xai_ir_gives_each_boxs_map_without_ov_explain(run, yolov8, yolov8_path, photos_dir, tmp_path):
    out = tmp_path / "yolo_xai.xml"
    result = run("export-xai", "--model", yolov8_path, "--device", "CPU", "--out", out)
    assert result.exit_code == 0, result.output
    assert "detreciprocam" in result.output and MOSAIC_OUTPUT in result.output
    assert (tmp_path / "yolo_xai.preprocess.json").is_file() and (tmp_path / "yolo_xai.labels.txt").is_file()
    model = ov.Core().read_model(str(out))
    info = json.loads(model.get_rt_info(DETECTION_INFO_KEY).astype(str))
    assert (info["grid"], info["copies"], info["readout"], info["output_format"]) == ([10, 10], 100, "logit", "yolov8")
    # Without ov_explain: run the IR, find the face in output 0, read its map from the mosaic.
    explainer = DetectionExplainer(yolov8)
    prepared = explainer.prepare(photos_dir / "astronaut.jpg")
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    outputs = compiled(prepared.tensor[None])
    mosaic = outputs[compiled.output(MOSAIC_OUTPUT)]
    face = explainer.explain_prepared(prepared).detections.detections[0]
    recipe = mosaic[0:100, face.class_index, face.anchor].reshape(10, 10)
    assert np.allclose(recipe, explainer.explain_prepared(prepared).maps[0].raw, atol=1e-4)
    # ov_explain reads the IR as the detector it is (the mosaic output is not a detection output).
    again = Detector(out, device="CPU", cache_dir=None)
    assert again.detection_outputs == 1 and again.output_format == "yolov8"
    assert [d.label for d in again.predict(photos_dir / "astronaut.jpg").detections] == ["FACE_FEMALE"]
    refused = run("export-xai", "--model", yolov8_path, "--maps", "top-1", "--out", tmp_path / "x.xml")
    assert refused.exit_code == 2 and "--maps and --embed-preprocessing are for classifiers" in refused.output
