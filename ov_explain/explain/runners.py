"""The two ways an explainer runs: one inference with a saliency branch, or many perturbed inferences.

Both take :class:`~ov_explain.core.prepared.PreparedInput` values and return :class:`Explanation` s whose
source, device, precision, method and timings are set when they are made.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ov_explain.core.devices import (
    CompiledModel,
    ThreadRequests,
    compile_with_fallback,
)
from ov_explain.core.errors import OvExplainError, last_line
from ov_explain.core.model import Classifier, ImageInput, Prediction
from ov_explain.core.ports import output_named
from ov_explain.core.prepared import PreparedInput
from ov_explain.core.preprocess import Geometry
from ov_explain.explain.base import ExplainError, Explanation, SaliencyMap, WhiteboxUnsupportedError, to_original
from ov_explain.explain.blackbox import Progress, ScoreFunction
from ov_explain.explain.method import BlackboxMethod, WhiteboxMethod
from ov_explain.explain.registry import METHODS
from ov_explain.explain.whitebox import (
    ALL_MAPS,
    CLASSES_OUTPUT,
    FALLBACK_OUTPUT,
    SALIENCY_OUTPUT,
    MapSelection,
    build_xai_model,
    read_xai_info,
    selection_from_info,
)

logger = logging.getLogger(__name__)

#: Classes to explain for one image, chosen from its prediction.
Chooser = Callable[[Prediction], list[int]]


def compile_like(classifier: Classifier, model: Any, hint: str) -> CompiledModel:
    """Compile on the classifier's device, in the precision it was asked for, with its cache."""
    info = classifier.compile_info
    return compile_with_fallback(classifier.core, model, info.device, hint=hint,
                                 cache_dir=info.config.get("CACHE_DIR"), precision=info.requested_precision)


def _projector(input_size: tuple[int, int], geometry: Geometry) -> Any:
    """Raw map -> original image pixels, run only when someone looks (see :class:`SaliencyMap`)."""
    return lambda raw: to_original(raw, input_size, geometry)


@dataclass
class _XaiGraph:
    """One compiled XAI graph: per-thread requests, where its maps are and which classes they hold."""

    model: CompiledModel
    selection: MapSelection

    def __post_init__(self) -> None:
        self.compiled = self.model.compiled
        self.requests = ThreadRequests(self.compiled)
        self.maps_out = output_named(self.compiled.outputs, SALIENCY_OUTPUT)
        names = [o.get_names() for o in self.compiled.outputs]
        self.classes_out = next((i for i, n in enumerate(names) if CLASSES_OUTPUT in n), None)  # top-k, fixed
        self.fallback_out = next((i for i, n in enumerate(names) if FALLBACK_OUTPUT in n), None)

    @property
    def parallel(self) -> int:
        return self.model.optimal_requests

    @property
    def max_batch(self) -> int | None:
        return self.model.max_batch


class WhiteboxRunner:
    """The classifier compiled with a ``saliency_map`` output: predictions and maps in one inference.

    When the method computes maps by the algebraic shortcut (ReciproCAM on a pooling + linear head,
    CAM), a request for the top k or for given classes runs a graph that computes only those maps,
    compiled on first use; ``"all"`` targets or a target function run the graph with every map.
    """

    mode = "whitebox"
    #: Images of one shape go through in one batch.
    batches = True
    #: Selected-map graphs kept compiled at once (a notebook asking for one class set after another).
    max_graphs = 4

    def __init__(self, classifier: Classifier, method: WhiteboxMethod | None, target_layer: str | None,
                 options: Mapping[str, Any]) -> None:
        self.classifier = classifier
        self._options = dict(options)
        self._lock = threading.Lock()
        self._selected: OrderedDict[MapSelection, _XaiGraph] = OrderedDict()
        self._threads: ThreadPoolExecutor | None = None  # for batches on several streams, made on first use
        info = read_xai_info(classifier.model)
        if info is not None:  # an exported XAI IR: the classifier's compiled model already has the maps
            carried = info.get("method")
            if method is not None and carried not in (None, "unknown", method.name):
                raise ExplainError(f"this IR carries {carried} maps; ask for that method or use the original model")
            self.method = method or METHODS.get(carried) or METHODS["reciprocam"]
            self.method.check_options(options)
            asked = options.get("readout")
            if asked is not None and asked != info.get("readout"):
                raise ExplainError(f"this IR's maps read out {info.get('readout') or 'an unrecorded score'}, not "
                                   f"{asked!r}: export it again with --readout {asked}, or use the original model")
            self.device, self.precision = classifier.device, classifier.precision
            self.target_layer, self.shortcut = info.get("target_layer"), bool(info.get("shortcut"))
            self.readout = info.get("readout")
            self._exported = True
            self._all = _XaiGraph(classifier.compile_info, selection_from_info(info))
        else:
            xai = build_xai_model(classifier.model, classifier.output_port, method.name if method else None,
                                  target_layer=target_layer, output_kind=classifier.output_kind, **options)
            self.method = METHODS[xai.method]
            compiled = compile_like(classifier, xai.model, classifier.hint)
            _probe(compiled.compiled, xai.method)
            self.precision = compiled.precision
            self.device = ",".join(compiled.execution_devices)
            self.target_layer, self.shortcut, self.readout = xai.target_layer, xai.shortcut, xai.readout
            self._exported = False
            self._all = _XaiGraph(compiled, ALL_MAPS)

    @property
    def compiled(self) -> Any:
        """The compiled graph with every class's maps (or an exported IR's own)."""
        return self._all.compiled

    @property
    def parallel_requests(self) -> int:
        return self._all.parallel

    def prepare(self, image: ImageInput, source: str | None = None) -> PreparedInput:
        return self.classifier.prepare(image, source=source)

    def close(self) -> None:
        self._all.requests.close()
        for graph in list(self._selected.values()):
            graph.requests.close()
        with self._lock:
            threads, self._threads = self._threads, None
        if threads is not None:
            threads.shutdown()

    def _graph_for(self, selection: MapSelection) -> _XaiGraph:
        """The graph computing ``selection``'s maps: compiled on first use where selecting saves work.
        Given classes all share one graph that takes them as a second input (a notebook picking class
        after class compiles nothing more)."""
        if self._exported or not selection.selects or not self.shortcut or self.method.class_agnostic:
            return self._all
        if selection.kind == "classes":
            selection = MapSelection("given")
        with self._lock:
            graph = self._selected.get(selection)
            if graph is not None:
                self._selected.move_to_end(selection)
                return graph
            graph = self._selected[selection] = self._compile_selected(selection)
            while len(self._selected) > self.max_graphs:
                self._selected.popitem(last=False)
            return graph

    def _compile_selected(self, selection: MapSelection) -> _XaiGraph:
        """A graph computing only ``selection``'s maps, or the all-classes graph where that saves nothing
        (the method computes every class anyway) or the device cannot run it (e.g. a static-shape device
        and the given-classes input): said once, then remembered."""
        try:
            xai = build_xai_model(self.classifier.model, self.classifier.output_port, self.method.name,
                                  target_layer=self.target_layer, maps=selection,
                                  output_kind=self.classifier.output_kind, **self._options)
            if not xai.selected_in_method:
                return self._all
            compiled = compile_like(self.classifier, xai.model, self.classifier.hint)
            if selection.kind != "given":
                _probe(compiled.compiled, self.method.name)
        except (OvExplainError, RuntimeError) as exc:
            logger.warning("maps for %s classes only cannot run here (%s); computing every class's maps instead",
                           selection.describe(), last_line(exc))
            return self._all
        logger.debug("compiled a %s-maps graph", selection.describe())
        return _XaiGraph(compiled, selection)

    def explain(self, prepared: Sequence[PreparedInput], choose: Chooser, top_k: int, *, parallel: int | None = None,
                progress: Progress | None = None, selection: MapSelection = ALL_MAPS) -> list[Explanation]:
        """Explain prepared inputs, one inference per batch of same-shaped ones (one inference each:
        ``parallel`` and ``progress`` do not apply). ``selection``: the classes ``choose`` picks from
        (each image's top k, or given classes), so only their maps need computing."""
        graph = self._graph_for(selection)
        given = np.array([selection.classes], np.int32) if graph.selection.kind == "given" else None
        groups = split_batches(prepared, self.parallel_requests,
                               batched=len({p.tensor.shape for p in prepared}) == 1
                               and graph.max_batch is None)
        if len(groups) == 1 or self.parallel_requests == 1:
            return [result for group in groups for result in self._group(graph, group, choose, top_k, given)]
        # Several streams (a THROUGHPUT compile, a GPU's queues): one batch each, in flight at once
        # through the pool threads' own requests (one batch on one stream leaves the others idle).
        done = self._pool().map(lambda group: self._group(graph, group, choose, top_k, given), groups)
        return [result for results in done for result in results]

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._threads is None:
                self._threads = ThreadPoolExecutor(self.parallel_requests, thread_name_prefix="ov-explain-batch")
            return self._threads

    def _group(self, graph: _XaiGraph, group: Sequence[PreparedInput], choose: Chooser, top_k: int,
               given: np.ndarray | None = None) -> list[Explanation]:
        classifier = self.classifier
        started = time.perf_counter()
        batch = np.stack([p.tensor for p in group])
        if given is None:
            outputs = graph.requests.infer(batch)
            rows = outputs[graph.classes_out] if graph.classes_out is not None else None
        else:
            outputs = graph.requests.infer(batch, np.repeat(given, len(group), axis=0))
            rows = np.repeat(given, len(group), axis=0)
        infer_ms = (time.perf_counter() - started) * 1000 / len(group)
        raw_scores = outputs[classifier.output_index].reshape(len(group), -1)
        maps = outputs[graph.maps_out]
        fallback = outputs[graph.fallback_out] if graph.fallback_out is not None else None
        results = []
        for i, prepared in enumerate(group):
            post_started = time.perf_counter()
            prediction = classifier.prediction_from_raw(raw_scores[i], prepared, max(top_k, 5), {"infer": infer_ms},
                                                        device=self.device, precision=self.precision)
            chosen = choose(prediction)
            image_rows = None if rows is None else [int(c) for c in rows[i]]
            if image_rows is not None and not self.method.class_agnostic and not set(chosen) <= set(image_rows):
                if graph is not self._all and not self._exported:
                    # A tie at the k-th score ordered differently in the graph: this image takes every map.
                    [again] = self._group(self._all, [prepared], lambda _, chosen=chosen: chosen, top_k)
                    again.inferences = again.images_inferred = 2  # both inferences ran for it
                    results.append(again)
                    continue
                missing = [c for c in chosen if c not in image_rows][0]
                raise ExplainError(f"this IR computes maps for {graph.selection.describe()} classes only; "
                                   f"{classifier.class_name(missing) or missing} was asked for")
            saliency = self._maps_for(maps[i], image_rows, chosen, prediction.probabilities, prepared.geometry,
                                      None if fallback is None else fallback[i])
            timings = {"infer": infer_ms, "postprocess": (time.perf_counter() - post_started) * 1000}
            results.append(Explanation(prepared.source, prepared.geometry.original_size, prediction, saliency,
                                       self.method.name, self.mode, self.device, self.target_layer, "native", 1,
                                       timings, prepared.geometry, self.precision, readout=self.readout))
        return results

    def _maps_for(self, maps: np.ndarray, rows: list[int] | None, chosen: list[int], probabilities: np.ndarray,
                  geometry: Geometry, fallback: np.ndarray | None = None) -> list[SaliencyMap]:
        input_size = self.classifier.input_size
        if self.method.class_agnostic and maps.shape[0] == 1:
            return [SaliencyMap(None, None, None, maps[0], _projector(input_size, geometry))]
        row = (lambda c: c) if rows is None else rows.index

        def readout(c: int) -> str | None:
            return "logit" if fallback is not None and fallback[row(c)] else self.readout

        return [SaliencyMap(c, self.classifier.class_name(c), float(probabilities[c]), maps[row(c)],
                            _projector(input_size, geometry), readout=readout(c)) for c in chosen]


class BlackboxRunner:
    """A THROUGHPUT-compiled copy of the classifier that scores perturbed inputs for a black-box method."""

    mode = "blackbox"
    #: One image at a time: each one keeps the device busy on its own.
    batches = False
    target_layer = None
    shortcut = False

    def __init__(self, classifier: Classifier, method: BlackboxMethod, preset: str, seed: int,
                 options: Mapping[str, Any]) -> None:
        self.classifier, self.method, self.seed = classifier, method, seed
        self.settings = method.resolve(preset, options)  # checked now, not at the first image
        # Many masked inputs in flight keep every core or stream busy; an embedded IR's pixel input
        # takes float32 here so that masked pixels are not rounded to uint8.
        self._model = compile_like(classifier, classifier.float_input_model(), "THROUGHPUT")
        self.compiled, self.precision = self._model.compiled, self._model.precision
        self.device = ",".join(self._model.execution_devices)

    @property
    def parallel_requests(self) -> int:
        return self._model.optimal_requests

    @property
    def budget(self) -> int:
        """Inferences one explanation keeps in flight when nobody shares the device: more than the
        device's streams, so that one request's Python work (masks, DIRECT) overlaps another's inference."""
        return max(8, 2 * self.parallel_requests)

    def prepare(self, image: ImageInput, source: str | None = None) -> PreparedInput:
        # Masks are drawn at the model's resolution even where an embedded graph would resize.
        return self.classifier.prepare(image, source=source, at_model_size=True).as_float()

    def close(self) -> None:
        """Nothing held between explanations: each one creates and drops its own requests."""

    def explain(self, prepared: Sequence[PreparedInput], choose: Chooser, top_k: int, *, parallel: int | None = None,
                progress: Progress | None = None, selection: MapSelection = ALL_MAPS) -> list[Explanation]:
        """Explain prepared inputs one at a time (``selection`` does not apply: maps are per target)."""
        return [self._one(p, choose, top_k, parallel, progress) for p in prepared]

    def _one(self, prepared: PreparedInput, choose: Chooser, top_k: int, parallel: int | None,
             progress: Progress | None) -> Explanation:
        classifier = self.classifier
        started = time.perf_counter()
        score = ScoreFunction(self.compiled, classifier.output_index, lambda r: classifier.to_probabilities(r)[0],
                              self._model.max_batch)
        raw = score.raw(score.request(), prepared.tensor[None])  # the prediction, counted with the rest
        prediction = classifier.prediction_from_raw(raw[0], prepared, max(top_k, 5), {}, device=self.device,
                                                    precision=self.precision)
        chosen = choose(prediction)
        predicted = time.perf_counter()
        maps = self.method.run(score, prepared, chosen, self.settings, seed=self.seed,
                               parallel=max(1, parallel or self.budget), progress=progress)
        explained = time.perf_counter()
        input_size = prepared.spatial_size
        saliency = [SaliencyMap(c, classifier.class_name(c), float(prediction.probabilities[c]), maps[i],
                                _projector(input_size, prepared.geometry)) for i, c in enumerate(chosen)]
        timings = {"predict": (predicted - started) * 1000, "explain": (explained - predicted) * 1000,
                   "postprocess": (time.perf_counter() - explained) * 1000}
        return Explanation(prepared.source, prepared.geometry.original_size, prediction, saliency, self.method.name,
                           self.mode, self.device, None, "native", score.calls, timings, prepared.geometry,
                           self.precision, images_inferred=score.images)


def split_batches(items: Sequence[Any], streams: int, *, batched: bool) -> list[Sequence[Any]]:
    """``items`` as the inferences that keep ``streams`` busy: ``batched`` (one shape, a dynamic batch), one
    contiguous batch per stream, the sizes differing by one at most; otherwise one item per inference."""
    if not batched:
        return [items[i:i + 1] for i in range(len(items))]
    ways = max(1, min(streams, len(items)))
    bounds = [len(items) * k // ways for k in range(ways + 1)]
    return [items[bounds[k]:bounds[k + 1]] for k in range(ways)]


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
