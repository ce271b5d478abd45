"""The classifier wrapper: read IR/ONNX, compile with device fallback, preprocess, infer, top-k."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, Union

import numpy as np

from ov_explain.core.config import OUTPUT_KINDS
from ov_explain.core.devices import (
    DEFAULT_PRECISION,
    CompiledModel,
    RequestRing,
    ThreadRequests,
    batch_capacity,
    compile_with_fallback,
    optimal_requests,
)
from ov_explain.core.errors import ImageReadError, ModelLoadError, OvExplainError, PreprocessError, one_line
from ov_explain.core.files import ModelFiles
from ov_explain.core.images import read_image
from ov_explain.core.labels import check_labels, read_labels
from ov_explain.core.ports import classification_output, output_position, output_softmax
from ov_explain.core.prepared import PreparedInput
from ov_explain.core.preprocess import (
    Geometry,
    PreprocessFn,
    PreprocessSpec,
    load_preprocess_function,
    read_spec_from_model,
    run_custom,
)
from ov_explain.core.preprocess_import import load_sidecar, load_spec_file, spec_from_dict

logger = logging.getLogger(__name__)

ImageInput = Union[str, os.PathLike, np.ndarray]


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


class Classifier:
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
        import openvino as ov

        if output not in OUTPUT_KINDS:
            raise OvExplainError(f"output must be one of {list(OUTPUT_KINDS)}, got {output!r}")
        self.files = ModelFiles.locate(model_path)
        self.core = core if core is not None else ov.Core()
        started = time.perf_counter()
        try:
            self.model = self.core.read_model(str(self.files.model))
        except Exception as exc:  # OpenVINO raises RuntimeError with the parser's text
            raise ModelLoadError(f"{self.files.model}: cannot read model ({one_line(exc)})") from None
        self.output_port = classification_output(self.model, self.files.model)
        self.num_classes = int(self.output_port.get_partial_shape()[1].get_length())
        self.spec, self.embedded, self.custom_fn, self.preprocess_origin = self._resolve_preprocess(preprocess)
        self.preprocess_given = preprocess is not None  # else the model's own (sidecar, in the IR, or plain)
        if self.custom_fn is None and not self.embedded:
            _check_spec_fits(self.model, self.spec, self.files.model)
        self.labels = self._resolve_labels(labels)
        self.output_kind = output if output != "auto" else _graph_output_kind(self.output_port)
        self.hint = hint
        self._compiled: CompiledModel = compile_with_fallback(self.core, self.model, device, hint=hint,
                                                              cache_dir=cache_dir, precision=precision)
        self.load_ms = (time.perf_counter() - started) * 1000.0
        self._out_index = output_position(self.model.outputs, self.output_port)
        self._requests = ThreadRequests(self._compiled.compiled)
        logger.info("loaded %s on %s (%s) in %.0f ms", self.files.model.name, self.device, self.precision,
                    self.load_ms)

    def __enter__(self) -> "Classifier":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Release this thread's infer request now; the compiled model goes with the last reference."""
        self._requests.close()

    # ----- properties --------------------------------------------------------------------------
    @property
    def device(self) -> str:
        """The device OpenVINO reports as executing the model (e.g. ``CPU`` or ``GPU.0``)."""
        return ",".join(self._compiled.execution_devices)

    @property
    def precision(self) -> str:
        """The working precision the compiled model reports (``f32``, ``bf16``, ``f16``)."""
        return self._compiled.precision

    @property
    def requested_precision(self) -> str:
        """The precision asked for at load time (``device``: the device's own default)."""
        return self._compiled.requested_precision

    @property
    def compiled(self) -> Any:
        return self._compiled.compiled

    @property
    def compile_info(self) -> CompiledModel:
        return self._compiled

    @property
    def input_size(self) -> tuple[int, int]:
        return self.spec.size

    @property
    def output_index(self) -> int:
        """Position of the class-score output among the compiled model's outputs."""
        return self._out_index

    @property
    def max_batch(self) -> int | None:
        """Largest batch one request takes: None when the batch dimension is dynamic."""
        return batch_capacity(self.compiled)

    @property
    def input_layout(self) -> str:
        """Layout of a prepared tensor: ``HWC`` pixels for embedded preprocessing, else the spec's."""
        return "HWC" if self.embedded or self.spec.layout == "NHWC" else "CHW"

    @property
    def _input_channels(self) -> int | None:
        """The model input's channel count where the layout puts it, if static."""
        shape = self.model.inputs[0].get_partial_shape()
        if shape.rank.is_dynamic or shape.rank.get_length() != 4:
            return None
        dim = shape[1] if self.input_layout == "CHW" else shape[3]
        return dim.get_length() if dim.is_static else None

    # ----- preprocessing -----------------------------------------------------------------------
    def prepare(self, image: ImageInput, *, source: str | None = None, at_model_size: bool = False) -> PreparedInput:
        """Load (if a path) and preprocess one image into the value every method takes.

        ``source`` names the image in results (default: the path, or ``<array>``). ``at_model_size``
        fits the image to the model's input size on the host even when an embedded graph would
        resize it: black-box methods draw their masks at the model's resolution.
        """
        if source is None:
            source = str(image) if not isinstance(image, np.ndarray) else "<array>"
        pixels = read_image(image) if not isinstance(image, np.ndarray) else image
        if self.custom_fn is not None:
            tensor, geometry = run_custom(self.custom_fn, pixels, self.spec.size)
            prepared = PreparedInput(tensor, geometry, self.input_layout, source)
            channels = self._input_channels
            if channels is not None and prepared.channels != channels:
                raise PreprocessError(f"{source}: custom preprocessing returned shape {tensor.shape}; the model "
                                      f"takes {self.input_layout} with {channels} channels")
            return prepared
        if self.embedded:
            tensor, geometry = self.spec.fit(pixels) if at_model_size else self.spec.embedded_input(pixels)
            # The graph normalises (x - mean) / std: a removed pixel is the mean colour, in RGB order.
            mean = self.spec.mean[::-1] if self.spec.color == "BGR" else self.spec.mean
            return PreparedInput(tensor, geometry, "HWC", source, tuple(float(m) for m in mean))
        tensor, geometry = self.spec(pixels)
        return PreparedInput(tensor, geometry, self.input_layout, source)

    def float_input_model(self) -> Any:
        """The model with a float32 input, as black-box methods run it: an embedded IR's uint8 pixel
        input is retyped (its first step converts to float anyway), so masked pixels are not rounded."""
        import openvino as ov

        if not self.embedded:
            return self.model
        model = self.model.clone()
        model.get_parameters()[0].set_element_type(ov.Type.f32)
        model.validate_nodes_and_infer_types()
        return model

    # ----- inference ---------------------------------------------------------------------------
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Raw model output (N, num_classes) for a preprocessed batch, split if the device needs it.

        Safe to call from several threads at once (each gets its own infer request).
        """
        batch = np.asarray(batch)
        limit = self.max_batch
        if limit is not None and batch.shape[0] != limit:
            if limit != 1:
                raise OvExplainError(f"model compiled for batch {limit}, got a batch of {batch.shape[0]}")
            return np.concatenate([self.infer(batch[i:i + 1]) for i in range(batch.shape[0])])
        return self._requests.infer(batch)[self._out_index].reshape(batch.shape[0], -1)

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

    def class_name(self, index: int) -> str | None:
        return self.labels[index] if self.labels is not None else None

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

        with RequestRing(self.compiled, optimal_requests(self.compiled), read) as ring:
            for image in images:
                started = time.perf_counter()
                try:
                    prepared = self.prepare(image)
                except (ImageReadError, PreprocessError) as exc:
                    if on_error is None:
                        raise
                    on_error(str(image), exc)
                    continue
                ready = time.perf_counter()
                job = (prepared, (ready - started) * 1000, ready)
                # Hand back finished results in input order while the other requests keep working.
                for finished in ring.start({0: prepared.tensor[None]}, job) + ring.ready():
                    yield self._finish(*finished, top_k)
            for finished in ring.drain():
                yield self._finish(*finished, top_k)

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

    def _resolve_preprocess(self, preprocess: Any) -> tuple[PreprocessSpec, bool, PreprocessFn | None, str]:
        """(spec, embedded, custom function, origin): what preprocessing runs and where it came from."""
        embedded_spec, embedded = read_spec_from_model(self.model)
        if preprocess is not None and embedded:
            raise PreprocessError(f"{self.files.model}: preprocessing is embedded in this IR (it takes uint8 RGB "
                                  "pixels); other preprocessing cannot be applied on top of it")
        if callable(preprocess) and not isinstance(preprocess, PreprocessSpec):
            name = f"{getattr(preprocess, '__module__', None) or '?'}:" \
                   f"{getattr(preprocess, '__qualname__', type(preprocess).__name__)}"
            return self._fallback_spec(embedded_spec), False, preprocess, f"custom function {name}"
        if isinstance(preprocess, (str, os.PathLike)):
            text = str(preprocess)
            if text.endswith(".json") or Path(text).is_file():
                spec, origin = load_spec_file(text, layout=self._guess_layout())
                return spec, False, None, origin
            return self._fallback_spec(embedded_spec), False, load_preprocess_function(text), \
                f"custom function {text}"
        if isinstance(preprocess, PreprocessSpec):
            return preprocess, False, None, "a PreprocessSpec object"
        if isinstance(preprocess, dict):  # a spec's fields, a timm pretrained_cfg or a Hugging Face config
            spec, what = spec_from_dict(preprocess, layout=self._guess_layout(), source="preprocess")
            return spec, False, None, f"a dict ({what})"
        if preprocess is not None:
            raise PreprocessError("preprocess: expected a spec, a dict, a .json path, 'pkg.mod:function' or a "
                                  f"callable, got {type(preprocess).__name__}")
        if embedded_spec is not None:
            origin = "embedded in the IR" if embedded else "ov_explain spec in model rt_info"
            return embedded_spec, embedded, None, origin
        if self.files.preprocess is not None:
            spec, origin = load_sidecar(self.files.preprocess, layout=self._guess_layout())
            if spec is not None:
                return spec, False, None, origin
        spec = self._fallback_spec(None)
        logger.warning("%s: no preprocessing spec found (beside the model or in it); using a plain %dx%d "
                       "resize with no normalisation — pass a spec for correct results",
                       self.files.model, *spec.size)
        return spec, False, None, f"none found: plain resize to {spec.size[0]}x{spec.size[1]}"

    def _guess_layout(self) -> str:
        """The model input's layout as far as its shape tells: NHWC when the last axis has 1 or 3
        channels and the second does not, else NCHW."""
        shape = self.model.inputs[0].get_partial_shape()
        if shape.rank.is_dynamic or shape.rank.get_length() != 4:
            return "NCHW"
        dims = [d.get_length() if d.is_static else -1 for d in shape]
        return "NHWC" if dims[3] in (1, 3) and dims[1] not in (1, 3) else "NCHW"

    def _fallback_spec(self, spec: PreprocessSpec | None) -> PreprocessSpec:
        if spec is not None:
            return spec
        shape = self.model.inputs[0].get_partial_shape()
        if shape.rank.is_dynamic or shape.rank.get_length() != 4:
            raise ModelLoadError(f"{self.files.model}: expected one image input of rank 4, got {shape}")
        dims = [d.get_length() if d.is_static else -1 for d in shape]
        layout = self._guess_layout()
        height, width = (dims[2], dims[3]) if layout == "NCHW" else (dims[1], dims[2])
        if height < 1 or width < 1:
            raise ModelLoadError(f"{self.files.model}: input {shape} has no static size; pass a preprocessing spec")
        return PreprocessSpec(size=(height, width), layout=layout)

    def _resolve_labels(self, labels: Any) -> list[str] | None:
        if labels is None and self.files.labels is not None:
            labels = self.files.labels
        if labels is None:
            return None
        if isinstance(labels, (str, os.PathLike)):
            return check_labels(read_labels(labels), self.num_classes, str(labels))
        return check_labels([str(n) for n in labels], self.num_classes, "labels")


def _check_spec_fits(model: Any, spec: PreprocessSpec, path: Path) -> None:
    """A spec whose size or layout the model's static input cannot take is a setup error, found once
    here rather than as one failed inference per image."""
    shape = model.inputs[0].get_partial_shape()
    if shape.rank.is_dynamic or shape.rank.get_length() != 4:
        return
    dims = [d.get_length() if d.is_static else None for d in shape]
    channels, height, width = (dims[1], dims[2], dims[3]) if spec.layout == "NCHW" else (dims[3], dims[1], dims[2])
    wanted = (spec.size[0], spec.size[1])
    if (height not in (None, wanted[0]) or width not in (None, wanted[1])
            or channels not in (None, 1, 3)):
        raise PreprocessError(f"preprocessing spec: {spec.layout} {wanted[0]}x{wanted[1]} does not fit {path.name}, "
                              f"whose input is {shape}; give the spec the model's size and layout")


def _graph_output_kind(port: Any) -> str:
    """Probabilities if the output is produced by a Softmax, else decided from values at run time."""
    return "probabilities" if output_softmax(port) is not None else "auto"


def _value_output_kind(raw: np.ndarray) -> str:
    in_range = bool(np.all(raw >= 0) and np.all(raw <= 1))
    sums_to_one = bool(np.allclose(raw.sum(axis=-1), 1.0, atol=1e-3))
    return "probabilities" if in_range and sums_to_one else "logits"
