"""Explaining a detector's boxes: D-RISE on the real YOLOv8n finds each face where its box is, in one pass of
masks for every box of an image, seeded and cancellable; its similarity is its definition; the CLI writes a
map per box (overlay with the box, raw maps at the method's resolution and on the image's pixels)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ov_explain.explain.base import ExplainError
from ov_explain.explain.blackbox import Cancelled
from ov_explain.explain.config import ExplainConfig
from ov_explain.explain.detection import DetectionExplainer
from ov_explain.explain.methods.drise import similarity

pytestmark = pytest.mark.slow

FACES = ("astronaut.jpg", "grace_hopper.jpg", "camera.jpg")


def test_similarity_is_iou_times_cosine_times_confidence_of_the_best_proposal():
    target_boxes = np.array([[0, 0, 10, 10]], np.float32)
    target_scores = np.array([[0.0, 0.8]], np.float32)
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [50, 50, 60, 60]], np.float32)
    scores = np.array([[0.3, 0.4], [0.0, 0.9], [0.0, 1.0]], np.float32)
    # (1) IoU 1 x cos 0.8 x 0.4; (2) IoU 0.5 x cos 1 x 0.9; (3) no overlap
    assert similarity(target_boxes, target_scores, boxes, scores)[0] == pytest.approx(max(0.32, 0.45))
    assert similarity(target_boxes, target_scores, boxes[:0], scores[:0])[0] == 0.0


def test_each_face_map_peaks_inside_its_box(yolov8, photos_dir):
    explainer = DetectionExplainer(yolov8, method="drise", num_masks=240, num_cells=8)
    for name in FACES:
        result = explainer.explain(photos_dir / name)
        assert result.method == "drise" and result.mode == "blackbox" and len(result.maps) == 1
        saliency, (x1, y1, x2, y2) = result.maps[0], result.maps[0].box
        assert saliency.name.startswith("FACE") and saliency.raw.shape == (320, 320)
        assert saliency.on_image.shape == result.image_size
        y, x = np.unravel_index(np.argmax(saliency.on_image), saliency.on_image.shape)
        assert x1 <= x <= x2 and y1 <= y <= y2, (name, (x, y), saliency.box)
        levels = saliency.levels_on_image()  # min-max normalised: RISE-style maps sit on a constant baseline
        inside = levels[int(y1):int(y2), int(x1):int(x2)].mean()
        # Hotter in the box than on the image on average. 1.25: with this test's 240 masks (the balance preset
        # draws 2000) the map is still grainy; grace_hopper's face box, 13 % of the photo, measures 1.46.
        assert inside > 1.25 * levels.mean()
        assert result.images_inferred == 1 + 240 and result.inferences == 1 + 240 // 8


def test_one_pass_serves_every_box_and_seeds_repeat(yolov8, photos_dir, monkeypatch):
    from ov_explain.explain.methods import drise as module

    calls = []
    original = module.drise
    monkeypatch.setattr(module, "drise", lambda *a, **k: calls.append(len(a[2])) or original(*a, **k))
    explainer = DetectionExplainer(yolov8, method="drise", num_masks=48, num_cells=6, seed=3)
    prepared = explainer.prepare(photos_dir / "astronaut.jpg")
    found = yolov8.detect_prepared(prepared).detections
    twice = explainer.explain_prepared(prepared, [0, 0])  # two targets, one pass of 48 masked images
    assert calls == [2] and np.array_equal(twice.maps[0].raw, twice.maps[1].raw)
    options = dict(method="drise", num_masks=48, num_cells=6)
    again = DetectionExplainer(yolov8, seed=3, **options).explain_prepared(prepared, [0])
    assert np.array_equal(again.maps[0].raw, twice.maps[0].raw) and again.maps[0].box == found[0].box
    other = DetectionExplainer(yolov8, seed=4, **options).explain_prepared(prepared, [0])
    assert not np.array_equal(other.maps[0].raw, again.maps[0].raw)
    with pytest.raises(Cancelled):
        explainer.explain_prepared(prepared, progress=lambda done, total: done >= 2)
    with pytest.raises(ExplainError, match=r"boxes: \[3\] not among the 1 detections"):
        explainer.explain_prepared(prepared, [3])


def test_no_detection_is_an_empty_explanation(yolov8, photos_dir):
    result = DetectionExplainer(yolov8, method="drise", num_masks=16, num_cells=4).explain(photos_dir / "coffee.jpg")
    assert result.maps == [] and result.detections.detections == [] and result.images_inferred == 1


def test_methods_are_matched_to_their_task(yolov8, classifier):
    with pytest.raises(ExplainError, match="method aise explains classification models, not detection models"):
        DetectionExplainer(yolov8, method="aise")
    with pytest.raises(ExplainError, match="method drise explains detection models, not classification"):
        ExplainConfig(method="drise").create(classifier)
    auto = ExplainConfig().create(yolov8)  # white-box where the graph has a neck to cut
    assert (auto.method, auto.mode, auto.fallback_reason) == ("detreciprocam", "whitebox", None)
    assert ExplainConfig(mode="blackbox").create(yolov8).method == "drise"
    with pytest.raises(ExplainError, match="--target-layer is for classifiers"):
        DetectionExplainer(yolov8, target_layer="x")


def test_the_cli_writes_a_map_per_box_with_raw_maps_on_both_grids(run, yolov8_path, photos_dir, tmp_path):
    out = tmp_path / "maps"
    result = run("explain", photos_dir / "camera.jpg", photos_dir / "chelsea.jpg", "--model", yolov8_path,
                 "--device", "CPU", "--mode", "blackbox", "--preset", "speed", "--out", out, "--raw", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["task"] == "detection" and report["method"] == "drise"
    camera, chelsea = report["explanations"]
    assert chelsea["detections"] == []
    (face,) = camera["detections"]
    assert face["label"] == "FACE_MALE" and face["class_index"] == 12 and len(face["box"]) == 4
    files = face["maps"][0]
    assert np.load(files["raw"]).shape == (320, 320)
    assert np.load(files["raw_on_image"]).shape == tuple(camera["image_size"])  # the photo's own pixels
    assert (out / "camera_drise_box0_FACE_MALE.jpg").is_file()


def test_a_detector_without_a_neck_falls_back_to_drise(tmp_path):
    from support import constant_detector, save_model

    from ov_explain.core.detector import Detector
    from ov_explain.core.preprocess import PreprocessSpec

    raw = np.zeros((1, 12, 5 + 2), np.float32)
    raw[0, 3] = [16, 16, 8, 8, 0.9, 1.0, 0.0]
    path = save_model(constant_detector([raw]), tmp_path, "flat")
    detector = Detector(path, device="CPU", cache_dir=None, labels=["a", "b"],
                        preprocess=PreprocessSpec(size=32, std=(255.0,) * 3))
    explainer = DetectionExplainer(detector, preset="speed")  # auto: no class branch, so no neck to cut
    assert explainer.method == "drise" and "no class branch found" in explainer.fallback_reason
    with pytest.raises(ExplainError, match="no class branch found"):
        DetectionExplainer(detector, mode="whitebox")
    result = explainer.explain(np.zeros((32, 32, 3), np.uint8))
    assert [d.label for d in result.detections.detections] == ["a"] and result.maps[0].raw.shape == (32, 32)
