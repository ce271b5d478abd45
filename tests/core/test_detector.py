"""The detector on the real YOLOv8n (nudenet's 320n.onnx) and the bundled photos, and on built detectors of
the other output formats: formats from the graph, labels and preprocessing from the export's metadata, boxes on
the original pixels, no detection as an empty result, unknown outputs as one line."""

from __future__ import annotations

import numpy as np
import pytest
from support import constant_detector, save_model

from ov_explain.core.detection import DetectionFormatError
from ov_explain.core.detector import Detector, looks_like_detector
from ov_explain.core.errors import ModelLoadError
from ov_explain.core.preprocess import PreprocessSpec

#: The faces on the bundled photos (letterbox to 320, RGB, / 255, f32), as the issue measured them with nudenet.
FACES = {"astronaut.jpg": ("FACE_FEMALE", 0.82), "grace_hopper.jpg": ("FACE_FEMALE", 0.77),
         "camera.jpg": ("FACE_MALE", 0.59)}


def test_the_real_yolov8_is_read_from_its_graph_and_metadata(yolov8):
    assert (yolov8.output_format, yolov8.num_classes, yolov8.output_shapes) == ("yolov8", 18, [[1, 22, 2100]])
    assert yolov8.labels[1] == "FACE_FEMALE" and yolov8.labels[12] == "FACE_MALE"  # from the export's names
    assert (yolov8.spec.size, yolov8.spec.resize, yolov8.spec.std, yolov8.spec.pad_value) == \
        ((320, 320), "letterbox", (255.0, 255.0, 255.0), 114)
    assert yolov8.preprocess_origin.startswith("the YOLO convention") and yolov8.precision == "f32"
    assert looks_like_detector(yolov8.model)


def test_it_finds_each_face_and_nothing_where_there_is_none(yolov8, photos_dir):
    for name, (label, score) in FACES.items():
        result = yolov8.predict(photos_dir / name)
        faces = [d for d in result.detections if d.label.startswith("FACE")]
        assert len(faces) == 1, result.detections
        face = faces[0]
        assert face.label == label and face.score == pytest.approx(score, abs=0.03)
        height, width = result.image_size
        x1, y1, x2, y2 = face.box
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height and (x2 - x1) * (y2 - y1) > 0.02 * width * height
    for name in ("coffee.jpg", "chelsea.jpg"):
        assert yolov8.predict(photos_dir / name).detections == []  # a clean empty result


def test_the_face_box_is_where_the_face_is_through_a_letterbox(yolov8, photos_dir):
    """grace_hopper.jpg is 512 x 600 (portrait): letterboxed with side padding; her face is in the upper middle."""
    face = yolov8.predict(photos_dir / "grace_hopper.jpg").detections[0]
    x1, y1, x2, y2 = face.box
    assert 120 < (x1 + x2) / 2 < 320 and 150 < (y1 + y2) / 2 < 330


def test_a_stream_keeps_the_input_order_and_reports_bad_files(yolov8, photos_dir, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    errors = []
    names = ["astronaut.jpg", "coffee.jpg", "camera.jpg"]
    results = list(yolov8.predict_many([photos_dir / names[0], bad, photos_dir / names[1], photos_dir / names[2]],
                                       on_error=lambda source, error: errors.append(source)))
    assert [r.source.rsplit("/", 1)[-1] for r in results] == names and errors == [str(bad)]
    assert [len(r.detections) for r in results] == [1, 0, 1]
    assert results[0].detections == yolov8.predict(photos_dir / names[0]).detections


SPEC = PreprocessSpec(size=32, resize="letterbox", std=(255.0,) * 3)
IMAGE = np.zeros((32, 64, 3), np.uint8)  # 1:2, letterboxed into 32 x 32: scale 0.5, 8 rows of padding above


@pytest.mark.parametrize("output_format", ["yolov5", "ssd", "boxes_scores"])
def test_each_output_format_gives_the_planted_box_in_original_pixels(output_format, tmp_path):
    planted = np.array([8.0, 12.0, 24.0, 20.0])  # x1, y1, x2, y2 in the 32 x 32 input: (16, 8)-(48, 24) original
    if output_format == "yolov5":
        raw = np.zeros((1, 12, 5 + 3), np.float32)
        raw[0, 4] = [16, 16, 16, 8, 0.9, 0.0, 1.0, 0.0]  # objectness 0.9 x class 1 at 1.0
        outputs = [raw]
    elif output_format == "ssd":
        raw = np.full((1, 1, 3, 7), 0, np.float32)
        raw[0, 0, 0] = [0, 1, 0.9, *(planted / 32)]
        raw[0, 0, 1, 0] = -1
        outputs = [raw]
    else:
        boxes, scores = np.zeros((1, 12, 4), np.float32), np.zeros((1, 3, 12), np.float32)
        boxes[0, 2], scores[0, 1, 2] = planted, 0.9
        outputs = [boxes, scores]
    path = save_model(constant_detector(outputs), tmp_path, output_format)
    detector = Detector(path, device="CPU", cache_dir=None, preprocess=SPEC, labels=["a", "b", "c"])
    assert detector.output_format == output_format and detector.num_classes == 3
    result = detector.predict(IMAGE)
    assert [(d.label, round(d.score, 3)) for d in result.detections] == [("b", 0.9)]
    assert np.allclose(result.detections[0].box, [16, 8, 48, 24], atol=1e-3)
    stretched = Detector(path, device="CPU", cache_dir=None, labels=["a", "b", "c"], output_format=output_format,
                         preprocess=PreprocessSpec(size=32, std=(255.0,) * 3)).predict(IMAGE)
    assert np.allclose(stretched.detections[0].box, [16, 12, 48, 20], atol=1e-3)  # x scaled by 2, y kept


def test_outputs_of_no_known_format_are_one_line_naming_the_shapes(tmp_path):
    path = save_model(constant_detector([np.zeros((1, 7, 3, 3), np.float32)]), tmp_path, "odd")
    with pytest.raises(DetectionFormatError, match=r"outputs \(1, 7, 3, 3\) match no detection .*--output-format"):
        Detector(path, device="CPU", cache_dir=None)
    ssd = save_model(constant_detector([np.zeros((1, 1, 3, 7), np.float32)]), tmp_path, "ssd")
    with pytest.raises(ModelLoadError, match="does not say how many classes there are; pass --labels"):
        Detector(ssd, device="CPU", cache_dir=None, preprocess=SPEC)
