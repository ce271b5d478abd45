"""The classifier: an :class:`~ov_explain.core.runtime.ImageModel` whose output is class scores; top-k
predictions, one image or a stream with several inferences in flight."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ov_explain.core.devices import (
    DEFAULT_PRECISION,
)
from ov_explain.core.errors import OvExplainError
from ov_explain.core.ports import OUTPUT_KINDS, classification_output, output_position, output_softmax
from ov_explain.core.prepared import PreparedInput
from ov_explain.core.preprocess import (
    Geometry,
    PreprocessFn,
    PreprocessSpec,
)
from ov_explain.core.runtime import ImageInput, ImageModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassScore:
    """One class of a prediction: index, name (if the model has labels) and probability."""

    index: int
    name: str | None
    probability: float

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "probability": round(float(self.probability), 6)}


@dataclass
class Prediction:
    """Top-k classes for one image, the full probability vector and where/how it was computed."""

    source: str
    top: list[ClassScore]
    probabilities: np.ndarray = field(repr=False)
    device: str
    output_kind: str  # how the raw output was read: "logits" (softmax applied) or "probabilities"
    timings_ms: dict[str, float] = field(default_factory=dict)
    geometry: Geometry | None = field(default=None, repr=False)
    precision: str = "unknown"  # the working precision that executed (f32, bf16, f16)

    def __post_init__(self) -> None:
        probabilities = np.asarray(self.probabilities)
        if probabilities.ndim != 1:
            raise ValueError(f"probabilities: expected shape (num_classes,), got {probabilities.shape}")
        if not self.top:
            raise ValueError("top: expected at least one class")
        if any(a.probability < b.probability for a, b in zip(self.top, self.top[1:])):
            raise ValueError("top: classes must be sorted by decreasing probability")
        self.probabilities = probabilities

    @property
    def label(self) -> str:
        best = self.top[0]
        return best.name if best.name is not None else str(best.index)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "device": self.device, "precision": self.precision,
                "output_kind": self.output_kind, "top": [c.to_dict() for c in self.top],
                "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()}}


class Classifier(ImageModel):
    """An image classifier on OpenVINO.

    ``preprocess`` is a :class:`PreprocessSpec`, a dict or a path to a JSON file (an ov_explain spec, a timm
    ``pretrained_cfg`` / hub ``config.json`` or a Hugging Face ``preprocessor_config.json``, see
    :mod:`ov_explain.core.preprocess_import`), a ``"pkg.mod:function"`` reference, or a callable taking an
    RGB uint8 (H, W, 3) image. Without it the spec embedded in the IR or stored beside the model is
    used; :attr:`preprocess_origin` says where the preprocessing came from. ``output`` says whether the
    model returns logits (softmax is applied) or probabilities; ``auto`` decides from the graph and then
    the values.
    ``precision`` is the working precision (see :data:`ov_explain.core.devices.PRECISIONS`): ``f32`` by
    default, the same numbers on every CPU; ``device`` for what the device runs when nobody asks
    (bf16 on CPUs with AMX, f16 on GPU / NPU). What executed is :attr:`precision`.

    Use it as a context manager (or call :meth:`close`) to release the device's infer requests
    when the work ends rather than at interpreter shutdown.
    """

    def __init__(self, model_path: str | os.PathLike | None = None, *, device: str = "AUTO",
                 preprocess: PreprocessSpec | dict | PreprocessFn | str | os.PathLike | None = None,
                 labels: Sequence[str] | str | os.PathLike | None = None, output: str = "auto",
                 hint: str = "LATENCY", cache_dir: Path | str | None = "default", core: Any = None,
                 precision: str = DEFAULT_PRECISION) -> None:
        if output not in OUTPUT_KINDS:
            raise OvExplainError(f"output must be one of {list(OUTPUT_KINDS)}, got {output!r}")
        self._output_request = output
        super().__init__(model_path, device=device, preprocess=preprocess, labels=labels, hint=hint,
                         cache_dir=cache_dir, core=core, precision=precision)
        self._out_index = output_position(self.model.outputs, self.output_port)

    def _find_outputs(self) -> None:
        self.output_port = classification_output(self.model, self.files.model)
        self.num_classes = int(self.output_port.get_partial_shape()[1].get_length())
        self.output_kind = self._output_request if self._output_request != "auto" else \
            _graph_output_kind(self.output_port)

    def __enter__(self) -> "Classifier":
        return self

    @property
    def output_index(self) -> int:
        """Position of the class-score output among the compiled model's outputs."""
        return self._out_index

    # ----- inference ---------------------------------------------------------------------------
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Raw model output (N, num_classes) for a preprocessed batch (thread-safe, split if the device needs it)."""
        batch = np.asarray(batch)
        return self.infer_outputs(batch)[self._out_index].reshape(batch.shape[0], -1)

    def to_probabilities(self, raw: np.ndarray) -> tuple[np.ndarray, str]:
        """Probabilities from raw outputs, and how the output was read (logits or probabilities)."""
        raw = np.asarray(raw, dtype=np.float32)
        kind = self.output_kind if self.output_kind != "auto" else _value_output_kind(raw)
        if kind == "logits":
            shifted = raw - raw.max(axis=-1, keepdims=True)
            exp = np.exp(shifted)
            return exp / exp.sum(axis=-1, keepdims=True), kind
        return raw, kind

    def probabilities(self, images: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Class probabilities (N, K) for RGB uint8 images: what black-box metrics score with."""
        tensors = np.stack([self.prepare(image).tensor for image in images])
        return self.to_probabilities(self.infer(tensors))[0]

    def top_k(self, probabilities: np.ndarray, k: int = 5) -> list[ClassScore]:
        k = max(1, min(int(k), probabilities.shape[-1]))
        order = np.argsort(-probabilities, kind="stable")[:k]
        return [ClassScore(int(i), self.class_name(int(i)), float(probabilities[i])) for i in order]

    def predict(self, image: ImageInput, *, top_k: int = 5) -> Prediction:
        """Predict one image (a path or an RGB uint8 array)."""
        started = time.perf_counter()
        prepared = self.prepare(image)
        ready = time.perf_counter()
        raw = self.infer(prepared.tensor[None])
        inferred = time.perf_counter()
        return self.prediction_from_raw(raw[0], prepared, top_k,
                                        {"preprocess": (ready - started) * 1000, "infer": (inferred - ready) * 1000})

    def predict_many(self, images: Iterable[ImageInput], *, top_k: int = 5,
                     on_error: Callable[[str, OvExplainError], None] | None = None) -> Iterator[Prediction]:
        """Predict a stream of images with several inferences in flight, in input order.

        A bad image calls ``on_error(source, error)`` (or raises if no callback) and the rest go on.
        The infer requests are released when the stream ends or is closed.
        """
        def read(request: Any) -> tuple[np.ndarray, float]:
            return np.array(request.get_output_tensor(self._out_index).data).reshape(-1), time.perf_counter()

        yield from self._stream(images, on_error, read, lambda job, result: self._finish(job, result, top_k))

    # ----- internals ---------------------------------------------------------------------------
    def _finish(self, job: tuple[PreparedInput, float, float], result: tuple[np.ndarray, float],
                top_k: int) -> Prediction:
        (prepared, prep_ms, submitted), (raw, finished) = job, result
        return self.prediction_from_raw(raw, prepared, top_k,
                                        {"preprocess": prep_ms, "infer": (finished - submitted) * 1000})

    def prediction_from_raw(self, raw: np.ndarray, prepared: PreparedInput, top_k: int,
                            timings: dict[str, float], *, device: str | None = None,
                            precision: str | None = None) -> Prediction:
        """A :class:`Prediction` from one image's raw model output (``device`` / ``precision``: of the
        compiled model that produced it, when not the classifier's own)."""
        probabilities, kind = self.to_probabilities(raw[None])
        return Prediction(prepared.source, self.top_k(probabilities[0], top_k), probabilities[0],
                          device or self.device, kind, timings, prepared.geometry, precision or self.precision)


def _graph_output_kind(port: Any) -> str:
    """Probabilities if the output is produced by a Softmax, else decided from values at run time."""
    return "probabilities" if output_softmax(port) is not None else "auto"


def _value_output_kind(raw: np.ndarray) -> str:
    in_range = bool(np.all(raw >= 0) and np.all(raw <= 1))
    sums_to_one = bool(np.allclose(raw.sum(axis=-1), 1.0, atol=1e-3))
    return "probabilities" if in_range and sums_to_one else "logits"
