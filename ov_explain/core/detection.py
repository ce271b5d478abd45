"""Detector outputs, pure numpy: recognising the format from output shapes, decoding raw outputs into
candidate boxes with per-class scores, class-aware NMS, and the results (boxes in the original image's pixels).

Formats (``N`` images, ``A`` anchors, ``C`` classes, boxes in model-input pixels unless said):

- ``yolov8`` (YOLOv8 / v11 / Ultralytics exports): one output (N, 4 + C, A): cx, cy, w, h, then the class
  scores (already sigmoids). (N, A, 4 + C) is read too.
- ``yolov5`` (YOLOv5 / v7): one output (N, A, 5 + C): cx, cy, w, h, objectness, class probabilities; a
  class's score is objectness x its probability.
- ``ssd`` (OpenVINO ``DetectionOutput``, Open Model Zoo SSDs): one output (1, 1, K, 7): image id, label,
  confidence, x1, y1, x2, y2 in 0..1 of the input; a row with image id -1 ends the list.
- ``boxes_scores``: two outputs, boxes (N, A, 4) as x1, y1, x2, y2 and scores (N, A, C) or (N, C, A).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import cv2
import numpy as np

from ov_explain.core.errors import ModelLoadError
from ov_explain.core.preprocess import Geometry

logger = logging.getLogger(__name__)

OUTPUT_FORMATS = ("yolov8", "yolov5", "ssd", "boxes_scores")
#: The output an exported detection XAI IR adds (see ov_explain.tools.xai_export): not a detection output.
MOSAIC_OUTPUT = "detection_mosaic"


class DetectionFormatError(ModelLoadError):
    """The model's outputs match no detection format (or not the one asked for)."""


@dataclass(frozen=True)
class Proposals:
    """Every candidate box of one image before thresholds and NMS: ``boxes`` (A, 4) x1, y1, x2, y2 in model
    input pixels and ``scores`` (A, C), each class's score as the detector ranks it."""

    boxes: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        boxes, scores = np.asarray(self.boxes, np.float32), np.asarray(self.scores, np.float32)
        if boxes.ndim != 2 or boxes.shape[1] != 4 or scores.ndim != 2 or scores.shape[0] != boxes.shape[0]:
            raise ValueError(f"proposals: expected boxes (A, 4) and scores (A, C), got {boxes.shape} and "
                             f"{scores.shape}")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)


def describe_shapes(shapes: Sequence[Sequence[int]]) -> str:
    return ", ".join("(" + ", ".join(str(d) for d in shape) + ")" for shape in shapes)


def recognise_format(shapes: Sequence[Sequence[int]], num_labels: int | None = None) -> str:
    """The format whose output shapes these are (static dims; -1 for dynamic), or a
    :class:`DetectionFormatError` naming the shapes and ``--output-format``."""
    shapes = [tuple(int(d) for d in shape) for shape in shapes]
    if len(shapes) == 1:
        shape = shapes[0]
        if len(shape) == 4 and shape[-1] == 7:
            return "ssd"
        if len(shape) == 3 and min(shape[1], shape[2]) > 0:
            small, large = sorted(shape[1:])
            if num_labels is not None and small in (4 + num_labels, 5 + num_labels):
                return "yolov8" if small == 4 + num_labels else "yolov5"
            if small >= 5 and large > small:
                return "yolov8" if shape[1] == small else "yolov5"
    if len(shapes) == 2:
        boxes = [s for s in shapes if len(s) == 3 and s[-1] == 4]
        if len(boxes) == 1:
            scores = shapes[1 - shapes.index(boxes[0])]
            if len(scores) == 3 and boxes[0][1] in (scores[1], scores[2]):
                return "boxes_scores"
    raise DetectionFormatError(f"outputs {describe_shapes(shapes)} match no detection format "
                               f"({', '.join(OUTPUT_FORMATS)}); name it with --output-format")


def decode(output_format: str, outputs: Sequence[np.ndarray], input_size: tuple[int, int],
           num_classes: int) -> list[Proposals]:
    """Each image's proposals from the raw outputs of one batch (``input_size``: (H, W) of the model input)."""
    if output_format == "yolov8":
        raw = np.asarray(outputs[0], np.float32)
        if raw.shape[1] != 4 + num_classes and raw.shape[2] == 4 + num_classes:  # (N, A, 4 + C)
            raw = raw.transpose(0, 2, 1)
        return [Proposals(_xywh_to_xyxy(image[:4].T), image[4:].T) for image in raw]
    if output_format == "yolov5":
        raw = np.asarray(outputs[0], np.float32)
        return [Proposals(_xywh_to_xyxy(image[:, :4]), image[:, 5:] * image[:, 4:5]) for image in raw]
    if output_format == "ssd":
        rows = np.asarray(outputs[0], np.float32).reshape(-1, 7)
        end = np.flatnonzero(rows[:, 0] < 0)
        rows = rows[: end[0]] if end.size else rows
        height, width = input_size
        images = int(rows[:, 0].max()) + 1 if rows.size else 1
        found = []
        for image in range(images):
            mine = rows[rows[:, 0] == image]
            scores = np.zeros((len(mine), num_classes), np.float32)
            labels = mine[:, 1].astype(np.int64)
            inside = (labels >= 0) & (labels < num_classes)
            scores[np.flatnonzero(inside), labels[inside]] = mine[inside, 2]
            found.append(Proposals(mine[:, 3:7] * np.array([width, height, width, height], np.float32), scores))
        return found
    if output_format == "boxes_scores":
        first, second = (np.asarray(o, np.float32) for o in outputs[:2])
        boxes, scores = (first, second) if first.shape[-1] == 4 and first.ndim == 3 else (second, first)
        if scores.shape[1] != boxes.shape[1]:  # (N, C, A)
            scores = scores.transpose(0, 2, 1)
        return [Proposals(b, s) for b, s in zip(boxes, scores)]
    raise DetectionFormatError(f"output format {output_format!r}: expected one of {', '.join(OUTPUT_FORMATS)}")


def _xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    centre, half = boxes[:, :2], boxes[:, 2:4] / 2
    return np.concatenate([centre - half, centre + half], axis=1)


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one x1, y1, x2, y2 box with each of ``boxes`` (M, 4)."""
    box, boxes = np.asarray(box, np.float32), np.asarray(boxes, np.float32).reshape(-1, 4)
    left, top = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    right, bottom = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    area = lambda b: np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)  # noqa: E731
    union = area(box) + area(boxes) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, *, iou_threshold: float,
        limit: int = 300) -> np.ndarray:
    """Indices kept by class-aware non-maximum suppression (OpenCV's ``dnn.NMSBoxesBatched``), best first:
    a box is dropped when a better box of the same class overlaps it by more than ``iou_threshold``."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).astype(np.float64)
    kept = cv2.dnn.NMSBoxesBatched(xywh.tolist(), np.asarray(scores, np.float64).tolist(),
                                   np.asarray(classes, np.int64).tolist(), 0.0, float(iou_threshold), top_k=limit)
    kept = np.asarray(kept, np.int64).reshape(-1)
    return kept[np.argsort(-np.asarray(scores)[kept], kind="stable")]


@dataclass(frozen=True)
class Detection:
    """One kept box: x1, y1, x2, y2 in the original image's pixels, its class, score and the proposal
    (anchor) it came from."""

    box: tuple[float, float, float, float]
    class_index: int
    label: str
    score: float
    anchor: int
    scores: np.ndarray = field(repr=False, compare=False)  # every class's score at that anchor (for D-RISE)
    input_box: tuple[float, float, float, float] = field(repr=False, compare=False, default=(0.0, 0.0, 0.0, 0.0))

    def __post_init__(self) -> None:
        x1, y1, x2, y2 = self.box
        if not (x2 >= x1 and y2 >= y1):
            raise ValueError(f"box: expected x1 <= x2 and y1 <= y2, got {self.box}")

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "class_index": self.class_index, "score": round(float(self.score), 6),
                "box": [round(float(v), 2) for v in self.box], "anchor": self.anchor}


@dataclass
class DetectionResult:
    """The detections of one image and where / how they were computed."""

    source: str
    detections: list[Detection]
    image_size: tuple[int, int]  # (H, W) of the original image
    device: str
    precision: str
    output_format: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    geometry: Geometry | None = field(default=None, repr=False)
    #: Every candidate before thresholds and NMS (kept by single-image detection: what maps of ground-truth
    #: boxes the detector missed are read from; None from streams).
    proposals: Proposals | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if any(a.score < b.score for a, b in zip(self.detections, self.detections[1:])):
            raise ValueError("detections: expected decreasing scores")

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "device": self.device, "precision": self.precision,
                "output_format": self.output_format, "image_size": list(self.image_size),
                "detections": [d.to_dict() for d in self.detections],
                "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()}}


def to_original_box(box: np.ndarray, geometry: Geometry) -> tuple[float, float, float, float]:
    """A model-input box on the original image (letterbox padding and scaling undone), clipped to it."""
    (sy, sx), (oy, ox), (height, width) = geometry.scale, geometry.offset, geometry.original_size
    x1, y1, x2, y2 = ((box[0] - ox) / sx, (box[1] - oy) / sy, (box[2] - ox) / sx, (box[3] - oy) / sy)
    clip = lambda v, hi: float(min(max(v, 0.0), hi))  # noqa: E731
    return clip(x1, width), clip(y1, height), clip(x2, width), clip(y2, height)


def select(proposals: Proposals, geometry: Geometry, names: Sequence[str], *, confidence: float,
           iou_threshold: float, limit: int) -> list[Detection]:
    """The detections of one image: best class per proposal, score >= ``confidence``, class-aware NMS."""
    if proposals.scores.shape[1] == 0:
        return []
    classes = proposals.scores.argmax(axis=1)
    best = proposals.scores[np.arange(len(classes)), classes]
    candidates = np.flatnonzero(best >= confidence)
    kept = candidates[nms(proposals.boxes[candidates], best[candidates], classes[candidates],
                          iou_threshold=iou_threshold, limit=limit)]
    return [Detection(to_original_box(proposals.boxes[i], geometry), int(classes[i]), names[int(classes[i])],
                      float(best[i]), int(i), proposals.scores[i].copy(),
                      tuple(float(v) for v in proposals.boxes[i]))
            for i in kept]


def to_input_box(box: Sequence[float], geometry: Geometry) -> tuple[float, float, float, float]:
    """An original-image box in model-input pixels (the inverse of :func:`to_original_box`, unclipped)."""
    (sy, sx), (oy, ox) = geometry.scale, geometry.offset
    return (float(box[0] * sx + ox), float(box[1] * sy + oy), float(box[2] * sx + ox), float(box[3] * sy + oy))


def truth_target(proposals: Proposals, geometry: Geometry, box: Sequence[float], class_index: int,
                 names: Sequence[str]) -> Detection:
    """A ground-truth box (original pixels) as a target to explain, though no detection kept it.

    Its anchor is the proposal whose box overlaps it most (on a tie, the one scoring its class higher): where
    the detector should have found it. ``score`` is its class's score there; ``scores`` is the class's one-hot
    vector, D-RISE's target for a ground-truth box (Petsiuk et al., 2021)."""
    if not 0 <= class_index < proposals.scores.shape[1]:
        raise ValueError(f"class_index {class_index}: outside the detector's {proposals.scores.shape[1]} classes")
    on_input = to_input_box(box, geometry)
    overlap = iou(np.array(on_input, np.float32), proposals.boxes)
    anchor = int(np.lexsort((-proposals.scores[:, class_index], -overlap))[0]) if len(overlap) else 0
    one_hot = np.zeros(proposals.scores.shape[1], np.float32)
    one_hot[class_index] = 1.0
    score = float(proposals.scores[anchor, class_index]) if len(overlap) else 0.0
    return Detection(tuple(float(v) for v in box), int(class_index), names[class_index], score, anchor, one_hot,
                     on_input)
