"""The detector: an :class:`~ov_explain.core.runtime.ImageModel` whose outputs are boxes; its format found
from the graph (or named), confidence threshold, class-aware NMS, boxes on the original image's pixels.

Ultralytics exports carry their classes, input size and task in the model's metadata (ONNX metadata,
``rt_info["framework"]`` in OpenVINO): they are read when no labels file or spec is given, and their
preprocessing convention (letterbox, grey 114 padding, RGB, pixels / 255) is the default.
"""

from __future__ import annotations

import ast
import logging
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ov_explain.core.detection import (
    MOSAIC_OUTPUT,
    OUTPUT_FORMATS,
    DetectionFormatError,
    DetectionResult,
    Proposals,
    decode,
    describe_shapes,
    recognise_format,
    select,
)
from ov_explain.core.devices import DEFAULT_PRECISION
from ov_explain.core.errors import ModelLoadError, OvExplainError
from ov_explain.core.prepared import PreparedInput
from ov_explain.core.preprocess import PreprocessFn, PreprocessSpec
from ov_explain.core.runtime import ImageInput, ImageModel

logger = logging.getLogger(__name__)

#: The input size of a YOLO export whose input is dynamic and says nothing else.
DEFAULT_DETECTOR_SIZE = 640


def framework_info(model: Any) -> dict[str, str]:
    """The exporter's metadata (Ultralytics: ``task``, ``names``, ``imgsz``, ``stride``, ...), as text."""
    found = {}
    try:
        info = model.get_rt_info()
        keys = list(info["framework"].astype(dict)) if "framework" in info else []
    except Exception:  # no framework section, or one OpenVINO cannot list
        keys = []
    for key in keys:
        try:
            found[key] = model.get_rt_info(["framework", key]).astype(str)
        except Exception:
            continue
    if not found:  # older OpenVINO: try the keys Ultralytics writes, one by one
        for key in ("task", "names", "imgsz", "stride"):
            try:
                found[key] = model.get_rt_info(["framework", key]).astype(str)
            except Exception:
                continue
    return found


def metadata_names(info: dict[str, str]) -> list[str] | None:
    """Class names from Ultralytics' ``names`` (``{0: 'person', ...}``), in index order."""
    try:
        names = ast.literal_eval(info["names"])
    except (KeyError, ValueError, SyntaxError):
        return None
    if isinstance(names, dict) and sorted(names) == list(range(len(names))):
        return [str(names[i]) for i in range(len(names))]
    return [str(n) for n in names] if isinstance(names, (list, tuple)) else None


def looks_like_detector(model: Any) -> bool:
    """Whether a model is a detector: its exporter says so, or its outputs are a detection format."""
    if framework_info(model).get("task") == "detect":
        return True
    shapes = [[d.get_length() if d.is_static else -1 for d in o.get_partial_shape()]
              if o.get_partial_shape().rank.is_static else [] for o in model.outputs]
    try:
        recognise_format(shapes)
    except DetectionFormatError:
        return False
    return not (len(shapes) == 1 and len(shapes[0]) == 2)


class Detector(ImageModel):
    """An object detector on OpenVINO (YOLOv8 / v11, YOLOv5 / v7, SSD, or boxes + scores outputs).

    ``output_format``: one of :data:`~ov_explain.core.detection.OUTPUT_FORMATS`, or ``auto`` (from the output
    shapes). ``confidence``: the lowest score kept; ``iou``: the overlap above which NMS drops the weaker box
    of a class; ``max_detections`` per image. The other arguments are the classifier's.
    """

    def __init__(self, model_path: str | os.PathLike | None = None, *, device: str = "AUTO",
                 preprocess: PreprocessSpec | dict | PreprocessFn | str | os.PathLike | None = None,
                 labels: Sequence[str] | str | os.PathLike | None = None, output_format: str = "auto",
                 confidence: float = 0.25, iou: float = 0.45, max_detections: int = 300, hint: str = "LATENCY",
                 cache_dir: Path | str | None = "default", core: Any = None,
                 precision: str = DEFAULT_PRECISION) -> None:
        if output_format != "auto" and output_format not in OUTPUT_FORMATS:
            raise DetectionFormatError(f"output format {output_format!r}: expected auto or one of "
                                       f"{', '.join(OUTPUT_FORMATS)}")
        if not 0.0 <= confidence <= 1.0 or not 0.0 < iou <= 1.0 or max_detections < 1:
            raise OvExplainError(f"detector thresholds: confidence in 0..1, iou in (0, 1], max_detections >= 1; got "
                                 f"{confidence}, {iou}, {max_detections}")
        self._format_request, self._labels_given = output_format, labels
        self.confidence, self.iou, self.max_detections = confidence, iou, max_detections
        super().__init__(model_path, device=device, preprocess=preprocess, labels=labels, hint=hint,
                         cache_dir=cache_dir, core=core, precision=precision)

    def __enter__(self) -> "Detector":
        return self

    # ----- the graph ---------------------------------------------------------------------------
    def _find_outputs(self) -> None:
        if len(self.model.inputs) != 1:
            raise ModelLoadError(f"{self.files.model}: expected a single image input, the model has "
                                 f"{len(self.model.inputs)}")
        self.framework = framework_info(self.model)
        names = metadata_names(self.framework)
        self._metadata_names = names
        given = self._labels_given if self._labels_given is not None else self.files.labels
        if given is not None:  # the labels tell the class count, which tells YOLOv5 from a transposed YOLOv8
            from ov_explain.core.labels import read_labels

            self.num_classes = len(read_labels(given) if isinstance(given, (str, os.PathLike)) else list(given))
        else:
            self.num_classes = len(names) if names else 0

    def _adapt_graph(self) -> None:
        """A dynamic input gets the spec's size (the batch stays free), so outputs have static shapes."""
        shape = self.model.inputs[0].get_partial_shape()
        if shape.rank.is_static and shape.rank.get_length() == 4 and not all(d.is_static for d in list(shape)[1:]):
            height, width = self.spec.size
            target = [-1, 3, height, width] if self.spec.layout == "NCHW" else [-1, height, width, 3]
            self.model.reshape({self.model.inputs[0].get_any_name(): target})
        ports = [o for o in self.model.outputs if MOSAIC_OUTPUT not in o.get_names()]  # an exported XAI IR's maps
        self.detection_outputs = len(ports)
        shapes = [[d.get_length() if d.is_static else -1 for d in o.get_partial_shape()] for o in ports]
        shapes = [[1 if i == 0 and d == -1 else d for i, d in enumerate(s)] for s in shapes]
        self.output_shapes = shapes
        found = recognise_format(shapes, self.num_classes or None) if self._format_request == "auto" else \
            self._format_request
        self.output_format = found
        if not self.num_classes:
            self.num_classes = _classes_from_shapes(found, shapes, self.files.model)

    def _fallback_spec(self, spec: PreprocessSpec | None) -> PreprocessSpec:
        """Ultralytics' convention: letterbox with grey padding, RGB, pixels / 255, at the export's size."""
        if spec is not None:
            return spec
        size = None
        try:
            size = tuple(int(v) for v in ast.literal_eval(self.framework.get("imgsz", "")))
        except (ValueError, SyntaxError, TypeError):
            shape = self.model.inputs[0].get_partial_shape()
            dims = [d.get_length() if d.is_static else -1 for d in shape] if shape.rank.is_static else []
            if len(dims) == 4 and min(dims[2], dims[3]) > 0:
                size = (dims[2], dims[3])
        size = size if size and len(size) == 2 else (DEFAULT_DETECTOR_SIZE, DEFAULT_DETECTOR_SIZE)
        return PreprocessSpec(size=size, resize="letterbox", std=(255.0, 255.0, 255.0), pad_value=114)

    def _default_preprocessing(self, spec: PreprocessSpec) -> str:
        origin = f"the YOLO convention: letterbox to {spec.size[0]}x{spec.size[1]}, RGB, pixels / 255"
        logger.info("%s: no preprocessing spec given or found; %s", self.files.model, origin)
        return origin

    def _resolve_labels(self, labels: Any) -> list[str] | None:
        if labels is None and self.files.labels is None and self._metadata_names:
            return list(self._metadata_names)
        if not self.num_classes:  # SSD without labels
            raise ModelLoadError(f"{self.files.model}: an SSD-style output {describe_shapes(self.output_shapes)} "
                                 "does not say how many classes there are; pass --labels")
        return super()._resolve_labels(labels)

    @property
    def names(self) -> list[str]:
        return self.labels or [str(i) for i in range(self.num_classes)]

    # ----- detecting ---------------------------------------------------------------------------
    def proposals(self, outputs: Sequence[np.ndarray]) -> list[Proposals]:
        """Each image's candidate boxes and class scores from one batch's raw outputs."""
        return decode(self.output_format, outputs, self.spec.size, self.num_classes)

    def result(self, proposals: Proposals, prepared: PreparedInput, timings: dict[str, float], *,
               device: str | None = None, precision: str | None = None) -> DetectionResult:
        detections = select(proposals, prepared.geometry, self.names, confidence=self.confidence,
                            iou_threshold=self.iou, limit=self.max_detections)
        return DetectionResult(prepared.source, detections, tuple(prepared.geometry.original_size),
                               device or self.device, precision or self.precision, self.output_format, timings,
                               prepared.geometry)

    def detect_prepared(self, prepared: PreparedInput) -> DetectionResult:
        started = time.perf_counter()
        outputs = self.infer_outputs(prepared.tensor[None])
        inferred = time.perf_counter()
        proposals = self.proposals(outputs)[0]
        result = self.result(proposals, prepared, {"infer": (inferred - started) * 1000})
        result.proposals = proposals
        result.timings_ms["postprocess"] = (time.perf_counter() - inferred) * 1000
        return result

    def predict(self, image: ImageInput) -> DetectionResult:
        """The detections of one image (a path or an RGB uint8 array); none is an empty list, not an error."""
        started = time.perf_counter()
        prepared = self.prepare(image)
        result = self.detect_prepared(prepared)
        result.timings_ms = {"preprocess": (time.perf_counter() - started) * 1000 - sum(result.timings_ms.values()),
                             **result.timings_ms}
        return result

    def predict_many(self, images: Iterable[ImageInput], *,
                     on_error: Callable[[str, OvExplainError], None] | None = None) -> Iterator[DetectionResult]:
        """Detect in a stream of images with several inferences in flight, in input order (as
        :meth:`Classifier.predict_many <ov_explain.core.model.Classifier.predict_many>`)."""
        count = len(self.compiled.outputs)

        def read(request: Any) -> tuple[list[np.ndarray], float]:
            return [np.array(request.get_output_tensor(i).data) for i in range(count)], time.perf_counter()

        def finish(job: tuple[PreparedInput, float, float], done: tuple[list[np.ndarray], float]) -> DetectionResult:
            (prepared, prep_ms, submitted), (outputs, finished) = job, done
            return self.result(self.proposals(outputs)[0], prepared,
                               {"preprocess": prep_ms, "infer": (finished - submitted) * 1000})

        yield from self._stream(images, on_error, read, finish)


def _classes_from_shapes(output_format: str, shapes: list[list[int]], path: Path) -> int:
    """The class count the outputs imply; 0 when they do not say (SSD)."""
    if output_format == "yolov8":
        return min(shapes[0][1:]) - 4
    if output_format == "yolov5":
        return min(shapes[0][1:]) - 5
    if output_format == "boxes_scores":
        boxes = next(s for s in shapes if s[-1] == 4)
        scores = shapes[1 - shapes.index(boxes)]
        return scores[2] if scores[1] == boxes[1] else scores[1]
    return 0  # SSD: labels are values, not a dimension (the labels file says how many)
