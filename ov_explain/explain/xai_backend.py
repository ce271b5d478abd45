"""openvino-xai as a second backend: the same request run through the library, same result type.

openvino-xai 1.1.0 pins OpenVINO 2024.4 and numpy 1.x and cannot import on OpenVINO 2026, so this
backend is available only in an environment with the ``xai`` extra. It is the reference the native
engine's parity tests compare against.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Sequence

import numpy as np

from ..devices import compile_with_fallback
from ..model import Classifier, ImageInput
from .base import ExplainError, Explanation, SaliencyMap, Targets, as_image_list, check_mode, select_targets, \
    to_original
from .whitebox import default_whitebox_method

logger = logging.getLogger(__name__)

_METHODS = {"reciprocam": "RECIPROCAM", "vitreciprocam": "VITRECIPROCAM", "activationmap": "ACTIVATIONMAP",
            "rise": "RISE", "aise": "AISE"}
_BLACKBOX = ("rise", "aise")


def availability() -> tuple[bool, str]:
    """(usable, version or the reason it is not)."""
    try:
        import openvino_xai
    except Exception as exc:  # ImportError, or its import of OpenVINO's removed legacy module on 2026.x
        return False, f"{type(exc).__name__}: {exc}"
    return True, getattr(openvino_xai, "__version__", "unknown version")


class XaiBackendExplainer:
    """Explain through openvino-xai: ``mode`` auto/whitebox/blackbox, ``method`` as in ov_explain."""

    backend = "openvino-xai"

    def __init__(self, classifier: Classifier, *, mode: str = "auto", method: str | None = None,
                 target_layer: str | None = None, preset: str = "balance", seed: int = 0) -> None:
        usable, detail = availability()
        if not usable:
            raise ExplainError("backend 'openvino-xai' is not usable here "
                               f"({detail}); it needs the xai extra (OpenVINO 2024.4, numpy 1.x): "
                               "pip install -e '.[xai]'")
        import openvino as ov
        import openvino_xai as xai
        from openvino_xai.explainer import ExplainMode

        check_mode(mode)
        if method is None:
            method = "aise" if mode == "blackbox" else default_whitebox_method(classifier.model)
        if method not in _METHODS:
            raise ExplainError(f"openvino-xai backend: unknown method {method!r}; known: {', '.join(_METHODS)}")
        self.classifier, self.method, self.preset, self.seed = classifier, method, preset, seed
        self.mode = "blackbox" if method in _BLACKBOX else "whitebox"
        self.target_layer = target_layer
        model = ov.Core().read_model(str(classifier.files.model))
        self._xai = xai.Explainer(
            model=model, task=xai.Task.CLASSIFICATION, preprocess_fn=self._preprocess,
            postprocess_fn=self._postprocess,
            explain_mode=ExplainMode.BLACKBOX if self.mode == "blackbox" else ExplainMode.WHITEBOX,
            explain_method=getattr(xai.Method, _METHODS[method]), target_layer=target_layer,
            embed_scaling=False, device_name="CPU")
        self.device = "CPU"
        self.precision = self._recompile_in(classifier.requested_precision)

    def _recompile_in(self, precision: str) -> str:
        """Compile openvino-xai's model again in ``precision``: the library compiles with no properties,
        which is bf16 on CPUs with AMX, so parity with the native (f32) maps would depend on the CPU.

        openvino-xai 1.1 keeps its model and compiled model on ``method._model`` / ``_model_compiled``
        (the version the ``xai`` extra pins); returns the precision that executes.
        """
        method = getattr(self._xai, "method", None)
        if method is None or not hasattr(method, "_model_compiled") or getattr(method, "_model", None) is None:
            raise ExplainError("backend 'openvino-xai': this openvino-xai version keeps its compiled model "
                               "elsewhere; install the version the xai extra pins (1.1.0)")
        compiled = compile_with_fallback(self.classifier.core, method._model, "CPU", cache_dir=None,
                                         precision=precision)
        method._model_compiled = compiled.compiled
        return compiled.precision

    def close(self) -> None:
        """Nothing of ours to release: openvino-xai owns its requests."""

    def _preprocess(self, image: np.ndarray) -> np.ndarray:
        return self.classifier.prepare(image)[0][None]

    def _postprocess(self, outputs: Any) -> np.ndarray:
        return self.classifier.to_probabilities(np.asarray(outputs[self.classifier.output_index]))[0]

    def explain(self, images: ImageInput | Sequence[ImageInput], targets: Targets = "predicted", *,
                top_k: int = 3, threshold: float = 0.1, progress: Any = None) -> Explanation | list[Explanation]:
        """Same contract as :meth:`Explainer.explain` (one image at a time: the library has batch 1)."""
        from openvino_xai.methods.black_box.base import Preset

        from ..images import read_image

        batch, single = as_image_list(images)
        results = []
        for image in batch:
            started = time.perf_counter()
            pixels = read_image(image) if not isinstance(image, np.ndarray) else image
            prediction = self.classifier.predict(pixels, top_k=max(top_k, 5))
            chosen = select_targets(targets, prediction.probabilities, self.classifier.labels, top_k=top_k,
                                    threshold=threshold)
            kwargs: dict[str, Any] = {}
            if self.mode == "blackbox":
                kwargs = {"preset": getattr(Preset, self.preset.upper()), "scale_output": False}
                if self.method == "rise":
                    kwargs["seed"] = self.seed
            explained = self._xai(pixels, targets=chosen, resize=False, colormap=False, scaling=False, **kwargs)
            maps = explained.saliency_map
            geometry = prediction.geometry
            saliency = []
            for target in chosen:
                raw = np.asarray(maps[target], dtype=np.float32)
                saliency.append(SaliencyMap(target, self.classifier.class_name(target),
                                            float(prediction.probabilities[target]), raw,
                                            to_original(raw, self.classifier.input_size, geometry)))
            prediction.source = str(image) if not isinstance(image, np.ndarray) else "<array>"
            results.append(Explanation(prediction.source, geometry.original_size, prediction, saliency, self.method,
                                       self.mode, self.device, self.target_layer, self.backend, 0,
                                       {"total": (time.perf_counter() - started) * 1000}, geometry,
                                       self.precision))
        return results[0] if single else results
