"""openvino-xai as a second backend: the same interface as :class:`~ov_explain.explain.Explainer`
(prepare, explain, explain_prepared, plan), the same result type, so it can serve ``explain`` and
``audit`` alike.

openvino-xai 1.1.0 pins OpenVINO 2024.4 and numpy 1.x and cannot import on OpenVINO 2026, so this
backend is available only in an environment with the ``xai`` extra. It is the reference the native
engine's parity tests compare against. Methods and their openvino-xai names come from the registry.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Sequence

import numpy as np

from ov_explain.core.devices import compile_with_fallback
from ov_explain.core.model import Classifier, ImageInput
from ov_explain.core.prepared import PreparedInput
from ov_explain.explain.base import ExplainError, Explanation, SaliencyMap, as_image_list, choose_targets, to_original
from ov_explain.explain.explainer import TargetChoice
from ov_explain.explain.method import BlackboxMethod, Method
from ov_explain.explain.registry import check_preset, default_whitebox_method, resolve

logger = logging.getLogger(__name__)

def availability() -> tuple[bool, str]:
    """(usable, version or the reason it is not)."""
    try:
        import openvino_xai
    except Exception as exc:  # ImportError, or its import of OpenVINO's removed legacy module on 2026.x
        return False, f"{type(exc).__name__}: {exc}"
    return True, getattr(openvino_xai, "__version__", "unknown version")


class _CountingModel:
    """openvino-xai's compiled model, counting the inferences the library runs through it."""

    def __init__(self, compiled: Any) -> None:
        self._compiled, self._lock, self.calls = compiled, threading.Lock(), 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.calls += 1
        return self._compiled(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._compiled, name)


class XaiBackendExplainer:
    """Explain through openvino-xai: ``mode`` auto/whitebox/blackbox, ``method`` as in ov_explain.

    The library keeps one model and runs one image at a time, so explanations are serialised
    (an audit's image threads still overlap decoding and writing with it).
    """

    backend = "openvino-xai"
    fallback_reason = None

    def __init__(self, classifier: Classifier, *, mode: str = "auto", method: str | None = None,
                 target_layer: str | None = None, preset: str = "balance", seed: int = 0, **options: Any) -> None:
        usable, detail = availability()
        if not usable:
            raise ExplainError("backend 'openvino-xai' is not usable here "
                               f"({detail}); it needs the xai extra (OpenVINO 2024.4, numpy 1.x): "
                               "pip install -e '.[xai]'")
        import openvino_xai as xai
        from openvino_xai.explainer import ExplainMode

        check_preset(preset)
        mode, chosen = resolve(mode, method)
        chosen = chosen or default_whitebox_method(classifier.model, target_layer=target_layer, xai_only=True)
        self._xai_options = self._translate(chosen, options)
        blackbox = isinstance(chosen, BlackboxMethod)
        if blackbox and classifier.embedded:
            # The library multiplies the input by its masks: pixels go to black, not to the spec's mean.
            raise ExplainError(f"backend 'openvino-xai': {chosen.name} on an IR with embedded preprocessing would "
                               "mask pixels towards black, not the model's notion of 'nothing'; use the native "
                               "backend")
        self.classifier, self._method, self.preset, self.seed, self.options = classifier, chosen, preset, seed, options
        self.target_layer = target_layer
        model = classifier.model.clone()
        requested = classifier.compile_info.device
        self._xai = xai.Explainer(
            model=model, task=xai.Task.CLASSIFICATION, preprocess_fn=lambda x: x, postprocess_fn=self._postprocess,
            explain_mode=ExplainMode.BLACKBOX if blackbox else ExplainMode.WHITEBOX,
            explain_method=getattr(xai.Method, chosen.xai_name), target_layer=target_layer,
            embed_scaling=False, device_name=requested)
        self._lock = threading.Lock()
        self._counter = self._recompile(requested, classifier.requested_precision)

    @staticmethod
    def _translate(method: Method, options: dict[str, Any]) -> dict[str, Any]:
        """Our option names as openvino-xai's keywords (from the method's ``xai_options``)."""
        method.check_options(options)
        if method.xai_name is None:
            raise ExplainError(f"openvino-xai has no {method.name}; use the native backend")
        offered = method.xai_options
        missing = sorted(set(options) - set(offered))
        if missing:
            raise ExplainError(f"backend 'openvino-xai': {method.name} there has no option {', '.join(missing)}; "
                               f"offered: {', '.join(offered) or 'none'}")
        return {offered[k]: v for k, v in options.items()}

    def _recompile(self, device: str, precision: str) -> _CountingModel:
        """Compile openvino-xai's model again on the requested device in ``precision``: the library
        compiles with no properties, which is bf16 on CPUs with AMX, so parity with the native (f32)
        maps would depend on the CPU. Returns the counting wrapper it now calls.

        openvino-xai 1.1 keeps its model and compiled model on ``method._model`` / ``_model_compiled``
        (the version the ``xai`` extra pins).
        """
        method = getattr(self._xai, "method", None)
        if method is None or not hasattr(method, "_model_compiled") or getattr(method, "_model", None) is None:
            raise ExplainError("backend 'openvino-xai': this openvino-xai version keeps its compiled model "
                               "elsewhere; install the version the xai extra pins (1.1.0)")
        compiled = compile_with_fallback(self.classifier.core, method._model, device, cache_dir=None,
                                         precision=precision)
        self.device, self.precision = ",".join(compiled.execution_devices), compiled.precision
        method._model_compiled = _CountingModel(compiled.compiled)
        return method._model_compiled

    # ----- the explainer interface ------------------------------------------------------------------
    @property
    def readout(self) -> str | None:
        """openvino-xai's class-scoring white-box methods read the scores before a softmax: ``logit``."""
        method = self._method
        return "logit" if method.mode == "whitebox" and not method.class_agnostic else None

    @property
    def method(self) -> str:
        return self._method.name

    @property
    def mode(self) -> str:
        return self._method.mode

    @property
    def parallel_requests(self) -> int:
        return 1  # the library runs one inference at a time

    def plan(self, budget: int | None = None) -> tuple[int, int]:
        """(images at once, inferences per image): two threads, so decoding and writing overlap the library."""
        return 2, 1

    def close(self) -> None:
        """Nothing of ours to release: openvino-xai owns its requests."""

    def __enter__(self) -> "XaiBackendExplainer":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _postprocess(self, outputs: Any) -> np.ndarray:
        return self.classifier.to_probabilities(np.asarray(outputs[self.classifier.output_index]))[0]

    def prepare(self, image: ImageInput, *, source: str | None = None) -> PreparedInput:
        if self.mode == "blackbox":
            return self.classifier.prepare(image, source=source, at_model_size=True).as_float()
        return self.classifier.prepare(image, source=source)

    def explain(self, images: ImageInput | Sequence[ImageInput], targets: TargetChoice = "predicted", *,
                top_k: int = 3, threshold: float = 0.1, progress: Any = None) -> Explanation | list[Explanation]:
        """Same contract as :meth:`Explainer.explain` (one image at a time: the library has batch 1)."""
        batch, single = as_image_list(images)
        results = []
        for image in batch:
            started = time.perf_counter()
            prepared = self.prepare(image)
            results.append(self.explain_prepared(prepared, targets, top_k=top_k, threshold=threshold,
                                                 preprocess_ms=(time.perf_counter() - started) * 1000))
        return results[0] if single else results

    def explain_prepared(self, prepared: PreparedInput, targets: TargetChoice = "predicted", *, top_k: int = 3,
                         threshold: float = 0.1, progress: Any = None, preprocess_ms: float = 0.0,
                         parallel: int | None = None) -> Explanation:
        """One image already through :meth:`prepare`; ``parallel`` is accepted for the audit and unused."""
        with self._lock:  # the library's model and counters are shared
            started = time.perf_counter()
            before = self._counter.calls
            data = prepared.tensor[None]
            outputs = self._xai.method.model_forward(data, preprocess=False)
            prediction = self.classifier.prediction_from_raw(
                np.asarray(outputs[self.classifier.output_index]).reshape(-1), prepared, max(top_k, 5), {},
                device=self.device, precision=self.precision)
            chosen = choose_targets(targets, prediction, self.classifier.labels, top_k=top_k,
                                    threshold=threshold)
            if self.mode == "whitebox":  # the maps came with the prediction, from the same inference
                # A copy: the outputs are views on the compiled model's one request, which the next
                # image (another audit thread) overwrites as soon as the lock is released.
                raw_maps = np.array(outputs["saliency_map"], np.float32, copy=True)[0]
                if self._method.class_agnostic:
                    chosen, maps = [None], {None: raw_maps.reshape(raw_maps.shape[-2:])}
                else:
                    maps = {c: raw_maps[c] for c in chosen}
            else:
                from openvino_xai.methods.black_box.base import Preset

                kwargs = {"preset": getattr(Preset, self.preset.upper()), "scale_output": False,
                          **self._xai_options}
                if self._method.xai_seed:
                    kwargs["seed"] = self.seed
                maps = self._xai(data, targets=chosen, resize=False, colormap=False, scaling=False,
                                 **kwargs).saliency_map
            inferences = self._counter.calls - before
        geometry = prepared.geometry
        input_size = prepared.spatial_size if self.mode == "blackbox" else self.classifier.input_size
        saliency = []
        for target in chosen:
            raw = np.asarray(maps[target], dtype=np.float32)
            saliency.append(SaliencyMap(target, None if target is None else self.classifier.class_name(target),
                                        None if target is None else float(prediction.probabilities[target]), raw,
                                        to_original(raw, input_size, geometry)))
        timings = {"preprocess": preprocess_ms, "explain": (time.perf_counter() - started) * 1000}
        return Explanation(prepared.source, geometry.original_size, prediction, saliency, self.method, self.mode,
                           self.device, self.target_layer, self.backend, inferences, timings, geometry, self.precision,
                           readout=self.readout)

