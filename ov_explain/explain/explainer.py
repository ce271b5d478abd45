"""The Explainer: one object per (model, mode, method) that turns images into :class:`Explanation` s."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence, Union

import numpy as np

from ..devices import CompiledModel, ThreadRequests, batch_capacity, compile_with_fallback, optimal_requests
from ..errors import last_line
from ..model import Classifier, ImageInput, Prediction
from ..preprocess import Geometry
from . import blackbox
from .base import ExplainError, Explanation, SaliencyMap, Targets, WhiteboxUnsupportedError, as_image_list, \
    check_mode, select_targets, to_original
from .whitebox import SALIENCY_OUTPUT, build_xai_model, read_xai_info

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MethodInfo:
    name: str
    mode: str
    summary: str


#: The registry the CLI and notebooks list methods from.
METHODS: dict[str, MethodInfo] = {m.name: m for m in (
    MethodInfo("reciprocam", "whitebox", "Recipro-CAM: class scores of each feature-map cell kept alone (CNNs)"),
    MethodInfo("vitreciprocam", "whitebox", "ViT-Recipro-CAM: class scores of each patch's neighbourhood of "
                                            "tokens kept alone (vision transformers)"),
    MethodInfo("activationmap", "whitebox", "channel mean of the last feature map (class-agnostic)"),
    MethodInfo("rise", "blackbox", "RISE: probability-weighted sum of random smooth masks"),
    MethodInfo("aise", "blackbox", "AISE: Gaussian kernels placed by DIRECT search, kernel-density merged"),
)}
#: Targets as :func:`select_targets` takes them, or a function choosing classes from the prediction.
TargetChoice = Union[Targets, Callable[[Prediction], Sequence[int]]]
#: Defaults per mode; white-box takes ``vitreciprocam`` instead when the graph is a vision transformer.
DEFAULT_METHOD = {"whitebox": "reciprocam", "blackbox": "aise"}
PRESETS = ("speed", "balance", "quality")


def _resolve(mode: str, method: str | None) -> tuple[str, str | None]:
    check_mode(mode)
    if method is None:
        return mode, DEFAULT_METHOD[mode] if mode == "blackbox" else None
    key = method.lower().replace("-", "").replace("_", "")
    if key not in METHODS:
        raise ExplainError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    info = METHODS[key]
    if mode not in ("auto", info.mode):
        raise ExplainError(f"method {info.name} is {info.mode}, but mode {mode!r} was asked for")
    return info.mode, info.name


class Explainer:
    """Explain a :class:`Classifier`'s predictions.

    ``mode``: ``whitebox`` (graph insertion, one inference), ``blackbox`` (perturbation, any model) or
    ``auto`` (white-box, falling back to black-box only if the graph has no usable feature map).
    ``method`` picks one of :data:`METHODS`; ``preset`` / ``seed`` tune black-box methods; extra
    keyword ``options`` go to the method (``num_masks``, ``num_cells``, ``iterations``, ``kernel_widths``).
    """

    def __init__(self, classifier: Classifier, *, mode: str = "auto", method: str | None = None,
                 target_layer: str | None = None, preset: str = "balance", seed: int = 0,
                 shortcut: bool | None = None, **options: Any) -> None:
        if preset not in PRESETS:
            raise ExplainError(f"preset must be one of {list(PRESETS)}, got {preset!r}")
        self.classifier = classifier
        self.preset, self.seed, self.options = preset, seed, options
        mode, method = _resolve(mode, method)
        self.target_layer: str | None = None
        self.shortcut = False
        self._xai_compiled: Any = None
        self._blackbox_compiled: Any = None
        self.fallback_reason: str | None = None
        if mode in ("auto", "whitebox"):
            try:
                method = self._prepare_whitebox(method, target_layer, shortcut)
                mode = "whitebox"
            except WhiteboxUnsupportedError as exc:
                if mode == "whitebox":
                    raise
                self.fallback_reason = str(exc)
                logger.warning("white-box explanation not possible (%s); falling back to black-box %s",
                               exc, DEFAULT_METHOD["blackbox"])
                mode, method = "blackbox", DEFAULT_METHOD["blackbox"]
        self.mode, self.method = mode, method
        if mode == "blackbox":
            self._prepare_blackbox()

    # ----- set-up -----------------------------------------------------------------------------------
    def _prepare_whitebox(self, method: str | None, target_layer: str | None, shortcut: bool | None) -> str:
        """Compile the model with its saliency output; returns the white-box method used."""
        info = read_xai_info(self.classifier.model)
        if info is not None:  # an exported XAI IR: the classifier's compiled model already has the maps
            if method is not None and info.get("method") not in (None, "unknown", method):
                raise ExplainError(f"this IR carries {info['method']} maps; ask for that method or use the "
                                   "original model")
            self._xai_compiled = self.classifier.compiled
            self._xai_requests = ThreadRequests(self._xai_compiled)
            self._xai_outputs = _xai_output_indices(self._xai_compiled)
            self._xai_device, self._xai_precision = self.classifier.device, self.classifier.precision
            self.target_layer, self.shortcut = info.get("target_layer"), bool(info.get("shortcut"))
            return method or (info["method"] if info.get("method") in METHODS else "reciprocam")
        xai = build_xai_model(self.classifier.model, self.classifier.output_port, method,
                              target_layer=target_layer, shortcut=shortcut)
        info_compiled = self._compile_like_classifier(xai.model, self.classifier.hint)
        _probe(info_compiled.compiled, xai.method)
        self._xai_compiled = info_compiled.compiled
        self._xai_requests = ThreadRequests(self._xai_compiled)
        self._xai_outputs = _xai_output_indices(self._xai_compiled)
        self._xai_device = ",".join(info_compiled.execution_devices)
        self._xai_precision = info_compiled.precision
        self.target_layer, self.shortcut = xai.target_layer, xai.shortcut
        return xai.method

    def _prepare_blackbox(self) -> None:
        # A THROUGHPUT-compiled copy: many masked inputs in flight keep every core or stream busy.
        compiled = self._compile_like_classifier(self.classifier.model, "THROUGHPUT")
        self._blackbox_compiled = compiled.compiled
        self._blackbox_device = ",".join(compiled.execution_devices)
        self._blackbox_precision = compiled.precision
        self._requests = optimal_requests(compiled.compiled)

    def _compile_like_classifier(self, model: Any, hint: str) -> CompiledModel:
        """Compile on the classifier's device, in the precision it was asked for, with its cache."""
        info = self.classifier.compile_info
        return compile_with_fallback(self.classifier.core, model, info.device, hint=hint,
                                     cache_dir=info.config.get("CACHE_DIR"), precision=info.requested_precision)

    @property
    def parallel_requests(self) -> int:
        """How many inferences the device runs at once for this explainer's model."""
        return optimal_requests(self._xai_compiled if self.mode == "whitebox" else self._blackbox_compiled)

    @property
    def device(self) -> str:
        return self._xai_device if self.mode == "whitebox" else self._blackbox_device

    @property
    def precision(self) -> str:
        """The working precision the maps are computed in, as the compiled model reports it."""
        return self._xai_precision if self.mode == "whitebox" else self._blackbox_precision

    def close(self) -> None:
        """Release this thread's infer request now rather than at interpreter shutdown (the classifier,
        which others may share, is closed by its owner)."""
        if self.mode == "whitebox":
            self._xai_requests.close()

    def __enter__(self) -> "Explainer":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # ----- explain ----------------------------------------------------------------------------------
    def explain(self, images: ImageInput | Sequence[ImageInput], targets: TargetChoice = "predicted", *,
                top_k: int = 3, threshold: float = 0.1, progress: blackbox.Progress | None = None
                ) -> Explanation | list[Explanation]:
        """Explain one image (returns an Explanation) or a list (returns a list, batched where possible).

        ``targets``: ``"predicted"`` (top class + others above ``threshold``, at most ``top_k``),
        ``"all"``, class indices / names, or a function from the :class:`Prediction` to class indices.
        """
        batch, single = as_image_list(images)
        if not batch:
            return []
        if self.mode == "whitebox":
            results = self._explain_whitebox(batch, targets, top_k, threshold)
        else:
            results = []
            for image in batch:
                started = time.perf_counter()
                tensor, geometry, source = self.classifier.prepare(image)
                prep_ms = (time.perf_counter() - started) * 1000
                results.append(self._explain_blackbox(tensor, geometry, source, targets, top_k, threshold,
                                                      progress, prep_ms))
        return results[0] if single else results

    def explain_prepared(self, tensor: np.ndarray, geometry: Geometry, source: str,
                         targets: TargetChoice = "predicted", *, top_k: int = 3, threshold: float = 0.1,
                         progress: blackbox.Progress | None = None, preprocess_ms: float = 0.0) -> Explanation:
        """Explain one image already through :meth:`Classifier.prepare`.

        Thread-safe: dataset audits call it from worker threads so decoding, inference and file
        writing overlap.
        """
        if self.mode == "whitebox":
            return self._whitebox_group([(tensor, geometry, source)], targets, top_k, threshold, preprocess_ms)[0]
        return self._explain_blackbox(tensor, geometry, source, targets, top_k, threshold, progress, preprocess_ms)

    def _choose(self, targets: TargetChoice, prediction: Prediction, top_k: int, threshold: float) -> list[int]:
        if callable(targets):
            chosen = [int(c) for c in targets(prediction)]
            if not chosen:
                raise ExplainError("the target function chose no class")
            return chosen
        return select_targets(targets, prediction.probabilities, self.classifier.labels, top_k=top_k,
                              threshold=threshold)

    def _explain_whitebox(self, images: list[ImageInput], targets: TargetChoice, top_k: int,
                          threshold: float) -> list[Explanation]:
        started = time.perf_counter()
        prepared = [self.classifier.prepare(image) for image in images]
        prep_ms = (time.perf_counter() - started) * 1000 / len(prepared)
        shapes = {t.shape for t, _, _ in prepared}
        chunk = len(prepared) if len(shapes) == 1 and batch_capacity(self._xai_compiled) is None else 1
        results: list[Explanation] = []
        for start in range(0, len(prepared), chunk):
            results += self._whitebox_group(prepared[start:start + chunk], targets, top_k, threshold, prep_ms)
        return results

    def _whitebox_group(self, group: list[tuple[np.ndarray, Geometry, str]], targets: TargetChoice, top_k: int,
                        threshold: float, prep_ms: float) -> list[Explanation]:
        classes_out, maps_out = self._xai_outputs
        infer_started = time.perf_counter()
        outputs = self._xai_requests.infer(np.stack([t for t, _, _ in group]))
        infer_ms = (time.perf_counter() - infer_started) * 1000 / len(group)
        raw_scores = outputs[classes_out].reshape(len(group), -1)
        maps = outputs[maps_out]
        results = []
        for i, (_, geometry, source) in enumerate(group):
            post_started = time.perf_counter()
            prediction = self.classifier.prediction_from_raw(raw_scores[i], source, geometry, max(top_k, 5),
                                                             {"preprocess": prep_ms, "infer": infer_ms})
            chosen = self._choose(targets, prediction, top_k, threshold)
            saliency = self._maps_for(maps[i], chosen, prediction.probabilities, geometry)
            timings = {"preprocess": prep_ms, "infer": infer_ms,
                       "postprocess": (time.perf_counter() - post_started) * 1000}
            results.append(Explanation(source, geometry.original_size, prediction, saliency, self.method,
                                       "whitebox", self.device, self.target_layer, "native", 1, timings, geometry,
                                       self.precision))
        return results

    def _maps_for(self, maps: np.ndarray, chosen: list[int], probabilities: np.ndarray,
                  geometry: Geometry) -> list[SaliencyMap]:
        input_size = self.classifier.input_size
        if maps.shape[0] == 1 and self.method == "activationmap":
            raw = maps[0]
            return [SaliencyMap(None, None, None, raw, _projector(input_size, geometry))]
        return [SaliencyMap(c, self.classifier.class_name(c), float(probabilities[c]), maps[c],
                            _projector(input_size, geometry)) for c in chosen]

    def _explain_blackbox(self, tensor: np.ndarray, geometry: Geometry, source: str, targets: TargetChoice,
                          top_k: int, threshold: float, progress: blackbox.Progress | None,
                          prep_ms: float) -> Explanation:
        started = time.perf_counter()
        raw = self.classifier.infer(tensor[None])
        prediction = self.classifier.prediction_from_raw(raw[0], source, geometry, max(top_k, 5), {})
        chosen = self._choose(targets, prediction, top_k, threshold)
        predicted = time.perf_counter()
        score = blackbox.ScoreFunction(self._blackbox_compiled, self.classifier.output_index,
                                       lambda r: self.classifier.to_probabilities(r)[0],
                                       batch_capacity(self._blackbox_compiled))
        layout = self.classifier.spec.layout if self.classifier.custom_fn is None else _tensor_layout(tensor)
        maps = self._run_blackbox(score, tensor, layout, chosen, progress)
        explained = time.perf_counter()
        input_size = maps.shape[1:]
        saliency = [SaliencyMap(c, self.classifier.class_name(c), float(prediction.probabilities[c]), maps[i],
                                _projector(input_size, geometry)) for i, c in enumerate(chosen)]
        timings = {"preprocess": prep_ms, "predict": (predicted - started) * 1000,
                   "explain": (explained - predicted) * 1000,
                   "postprocess": (time.perf_counter() - explained) * 1000}
        return Explanation(source, geometry.original_size, prediction, saliency, self.method, "blackbox",
                           self.device, None, "native", score.calls + 1, timings, geometry, self.precision)

    def _run_blackbox(self, score: blackbox.ScoreFunction, tensor: np.ndarray, layout: str, chosen: list[int],
                      progress: blackbox.Progress | None) -> np.ndarray:
        options = dict(self.options)
        if self.method == "rise":
            masks, cells = blackbox.RISE_PRESETS[self.preset]
            return blackbox.rise(score, tensor, layout, chosen, num_masks=options.pop("num_masks", masks),
                                 num_cells=options.pop("num_cells", cells), seed=self.seed,
                                 requests=max(4, 2 * self._requests), progress=progress, **options)
        iterations, widths = blackbox.AISE_PRESETS[self.preset]
        return blackbox.aise(score, tensor, layout, chosen, iterations=options.pop("iterations", iterations),
                             kernel_widths=options.pop("kernel_widths", widths), workers=max(8, self._requests),
                             progress=progress, **options)


def _probe(compiled: Any, method: str) -> None:
    """One inference on zeros, so that a tail that cannot run on the mosaic's bigger batch (a reshape
    that spells out a static batch) is found now, and ``auto`` can fall back, not at the first image."""
    shape = compiled.inputs[0].get_partial_shape()
    if any(d.is_dynamic for d in list(shape)[1:]):
        return  # a dynamic image size: nothing to probe with
    dims = [1 if d.is_dynamic else d.get_length() for d in shape]
    try:
        compiled.create_infer_request().infer({0: np.zeros(dims, compiled.inputs[0].get_element_type().to_dtype())})
    except RuntimeError as exc:
        raise WhiteboxUnsupportedError(f"{method} cannot run on this graph ({last_line(exc)})") from None


def _projector(input_size: tuple[int, int], geometry: Geometry) -> Any:
    """Raw map -> original image pixels, run only when someone looks (see :class:`SaliencyMap`)."""
    return lambda raw: to_original(raw, input_size, geometry)


def _xai_output_indices(compiled: Any) -> tuple[int, int]:
    """Positions of the class-score and the saliency-map outputs, found once per compiled model."""
    return (_output_index(compiled, exclude=SALIENCY_OUTPUT),
            compiled.outputs.index(compiled.output(SALIENCY_OUTPUT)))


def _output_index(compiled: Any, exclude: str) -> int:
    for index, output in enumerate(compiled.outputs):
        if exclude not in output.get_names():
            return index
    raise ExplainError("the compiled model has no classification output")


def _tensor_layout(tensor: np.ndarray) -> str:
    return "NCHW" if tensor.shape[0] in (1, 3) else "NHWC"

