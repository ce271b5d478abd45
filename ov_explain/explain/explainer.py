"""The Explainer: one object per (model, mode, method) that turns images into :class:`Explanation` s."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Sequence, Union

import numpy as np

from ov_explain.core.model import Classifier, ImageInput, Prediction
from ov_explain.core.prepared import PreparedInput
from ov_explain.explain.base import (
    Explanation,
    Targets,
    WhiteboxUnsupportedError,
    as_image_list,
    choose_targets,
    select_targets,
)
from ov_explain.explain.blackbox import Progress
from ov_explain.explain.method import BlackboxMethod, WhiteboxMethod
from ov_explain.explain.registry import DEFAULT_BLACKBOX, METHODS, PRESETS, check_preset, resolve
from ov_explain.explain.runners import BlackboxRunner, WhiteboxRunner
from ov_explain.explain.whitebox import ALL_MAPS, MapSelection

logger = logging.getLogger(__name__)

#: Targets as :func:`select_targets` takes them, or a function choosing classes from the prediction.
TargetChoice = Union[Targets, Callable[[Prediction], Sequence[int]]]
__all__ = ["METHODS", "PRESETS", "Explainer", "TargetChoice"]


class Explainer:
    """Explain a :class:`Classifier`'s predictions.

    ``mode``: ``whitebox`` (graph insertion, one inference), ``blackbox`` (perturbation, any model) or
    ``auto`` (white-box, falling back to black-box only if the graph has no usable feature map).
    ``method`` picks one of :data:`METHODS`; ``preset`` / ``seed`` tune black-box methods; extra
    keyword ``options`` are the method's own (see ``METHODS[name].options``), checked here.
    """

    backend = "native"

    def __init__(self, classifier: Classifier, *, mode: str = "auto", method: str | None = None,
                 target_layer: str | None = None, preset: str = "balance", seed: int = 0, **options: Any) -> None:
        check_preset(preset)
        self.classifier = classifier
        self.preset, self.seed, self.options = preset, seed, options
        self.fallback_reason: str | None = None
        mode, chosen = resolve(mode, method)
        self._runner: WhiteboxRunner | BlackboxRunner
        if mode in ("auto", "whitebox"):
            try:
                self._runner = WhiteboxRunner(classifier, chosen if isinstance(chosen, WhiteboxMethod) else None,
                                              target_layer, options)
            except WhiteboxUnsupportedError as exc:
                if mode == "whitebox":
                    raise
                self.fallback_reason = str(exc)
                logger.warning("white-box explanation not possible (%s); falling back to black-box %s",
                               exc, DEFAULT_BLACKBOX)
                fallback = METHODS[DEFAULT_BLACKBOX]
                dropped = sorted(set(options) - set(fallback.options))
                if dropped:  # e.g. a white-box read-out: it means nothing to the black-box method
                    logger.warning("%s ignores the white-box option(s) %s", fallback.name, ", ".join(dropped))
                self._runner = BlackboxRunner(classifier, fallback, preset, seed,
                                              {k: v for k, v in options.items() if k not in dropped})
        else:
            assert isinstance(chosen, BlackboxMethod)
            self._runner = BlackboxRunner(classifier, chosen, preset, seed, options)

    # ----- what runs --------------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self._runner.mode

    @property
    def method(self) -> str:
        return self._runner.method.name

    @property
    def target_layer(self) -> str | None:
        return self._runner.target_layer

    @property
    def readout(self) -> str | None:
        """How white-box class scores are read: ``logit`` or ``probability`` (None for black-box and
        class-agnostic methods)."""
        return getattr(self._runner, "readout", None)

    @property
    def shortcut(self) -> bool:
        """Whether the maps come from one matrix product over the feature map (CAM; ReciproCAM's shortcut)."""
        return self._runner.shortcut

    @property
    def device(self) -> str:
        return self._runner.device

    @property
    def precision(self) -> str:
        """The working precision the maps are computed in, as the compiled model reports it."""
        return self._runner.precision

    @property
    def compiled(self) -> Any:
        """The compiled model explanations run on (with the saliency output, for white-box)."""
        return self._runner.compiled

    @property
    def parallel_requests(self) -> int:
        """How many inferences the device runs at once for this explainer's model."""
        return self._runner.parallel_requests

    def plan(self, budget: int | None = None) -> tuple[int, int]:
        """How a dataset run shares ``budget`` inferences in flight (default: the device's fill):
        (images at once, inferences in flight per image). White-box images are one inference each;
        black-box images split the budget two ways, one explaining while the other decodes or writes."""
        if self.mode == "whitebox":
            return budget or self.parallel_requests + 1, 1
        total = budget or self._runner.budget
        images = min(2, total)
        return images, max(1, total // images)

    def close(self) -> None:
        """Release this thread's infer request now rather than at interpreter shutdown (the classifier,
        which others may share, is closed by its owner)."""
        self._runner.close()

    def __enter__(self) -> "Explainer":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # ----- explain ----------------------------------------------------------------------------------
    def prepare(self, image: ImageInput, *, source: str | None = None) -> PreparedInput:
        """An image as this explainer's methods take it (black-box: at the model's input size)."""
        return self._runner.prepare(image, source)

    def explain(self, images: ImageInput | Sequence[ImageInput], targets: TargetChoice = "predicted", *,
                top_k: int = 3, threshold: float = 0.1, progress: Progress | None = None
                ) -> Explanation | list[Explanation]:
        """Explain one image (returns an Explanation) or a list (returns a list, batched where possible).

        ``targets``: ``"predicted"`` (top class + others above ``threshold``, at most ``top_k``),
        ``"all"``, class indices / names, or a function from the :class:`Prediction` to class indices.
        """
        batch, single = as_image_list(images)
        choose = self._chooser(targets, top_k, threshold)
        selection = self._selection(targets, top_k)
        # White-box: all images prepared, then batched; black-box: one at a time (each fills the device).
        step = max(1, len(batch)) if self._runner.batches else 1
        results: list[Explanation] = []
        for start in range(0, len(batch), step):
            started = time.perf_counter()
            prepared = [self.prepare(image) for image in batch[start:start + step]]
            prep_ms = (time.perf_counter() - started) * 1000 / len(prepared)
            results += self._timed(self._runner.explain(prepared, choose, top_k, progress=progress,
                                                        selection=selection), prep_ms)
        return results[0] if single else results

    def explain_prepared(self, prepared: PreparedInput, targets: TargetChoice = "predicted", *, top_k: int = 3,
                         threshold: float = 0.1, progress: Progress | None = None, preprocess_ms: float = 0.0,
                         parallel: int | None = None) -> Explanation:
        """Explain one image already through :meth:`prepare`.

        Thread-safe: dataset audits call it from worker threads so decoding, inference and file
        writing overlap; ``parallel`` is this image's share of the audit's inference budget.
        """
        choose = self._chooser(targets, top_k, threshold)
        explained = self._runner.explain([prepared], choose, top_k, parallel=parallel, progress=progress,
                                         selection=self._selection(targets, top_k))
        return self._timed(explained, preprocess_ms)[0]

    @staticmethod
    def _timed(results: list[Explanation], preprocess_ms: float) -> list[Explanation]:
        for result in results:
            result.timings_ms = {"preprocess": preprocess_ms, **result.timings_ms}
        return results

    def _selection(self, targets: TargetChoice, top_k: int) -> MapSelection:
        """The classes the targets can pick from, so a white-box graph computes only their maps:
        "predicted" picks among the top k, explicit classes are themselves; anything else needs all."""
        num_classes = self.classifier.num_classes
        if isinstance(targets, str) and targets == "predicted":
            return MapSelection("top", k=max(1, min(top_k, num_classes)))
        if callable(targets) or (isinstance(targets, str) and targets == "all"):
            return ALL_MAPS
        probabilities = np.zeros(num_classes, np.float32)  # only the count matters to name resolution
        return MapSelection("classes", classes=tuple(select_targets(targets, probabilities, self.classifier.labels)))

    def _chooser(self, targets: TargetChoice, top_k: int, threshold: float) -> Callable[[Prediction], list[int]]:
        labels = self.classifier.labels
        return lambda prediction: choose_targets(targets, prediction, labels, top_k=top_k, threshold=threshold)
