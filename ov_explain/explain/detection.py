"""Explaining a detector: one map per kept box, from the registry's detection methods.

White-box (``detreciprocam``): one inference of the detector's graph with a mosaic output gives the
detections and every box's map. Black-box (D-RISE): the detections from one plain inference, then one pass
of masked images for all boxes of the image. Maps are at the method's own resolution and on the
original image's pixels, like a classifier's, and carry the box they explain.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from ov_explain.core.detection import Detection, DetectionResult, truth_target
from ov_explain.core.prepared import PreparedInput
from ov_explain.core.preprocess import Geometry
from ov_explain.core.runtime import ImageInput
from ov_explain.explain.base import ExplainError, SaliencyMap, WhiteboxUnsupportedError, to_original
from ov_explain.explain.blackbox import Progress
from ov_explain.explain.detection_graph import neck_cuts
from ov_explain.explain.method import BlackboxMethod, WhiteboxMethod
from ov_explain.explain.methods.rise import mask_batches
from ov_explain.explain.registry import (
    DEFAULT_DETECTION_BLACKBOX,
    DEFAULT_DETECTION_WHITEBOX,
    METHODS,
    check_preset,
    resolve,
)

logger = logging.getLogger(__name__)

#: Which boxes to explain: ``"all"`` detections, their positions in the detection list, or a function of the
#: :class:`DetectionResult` returning :class:`BoxTargets` (or positions).
Boxes = Any
#: A ground-truth box to explain: x1, y1, x2, y2 in the original image's pixels, and its class index.
TruthBox = tuple[Sequence[float], int]


@dataclass
class DetectionExplanation:
    """The detections of one image and a map for each explained one (``maps[i].box`` is its box)."""

    source: str
    image_size: tuple[int, int]
    detections: DetectionResult
    maps: list[SaliencyMap]
    explained: list[int]  # positions in detections.detections of the explained boxes, in the maps' order
    method: str
    mode: str
    device: str
    precision: str
    inferences: int = 0
    images_inferred: int = 1
    timings_ms: dict[str, float] = field(default_factory=dict)
    geometry: Geometry | None = field(default=None, repr=False)
    backend: str = "native"
    target_layer: str | None = None
    readout: str | None = None
    #: Ground-truth boxes explained as targets (:func:`~ov_explain.core.detection.truth_target`); their maps
    #: follow the detections' in ``maps``.
    truths: list[Detection] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.maps) != len(self.explained) + len(self.truths):
            raise ValueError(f"maps: {len(self.maps)} maps for {len(self.explained)} explained boxes and "
                             f"{len(self.truths)} ground-truth boxes")
        if any(not 0 <= i < len(self.detections.detections) for i in self.explained):
            raise ValueError(f"explained: positions {self.explained} outside the {len(self.detections.detections)} "
                             "detections")

    @property
    def map_box(self) -> tuple[float, float, float, float] | None:
        return self.geometry.input_box() if self.geometry is not None else None

    def to_dict(self) -> dict[str, Any]:
        maps = dict(zip(self.explained, self.maps))
        return {"source": self.source, "image_size": list(self.image_size), "task": "detection",
                "method": self.method, "mode": self.mode, "backend": self.backend, "device": self.device,
                "precision": self.precision, "inferences": self.inferences, "images_inferred": self.images_inferred,
                "output_format": self.detections.output_format,
                "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
                "detections": [{**d.to_dict(), "maps": ([{"raw_shape": list(maps[i].raw.shape)}] if i in maps else [])}
                               for i, d in enumerate(self.detections.detections)],
                **({"truths": [{**t.to_dict(), "maps": [{"raw_shape": list(m.raw.shape)}]}
                               for t, m in zip(self.truths, self.maps[len(self.explained):])]} if self.truths else {})}


class DetectionExplainer:
    """Explain a :class:`~ov_explain.core.detector.Detector`'s boxes.

    ``mode``: ``auto`` (white-box where the graph has a neck to cut, else black-box), ``whitebox`` or
    ``blackbox``; ``method``: a detection method of the registry (defaults: ``detreciprocam``, ``drise``);
    ``preset`` / ``seed`` / ``options`` as for classifiers.
    """

    backend = "native"

    def __init__(self, detector: Any, *, mode: str = "auto", method: str | None = None,
                 target_layer: str | None = None, preset: str = "balance", seed: int = 0, **options: Any) -> None:
        check_preset(preset)
        self.classifier = detector  # the model, under the name every explainer gives it
        self.detector = detector
        self.preset, self.seed, self.options = preset, seed, options
        self.fallback_reason: str | None = None
        mode, chosen = resolve(mode, method, task="detection")
        if target_layer is not None:
            raise ExplainError("detectors are cut where their neck begins (found in the graph); --target-layer is "
                               "for classifiers")
        self._whitebox: tuple[Any, Any, tuple[int, int]] | None = None
        self.target_layer = self.readout = None
        if mode in ("auto", "whitebox"):
            whitebox = chosen if isinstance(chosen, WhiteboxMethod) else METHODS[DEFAULT_DETECTION_WHITEBOX]
            try:
                self._build_whitebox(whitebox, options)
                chosen = whitebox
            except WhiteboxUnsupportedError as exc:
                if mode == "whitebox":
                    raise
                self.fallback_reason = str(exc)
                logger.warning("white-box detection maps not possible (%s); falling back to black-box %s", exc,
                               DEFAULT_DETECTION_BLACKBOX)
                chosen, options = METHODS[DEFAULT_DETECTION_BLACKBOX], {}
        self._method = chosen
        if isinstance(chosen, BlackboxMethod):
            self.settings = chosen.resolve(preset, options)

    def _build_whitebox(self, method: Any, options: dict[str, Any]) -> None:
        """The detector's graph with the mosaic output, compiled where the detector runs, in its precision."""
        from ov_explain.core.devices import ThreadRequests, compile_with_fallback

        self.settings = method.check(options)
        model, grid = method.build(self.detector.model, self.detector.num_classes, self.settings)
        compiled = compile_with_fallback(self.detector.core, model, self.detector.compile_info.device,
                                         hint=self.detector.hint, cache_dir=None,
                                         precision=self.detector.requested_precision)
        self._whitebox = (compiled, ThreadRequests(compiled.compiled), grid)
        self.target_layer = ", ".join(c.name for c in neck_cuts(self.detector.model, self.detector.num_classes))
        self.readout = self.settings["readout"]

    @property
    def method(self) -> str:
        return self._method.name

    @property
    def mode(self) -> str:
        return self._method.mode

    @property
    def device(self) -> str:
        return ",".join(self._whitebox[0].execution_devices) if self._whitebox else self.detector.device

    @property
    def precision(self) -> str:
        return self._whitebox[0].precision if self._whitebox else self.detector.precision

    def plan(self, budget: int | None = None) -> tuple[int, int]:
        """How a dataset run shares ``budget`` inferences in flight (default: the device's fill), as
        :meth:`Explainer.plan <ov_explain.explain.explainer.Explainer.plan>`: (images at once, inferences in flight
        per image). White-box images are one inference each; D-RISE's images split the budget two ways."""
        if self._whitebox is not None:
            return budget or self._whitebox[0].optimal_requests + 1, 1
        total = budget or max(8, 2 * self.detector.compile_info.optimal_requests)
        images = min(2, total)
        return images, max(1, total // images)

    def close(self) -> None:
        """Nothing is held beyond the detector's own requests (closed by its owner)."""

    def __enter__(self) -> "DetectionExplainer":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def prepare(self, image: ImageInput, *, source: str | None = None) -> PreparedInput:
        prepared = self.detector.prepare(image, source=source, at_model_size=self._whitebox is None)
        return prepared if self._whitebox else prepared.as_float()

    def explain(self, image: ImageInput, boxes: Boxes = "all", *, truths: Sequence[TruthBox] = (),
                progress: Progress | None = None, parallel: int = 2) -> DetectionExplanation:
        """The detections of ``image`` and a map for each of ``boxes`` (``all``, positions in the list, or a
        function of the detections returning :class:`BoxTargets`), then one for each of ``truths``: ground-truth
        boxes (x1, y1, x2, y2 in the image's pixels, class index), explained where the detector should have
        found them (see :func:`~ov_explain.core.detection.truth_target`)."""
        started = time.perf_counter()
        prepared = self.prepare(image)
        return self.explain_prepared(prepared, boxes, truths=truths, progress=progress, parallel=parallel,
                                     preprocess_ms=(time.perf_counter() - started) * 1000)

    def explain_prepared(self, prepared: PreparedInput, boxes: Boxes = "all", *, truths: Sequence[TruthBox] = (),
                         progress: Progress | None = None, parallel: int = 2,
                         preprocess_ms: float = 0.0) -> DetectionExplanation:
        started = time.perf_counter()
        mosaic = None
        if self._whitebox is not None:  # one inference: detections from the network's outputs, maps from the mosaic
            outputs = self._whitebox[1].infer(prepared.tensor[None])
            count = self.detector.detection_outputs
            proposals = self.detector.proposals(outputs[:count])[0]
            found = self.detector.result(proposals, prepared, {}, device=self.device, precision=self.precision)
            found.proposals, mosaic = proposals, outputs[-1]
        else:
            found = self.detector.detect_prepared(prepared)
        detected = time.perf_counter()
        chosen, truth_targets = _targets(boxes, truths, found, prepared, self.detector.names)
        targets = [found.detections[i] for i in chosen] + truth_targets
        maps, jobs = [], 0
        if targets and mosaic is not None:
            raw = self._method.maps(self.detector, mosaic, targets, self._whitebox[2], self.settings["readout"])
            size = self.detector.spec.size
            maps = [SaliencyMap(d.class_index, d.label, d.score, m,
                                lambda values: to_original(values, size, prepared.geometry), readout=self.readout,
                                box=d.box) for m, d in zip(raw, targets)]
        elif targets:
            raw = self._method.run(self.detector, prepared, targets, self.settings, seed=self.seed,
                                   parallel=parallel, progress=progress)
            _, jobs = mask_batches(self.settings["num_masks"], self.settings["chunk"], self.detector.max_batch)
            maps = [_box_map(m, d, prepared.geometry) for m, d in zip(raw, targets)]
        finished = time.perf_counter()
        whitebox = mosaic is not None
        timings = ({"infer": (detected - started) * 1000, "maps": (finished - detected) * 1000} if whitebox else
                   {"detect": (detected - started) * 1000, "explain": (finished - detected) * 1000})
        return DetectionExplanation(
            prepared.source, tuple(prepared.geometry.original_size), found, maps, chosen, self.method, self.mode,
            self.device, self.precision, inferences=1 + jobs,
            images_inferred=1 + (self.settings["num_masks"] if targets and not whitebox else 0),
            timings_ms={"preprocess": preprocess_ms, **timings}, geometry=prepared.geometry,
            target_layer=self.target_layer, readout=self.readout, truths=truth_targets)

    def raw_maps(self, prepared: PreparedInput, targets: Sequence[Detection], *, parallel: int = 2) -> Any:
        """Maps (T, h, w) at the method's resolution for given detections (their boxes, classes and anchors),
        whatever this detector now finds: e.g. a trained model's box on a copy with random weights."""
        if self._whitebox is None:
            return self._method.run(self.detector, prepared, list(targets), self.settings, seed=self.seed,
                                    parallel=parallel, progress=None)
        _, requests, grid = self._whitebox
        outputs = requests.infer(prepared.tensor[None])
        return self._method.maps(self.detector, outputs[-1], list(targets), grid,
                                 self.settings["readout"])


@dataclass(frozen=True)
class BoxTargets:
    """What to explain in one image, chosen once its detections are known: detections (positions in the
    list) and ground-truth boxes (x1, y1, x2, y2 in the image's pixels, class index) the detector missed."""

    detections: Sequence[int] = ()
    truths: Sequence[TruthBox] = ()


def _targets(boxes: Boxes, truths: Sequence[TruthBox], found: DetectionResult, prepared: PreparedInput,
             names: Sequence[str]) -> tuple[list[int], list[Detection]]:
    if callable(boxes):
        picked = boxes(found)
        if not isinstance(picked, BoxTargets):
            picked = BoxTargets(picked)
        boxes, truths = picked.detections, [*truths, *picked.truths]
    chosen = _choose(boxes, found.detections)
    if truths and found.proposals is None:
        raise ExplainError("ground-truth boxes are explained from the detector's proposals, which this result "
                           "does not keep")
    made = [truth_target(found.proposals, prepared.geometry, box, int(c), names) for box, c in truths]
    return chosen, made


def _choose(boxes: Any, detections: Sequence[Detection]) -> list[int]:
    if isinstance(boxes, str):
        if boxes != "all":
            raise ExplainError(f"boxes: expected 'all' or positions in the detection list, got {boxes!r}")
        return list(range(len(detections)))
    chosen = [int(b) for b in boxes]
    wrong = [b for b in chosen if not 0 <= b < len(detections)]
    if wrong:
        raise ExplainError(f"boxes: {wrong} not among the {len(detections)} detections")
    return chosen


def _box_map(raw: Any, detection: Detection, geometry: Geometry) -> SaliencyMap:
    return SaliencyMap(detection.class_index, detection.label, detection.score, raw,
                       lambda values: geometry.input_to_original(values), box=detection.box)
