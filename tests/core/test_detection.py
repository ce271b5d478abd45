"""Detector outputs without a model: formats recognised from shapes, decoding, class-aware NMS against its
definition, boxes back on the original image through letterbox and stretch."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ov_explain.core.detection import (
    DetectionFormatError,
    Proposals,
    decode,
    iou,
    nms,
    recognise_format,
    select,
    to_original_box,
    truth_target,
)
from ov_explain.core.preprocess import PreprocessSpec


def test_formats_are_recognised_from_output_shapes():
    assert recognise_format([(1, 22, 2100)]) == "yolov8"
    assert recognise_format([(1, 2100, 22)], num_labels=18) == "yolov8"  # transposed, told by the class count
    assert recognise_format([(1, 25200, 85)]) == "yolov5"
    assert recognise_format([(1, 25200, 85)], num_labels=80) == "yolov5"
    assert recognise_format([(1, 1, 200, 7)]) == "ssd"
    assert recognise_format([(1, 100, 4), (1, 100, 3)]) == "boxes_scores"
    assert recognise_format([(1, 3, 100), (1, 100, 4)]) == "boxes_scores"
    with pytest.raises(DetectionFormatError, match=r"outputs \(1, 1000\) match no detection format .*--output-format"):
        recognise_format([(1, 1000)])


def test_decoding_each_format_gives_input_pixel_corners_and_class_scores():
    v8 = np.zeros((1, 4 + 2, 3), np.float32)
    v8[0, :4, 1] = [50, 40, 20, 10]  # cx, cy, w, h
    v8[0, 4:, 1] = [0.1, 0.9]
    found = decode("yolov8", [v8], (64, 64), 2)[0]
    assert np.allclose(found.boxes[1], [40, 35, 60, 45]) and np.allclose(found.scores[1], [0.1, 0.9])
    assert np.allclose(decode("yolov8", [v8.transpose(0, 2, 1)], (64, 64), 2)[0].boxes, found.boxes)
    v5 = np.zeros((1, 3, 5 + 2), np.float32)
    v5[0, 2] = [10, 10, 4, 4, 0.5, 0.2, 0.8]
    five = decode("yolov5", [v5], (64, 64), 2)[0]
    assert np.allclose(five.boxes[2], [8, 8, 12, 12]) and np.allclose(five.scores[2], [0.1, 0.4])  # objectness x p
    ssd = np.zeros((1, 1, 4, 7), np.float32)
    ssd[0, 0, 0] = [0, 1, 0.7, 0.25, 0.5, 0.5, 1.0]
    ssd[0, 0, 1] = [-1, 0, 0, 0, 0, 0, 0]  # the end of the list
    boxes = decode("ssd", [ssd], (100, 200), 3)[0]
    assert len(boxes.boxes) == 1 and np.allclose(boxes.boxes[0], [50, 50, 100, 100])
    assert np.allclose(boxes.scores[0], [0, 0.7, 0])
    pair = decode("boxes_scores", [np.ones((1, 3, 5)), np.tile([[0, 0, 9, 9]], (1, 5, 1)).astype(np.float32)],
                  (32, 32), 3)[0]  # scores first and (N, C, A): both told apart by their shapes
    assert pair.boxes.shape == (5, 4) and pair.scores.shape == (5, 3) and np.allclose(pair.boxes[0], [0, 0, 9, 9])


def _greedy_nms(boxes, scores, classes, threshold):
    """The definition: best first, drop a box of the same class overlapping a kept one by more than threshold."""
    kept = []
    for i in np.argsort(-scores, kind="stable"):
        if all(classes[k] != classes[i] or iou(boxes[k], boxes[i:i + 1])[0] <= threshold for k in kept):
            kept.append(int(i))
    return kept


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000))
def test_class_aware_nms_keeps_what_its_definition_keeps(seed):
    rng = np.random.default_rng(seed)
    count = int(rng.integers(1, 40))
    corners = rng.uniform(0, 100, (count, 2)).astype(np.float32)
    boxes = np.concatenate([corners, corners + rng.uniform(5, 40, (count, 2)).astype(np.float32)], axis=1)
    scores = rng.permutation(count).astype(np.float32) / count + 0.01  # distinct: one order
    classes = rng.integers(0, 3, count)
    assert nms(boxes, scores, classes, iou_threshold=0.45).tolist() == _greedy_nms(boxes, scores, classes, 0.45)


@pytest.mark.parametrize("resize", ["letterbox", "stretch"])
def test_boxes_land_on_the_original_pixels_through_the_preprocessing(resize):
    spec = PreprocessSpec(size=(64, 64), resize=resize, std=(255.0,) * 3, pad_value=114)
    image = np.zeros((120, 240, 3), np.uint8)  # 2:1, so letterbox pads 16 rows above and below
    _, geometry = spec(image)
    original = np.array([30.0, 20.0, 90.0, 100.0])
    (sy, sx), (oy, ox) = geometry.scale, geometry.offset
    input_box = np.array([original[0] * sx + ox, original[1] * sy + oy, original[2] * sx + ox, original[3] * sy + oy])
    assert np.allclose(to_original_box(input_box, geometry), original, atol=1e-4)
    if resize == "letterbox":
        assert geometry.offset[0] == pytest.approx(16) and geometry.offset[1] == pytest.approx(0)
    outside = to_original_box(np.array([-10.0, -10.0, 70.0, 70.0]), geometry)  # padding is clipped away
    assert outside == (0.0, 0.0, 240.0, 120.0)


def test_selection_thresholds_then_suppresses_per_class():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([[0.9, 0], [0.8, 0], [0, 0.7], [0.1, 0.05]], np.float32)
    _, geometry = PreprocessSpec(size=(64, 64)).__call__(np.zeros((64, 64, 3), np.uint8))
    kept = select(Proposals(boxes, scores), geometry, ["a", "b"], confidence=0.25, iou_threshold=0.45, limit=10)
    # the second box overlaps the first (same class): dropped; the third is another class; the fourth too weak
    assert [(d.label, d.anchor, d.score) for d in kept] == [("a", 0, pytest.approx(0.9)), ("b", 2, pytest.approx(0.7))]


def test_a_truth_target_is_the_proposal_overlapping_most_and_on_a_tie_the_one_scoring_its_class_higher():
    boxes = np.array([[0, 0, 10, 10], [30, 30, 40, 40], [30, 30, 40, 40], [31, 31, 41, 41]], np.float32)
    scores = np.array([[0.9, 0.0], [0.1, 0.2], [0.3, 0.1], [0.8, 0.0]], np.float32)
    _, geometry = PreprocessSpec(size=(64, 64)).__call__(np.zeros((64, 64, 3), np.uint8))
    target = truth_target(Proposals(boxes, scores), geometry, (30.0, 30.0, 40.0, 40.0), 0, ["a", "b"])
    # anchors 1 and 2 tie at IoU 1 with the box: 2 scores "a" higher
    assert target.anchor == 2 and target.score == pytest.approx(0.3)
    assert target.scores.tolist() == [1.0, 0.0] and target.box == (30.0, 30.0, 40.0, 40.0)
    assert truth_target(Proposals(boxes, scores), geometry, (30.0, 30.0, 40.0, 40.0), 1, ["a", "b"]).anchor == 1
    with pytest.raises(ValueError, match="class_index 2: outside the detector's 2 classes"):
        truth_target(Proposals(boxes, scores), geometry, (0.0, 0.0, 1.0, 1.0), 2, ["a", "b"])
