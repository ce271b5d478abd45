"""What every model on a device shares, whatever its task: the files, reading and compiling with device
fallback and the requested precision, preprocessing (a spec, a function or the IR's own), labels, and
thread-safe inference. :class:`~ov_explain.core.model.Classifier` and
:class:`~ov_explain.core.detector.Detector` add what their outputs mean."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Callable, Sequence, Union

import numpy as np

from ov_explain.core.devices import (
    DEFAULT_PRECISION,
    CompiledModel,
    RequestRing,
    ThreadRequests,
    compile_with_fallback,
)
from ov_explain.core.errors import ImageReadError, ModelLoadError, OvExplainError, PreprocessError
from ov_explain.core.files import ReadModel, read_model
from ov_explain.core.images import read_image
from ov_explain.core.labels import check_labels, read_labels
from ov_explain.core.prepared import PreparedInput
from ov_explain.core.preprocess import (
    PreprocessFn,
    PreprocessSpec,
    load_preprocess_function,
    read_spec_from_model,
    run_custom,
)
from ov_explain.core.preprocess_import import load_sidecar, load_spec_file, spec_from_dict

logger = logging.getLogger(__name__)

ImageInput = Union[str, os.PathLike, np.ndarray]


class ImageModel:
    """An image model read from IR / ONNX and compiled on a device (see :class:`~ov_explain.core.model.Classifier`
    for the arguments). Subclasses find their outputs (:meth:`_find_outputs`, which sets ``num_classes``)
    and may adapt the graph before it is compiled (:meth:`_adapt_graph`)."""

    def __init__(self, model_path: str | os.PathLike | ReadModel | None = None, *, device: str = "AUTO",
                 preprocess: PreprocessSpec | dict | PreprocessFn | str | os.PathLike | None = None,
                 labels: Sequence[str] | str | os.PathLike | None = None, hint: str = "LATENCY",
                 cache_dir: Path | str | None = "default", core: Any = None,
                 precision: str = DEFAULT_PRECISION) -> None:
        import openvino as ov

        self.core = core if core is not None else ov.Core()
        started = time.perf_counter()
        read = read_model(model_path, self.core)  # (a ReadModel: already read, e.g. to find the task)
        self.files, self.model = read.files, read.model
        self.num_classes = 0
        self._find_outputs()
        self.spec, self.embedded, self.custom_fn, self.preprocess_origin = self._resolve_preprocess(preprocess)
        self.preprocess_given = preprocess is not None  # else the model's own (sidecar, in the IR, or plain)
        self._adapt_graph()
        if self.custom_fn is None and not self.embedded:
            _check_spec_fits(self.model, self.spec, self.files.model)
        self.labels = self._resolve_labels(labels)
        self.hint = hint
        self._compiled: CompiledModel = compile_with_fallback(self.core, self.model, device, hint=hint,
                                                              cache_dir=cache_dir, precision=precision)
        self.load_ms = (time.perf_counter() - started) * 1000.0
        self._requests = ThreadRequests(self._compiled.compiled)
        logger.info("loaded %s on %s (%s) in %.0f ms", self.files.model.name, self.device, self.precision,
                    self.load_ms)

    def _find_outputs(self) -> None:
        """Find the outputs this task reads and set ``num_classes``; a :class:`ModelLoadError` if none fits."""
        raise NotImplementedError

    def _adapt_graph(self) -> None:
        """Change ``self.model`` before it is compiled (e.g. fix a dynamic input to the spec's size)."""

    def __enter__(self) -> "ImageModel":
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
    def max_batch(self) -> int | None:
        """Largest batch one request takes: None when the batch dimension is dynamic."""
        return self._compiled.max_batch

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
    def infer_outputs(self, batch: np.ndarray) -> list[np.ndarray]:
        """Every output of the model for a preprocessed batch, split if the device needs it.

        Safe to call from several threads at once (each gets its own infer request).
        """
        batch = np.asarray(batch)
        limit = self.max_batch
        if limit is not None and batch.shape[0] != limit:
            if limit != 1:
                raise OvExplainError(f"model compiled for batch {limit}, got a batch of {batch.shape[0]}")
            parts = [self.infer_outputs(batch[i:i + 1]) for i in range(batch.shape[0])]
            return [np.concatenate([part[k] for part in parts]) for k in range(len(parts[0]))]
        return self._requests.infer(batch)

    def _stream(self, images: Iterable[ImageInput], on_error: Callable[[str, OvExplainError], None] | None,
                read: Callable[[Any], Any], finish: Callable[[Any, Any], Any]) -> Iterator[Any]:
        """Images prepared here and inferred on a ring of requests, several in flight, finished in input order:
        ``finish((prepared, preprocess_ms, submitted), read(request))`` for each. A bad image calls
        ``on_error(source, error)`` (or raises if there is no callback) and the rest go on."""
        with RequestRing(self.compiled, self._compiled.optimal_requests, read) as ring:
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
                    yield finish(*finished)
            for finished in ring.drain():
                yield finish(*finished)

    def class_name(self, index: int) -> str | None:
        return self.labels[index] if self.labels is not None else None

    # ----- internals ---------------------------------------------------------------------------
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
        return spec, False, None, self._default_preprocessing(spec)

    def _default_preprocessing(self, spec: PreprocessSpec) -> str:
        """Where the preprocessing came from when nothing says (logged): a plain resize, with a warning."""
        logger.warning("%s: no preprocessing spec found (beside the model or in it); using a plain %dx%d "
                       "resize with no normalisation — pass a spec for correct results",
                       self.files.model, *spec.size)
        return f"none found: plain resize to {spec.size[0]}x{spec.size[1]}"

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
