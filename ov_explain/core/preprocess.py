"""Declarative preprocessing: a spec stored beside the model, run in numpy or embedded into the IR.

The spec covers the geometric step (resize / centre crop / letterbox, done on the host in uint8 with
OpenCV) and the numeric step (colour order, mean/std, layout). ``embed`` moves the numeric step
(and, for ``stretch``, the resize too) into the OpenVINO graph so the device does the work.
Every preprocessing result carries a :class:`Geometry` so maps can be put back on the original image.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, Union

import cv2
import numpy as np

from ov_explain.core.errors import PreprocessError

logger = logging.getLogger(__name__)

RESIZE_MODES = ("stretch", "center_crop", "letterbox")
COLOR_ORDERS = ("RGB", "BGR")
LAYOUTS = ("NCHW", "NHWC")
INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}
#: Other spellings of the interpolations (timm, torchvision, PIL), matched case-insensitively after
#: the last dot ("PIL.Image.Resampling.BICUBIC" -> "bicubic").
INTERPOLATION_ALIASES = {"bilinear": "linear", "bicubic": "cubic", "box": "area", "antialias": "lanczos"}
#: PIL's integer resampling codes (Hugging Face configs store these): 5 (HAMMING) has no OpenCV filter.
PIL_INTERPOLATION_CODES = {0: "nearest", 1: "lanczos", 2: "linear", 3: "cubic", 4: "area"}
#: rt_info path under which the spec travels inside an IR.
RT_INFO_KEY = ["model_info", "ov_explain_preprocess"]
RT_INFO_EMBEDDED_KEY = ["model_info", "ov_explain_preprocess_embedded"]


@dataclass(frozen=True)
class Geometry:
    """Where the original image sits in the model input: ``input_xy = original_xy * scale + offset``."""

    original_size: tuple[int, int]  # (H, W) of the image given to the preprocessor
    input_size: tuple[int, int]  # (H, W) of the model input
    scale: tuple[float, float]  # (sy, sx)
    offset: tuple[float, float]  # (oy, ox): negative for a crop, positive for letterbox padding

    @classmethod
    def stretch(cls, original_size: tuple[int, int], input_size: tuple[int, int]) -> "Geometry":
        (oh, ow), (ih, iw) = original_size, input_size
        return cls(original_size, input_size, (ih / oh, iw / ow), (0.0, 0.0))

    def input_box(self) -> tuple[float, float, float, float]:
        """Where the model input lies on the original image, in its pixels: ``(left, top, right, bottom)``.

        Inside the image for a centre crop, beyond it for letterbox padding; maps at the method's own
        resolution cover this box (what an export needs to place them without the model).
        """
        (sy, sx), (oy, ox), (height, width) = self.scale, self.offset, self.input_size
        return (-ox / sx, -oy / sy, (width - ox) / sx, (height - oy) / sy)

    def input_to_original(self, values: np.ndarray, *, interpolation: int = cv2.INTER_LINEAR,
                          fill: float = 0.0) -> np.ndarray:
        """Warp an (input_H, input_W[, C]) array back onto the original image's pixel grid.

        uint8 arrays stay uint8; anything else is warped as float32.

        Parts of the original image the model never saw (cropped away) get ``fill``.
        """
        values = np.asarray(values)
        if values.shape[:2] != tuple(self.input_size):
            raise ValueError(f"expected an array of spatial shape {self.input_size}, got {values.shape[:2]}")
        (sy, sx), (oy, ox) = self.scale, self.offset
        # original = (input - offset) / scale, expressed on pixel centres.
        matrix = np.array([[1 / sx, 0, (0.5 - ox) / sx - 0.5], [0, 1 / sy, (0.5 - oy) / sy - 0.5]], np.float64)
        oh, ow = self.original_size
        source = values if values.dtype == np.uint8 else values.astype(np.float32, copy=False)
        return cv2.warpAffine(source, matrix, (ow, oh), flags=interpolation,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=fill)


@dataclass(frozen=True)
class PreprocessSpec:
    """What a model expects: size, how to fit the image, interpolation, normalisation, colours, layout.

    ``mean`` and ``std`` are in pixel units (0..255) and in the channel order the model receives.
    ``crop_fraction`` is the share of the resized short side kept by ``center_crop``
    (224 / 256 = 0.875 means "resize the short side to 256, then crop 224").
    """

    size: tuple[int, int] = (224, 224)
    resize: str = "stretch"
    crop_fraction: float = 1.0
    interpolation: str = "linear"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    color: str = "RGB"
    layout: str = "NCHW"
    pad_value: int = 0
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        set_("size", _parse_size(self.size))
        set_("mean", _triple("mean", self.mean))
        set_("std", _triple("std", self.std))
        if any(s == 0 for s in self.std):
            raise PreprocessError(f"std must be non-zero, got {list(self.std)}")
        _check_choice("resize", self.resize, RESIZE_MODES)
        set_("interpolation", canonical_interpolation(self.interpolation))
        set_("color", str(self.color).upper())
        _check_choice("color", self.color, COLOR_ORDERS)
        set_("layout", str(self.layout).upper())
        _check_choice("layout", self.layout, LAYOUTS)
        if not (isinstance(self.crop_fraction, (int, float)) and 0 < self.crop_fraction <= 1):
            raise PreprocessError(f"crop_fraction must be in (0, 1], got {self.crop_fraction!r}")
        if not (isinstance(self.pad_value, int) and 0 <= self.pad_value <= 255):
            raise PreprocessError(f"pad_value must be an integer 0..255, got {self.pad_value!r}")

    # ----- serialisation -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "preprocessing spec") -> "PreprocessSpec":
        if not isinstance(data, dict):
            raise PreprocessError(f"{source}: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PreprocessError(f"{source}: unknown key(s) {unknown}; known keys: {sorted(known)}")
        try:
            return cls(**data)
        except PreprocessError as exc:
            raise PreprocessError(f"{source}: {exc}") from None
        except TypeError as exc:
            raise PreprocessError(f"{source}: {exc}") from None

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "PreprocessSpec":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PreprocessError(f"{path}: preprocessing spec not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PreprocessError(f"{path}: not valid JSON ({exc})") from None
        return cls.from_dict(data, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("extra")
        data["size"] = list(self.size)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return data

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    # ----- numpy path ----------------------------------------------------------------------------
    def fit(self, image: np.ndarray) -> tuple[np.ndarray, Geometry]:
        """The geometric step: an RGB uint8 (H, W, 3) image resized/cropped/padded to ``size``."""
        _check_image(image)
        height, width = image.shape[:2]
        target_h, target_w = self.size
        interp = INTERPOLATIONS[self.interpolation]
        geometry = self.geometry(height, width)
        if self.resize == "stretch":
            return _resize(image, (target_h, target_w), interp), geometry
        new_h, new_w, top, left = self._placement(height, width)
        resized = _resize(image, (new_h, new_w), interp)
        if self.resize == "center_crop":
            return np.ascontiguousarray(resized[top:top + target_h, left:left + target_w]), geometry
        fitted = np.full((target_h, target_w, 3), self.pad_value, dtype=np.uint8)  # letterbox
        fitted[top:top + new_h, left:left + new_w] = resized
        return fitted, geometry

    def geometry(self, height: int, width: int) -> Geometry:
        """Where an image of ``height`` x ``width`` lands in the model input (what :meth:`fit` returns),
        without touching pixels."""
        if self.resize == "stretch":
            return Geometry.stretch((height, width), self.size)
        new_h, new_w, top, left = self._placement(height, width)
        offset = (-top, -left) if self.resize == "center_crop" else (top, left)
        return Geometry((height, width), self.size, (new_h / height, new_w / width), offset)

    def _placement(self, height: int, width: int) -> tuple[int, int, int, int]:
        """Centre crop / letterbox: the resized image's size and where the input window sits in it
        (crop) or it sits in the input (letterbox), as (new_h, new_w, top, left)."""
        target_h, target_w = self.size
        if self.resize == "center_crop":
            scale = max(target_h / height, target_w / width) / self.crop_fraction
            new_h, new_w = max(target_h, round(height * scale)), max(target_w, round(width * scale))
            return new_h, new_w, (new_h - target_h) // 2, (new_w - target_w) // 2
        scale = min(target_h / height, target_w / width)
        new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
        return new_h, new_w, (target_h - new_h) // 2, (target_w - new_w) // 2

    def normalize(self, fitted: np.ndarray) -> np.ndarray:
        """The numeric step: colour order, (x - mean) / std, layout; no batch axis."""
        pixels = fitted[:, :, ::-1] if self.color == "BGR" else fitted
        tensor = (pixels.astype(np.float32) - np.float32(self.mean)) / np.float32(self.std)
        if self.layout == "NCHW":
            tensor = tensor.transpose(2, 0, 1)
        return np.ascontiguousarray(tensor, dtype=np.float32)

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, Geometry]:
        """Full numpy preprocessing of one RGB uint8 image: model tensor (no batch axis) and geometry."""
        fitted, geometry = self.fit(image)
        return self.normalize(fitted), geometry

    # ----- embedded path -------------------------------------------------------------------------
    @property
    def embeds_resize(self) -> bool:
        """Whether :meth:`embed` puts the resize in the graph: only ``stretch`` with linear or cubic.

        OpenVINO's nearest-neighbour resize picks different source pixels than OpenCV's, and
        crop windows depend on each image's size, so those stay on the host.
        """
        return self.resize == "stretch" and self.interpolation in ("linear", "cubic")

    def embed(self, model: "Any") -> "Any":
        """A copy of ``model`` whose input takes uint8 RGB NHWC pixels (``model`` is not changed).

        The graph does the colour order, mean/std and layout, and (see :attr:`embeds_resize`) the
        resize from any input size; otherwise the host still runs :meth:`fit` and the embedded
        input has the model's ``size``.
        """
        import openvino as ov
        from openvino.preprocess import ColorFormat, PrePostProcessor, ResizeAlgorithm

        if len(model.inputs) != 1:
            raise PreprocessError(f"embedding needs a single-input model, this one has {len(model.inputs)}")
        ppp = PrePostProcessor(model.clone())
        stage = ppp.input()
        stage.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(
            ColorFormat.RGB)
        stage.model().set_layout(ov.Layout(self.layout))
        steps = stage.preprocess()
        if self.embeds_resize:
            stage.tensor().set_spatial_dynamic_shape()
            steps.resize(ResizeAlgorithm.RESIZE_CUBIC if self.interpolation == "cubic"
                         else ResizeAlgorithm.RESIZE_LINEAR)
        if self.color == "BGR":
            steps.convert_color(ColorFormat.BGR)
        steps.convert_element_type(ov.Type.f32)
        steps.mean(list(self.mean)).scale(list(self.std))
        built = ppp.build()
        built.set_rt_info(json.dumps(self.to_dict()), RT_INFO_KEY)
        built.set_rt_info("true", RT_INFO_EMBEDDED_KEY)
        return built

    def embedded_input(self, image: np.ndarray) -> tuple[np.ndarray, Geometry]:
        """Host-side input for an embedded model: uint8 RGB (H, W, 3), fitted unless the graph resizes."""
        _check_image(image)
        if self.embeds_resize:
            return np.ascontiguousarray(image), Geometry.stretch(image.shape[:2], self.size)
        return self.fit(image)


#: A custom preprocessing function: RGB uint8 (H, W, 3) -> model tensor, optionally with its Geometry.
PreprocessFn = Callable[[np.ndarray], Union[np.ndarray, "tuple[np.ndarray, Geometry]"]]


def read_spec_from_model(model: Any) -> tuple[PreprocessSpec | None, bool]:
    """The spec an IR carries in its rt_info (if any) and whether it is embedded in the graph."""
    if not model.has_rt_info(RT_INFO_KEY):
        return None, False
    spec = PreprocessSpec.from_dict(json.loads(rt_info_str(model.get_rt_info(RT_INFO_KEY))), source="model rt_info")
    embedded = model.has_rt_info(RT_INFO_EMBEDDED_KEY) and rt_info_str(
        model.get_rt_info(RT_INFO_EMBEDDED_KEY)).lower() == "true"
    return spec, embedded


def rt_info_str(value: Any) -> str:
    """An rt_info value as text."""
    # OVAny across OpenVINO 2024.4 .. 2026.x: astype(str) is the portable accessor.
    return value.astype(str) if hasattr(value, "astype") else str(value)


def load_preprocess_function(reference: str) -> PreprocessFn:
    """Import ``package.module:function`` or ``path/to/file.py:function`` and check it is callable."""
    import importlib

    module_name, sep, attribute = reference.rpartition(":")
    if not sep or not module_name or not attribute:
        raise PreprocessError(f"{reference!r}: expected 'package.module:function', 'path/to/file.py:function' "
                              "or a path to a spec .json")
    if module_name.endswith(".py") or "/" in module_name or os.sep in module_name:
        module = _module_from_file(reference, Path(module_name))
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise PreprocessError(f"{reference!r}: cannot import module {module_name!r} ({exc}); if it is a file "
                                  f"here, write ./{module_name.replace('.', '/')}.py:{attribute} or add its folder "
                                  "to PYTHONPATH") from None
        except Exception as exc:  # the user's module failed while importing
            raise PreprocessError(f"{reference!r}: importing {module_name!r} failed "
                                  f"({type(exc).__name__}: {exc})") from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise PreprocessError(f"{reference!r}: {module_name} has no callable named {attribute!r}")
    return function


def _module_from_file(reference: str, path: Path) -> Any:
    """Load a preprocessing module from a .py file (it need not be on the import path)."""
    import importlib.util

    if not path.is_file():
        raise PreprocessError(f"{reference!r}: {path}: file not found")
    spec = importlib.util.spec_from_file_location(f"ov_explain_user_preprocess_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise PreprocessError(f"{reference!r}: {path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # a syntax error or an exception in the user's file
        raise PreprocessError(f"{reference!r}: loading {path} failed ({type(exc).__name__}: {exc})") from None
    return module


def run_custom(function: PreprocessFn, image: np.ndarray, input_size: tuple[int, int] | None
               ) -> tuple[np.ndarray, Geometry]:
    """Call a user preprocessing function and normalise its result to (tensor without batch, geometry)."""
    result = function(image)
    tensor, geometry = result if isinstance(result, tuple) else (result, None)
    tensor = np.asarray(tensor)
    if tensor.ndim == 4 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.ndim != 3:
        raise PreprocessError(f"custom preprocessing returned shape {tensor.shape}, expected (C, H, W) or (H, W, C)")
    if geometry is None:
        spatial = input_size or _guess_spatial(tensor.shape)
        geometry = Geometry.stretch(image.shape[:2], spatial)
    return np.ascontiguousarray(tensor, dtype=np.float32), geometry


def _guess_spatial(shape: Sequence[int]) -> tuple[int, int]:
    return (shape[1], shape[2]) if shape[0] in (1, 3) else (shape[0], shape[1])


def _resize(image: np.ndarray, size_hw: tuple[int, int], interp: int) -> np.ndarray:
    height, width = size_hw
    if image.shape[:2] == (height, width):
        return image.copy()
    return cv2.resize(image, (width, height), interpolation=interp)


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise PreprocessError(f"expected an RGB uint8 image of shape (H, W, 3), got {dtype} {shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise PreprocessError(f"image has no pixels: shape {image.shape}")


def _parse_size(size: Any) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    try:
        height, width = (int(v) for v in size)
        valid = all(float(v) == int(v) for v in size)
    except (TypeError, ValueError):
        raise PreprocessError(f"size must be an int or [H, W], got {size!r}") from None
    if not valid or height < 1 or width < 1:
        raise PreprocessError(f"size must be positive integers, got {size!r}")
    return height, width


def _triple(name: str, value: Any) -> tuple[float, float, float]:
    values = [value] * 3 if isinstance(value, (int, float)) else list(value)
    try:
        floats = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise PreprocessError(f"{name} must be a number or 3 numbers, got {value!r}") from None
    if len(floats) != 3 or not all(math.isfinite(v) for v in floats):
        raise PreprocessError(f"{name} must be a number or 3 finite numbers, got {value!r}")
    return floats  # type: ignore[return-value]


def canonical_interpolation(value: Any) -> str:
    """The short name (``linear``, ``cubic``, ...) for an interpolation in any accepted spelling:
    our names, timm / torchvision / PIL names (``bicubic``, ``InterpolationMode.BILINEAR``,
    ``Image.BICUBIC``, case-insensitive) or PIL's integer codes 0..4."""
    accepted = (f"{list(INTERPOLATIONS)}, an alias ({', '.join(INTERPOLATION_ALIASES)}, PIL / torchvision "
                "names such as 'Image.BICUBIC') or a PIL code 0-4")
    name: Any = None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        name = PIL_INTERPOLATION_CODES.get(int(value), "hamming" if int(value) == 5 else None)
    elif isinstance(value, str):
        name = value.strip().rsplit(".", 1)[-1].lower()
        name = INTERPOLATION_ALIASES.get(name, name)
    if name in INTERPOLATIONS:
        return name
    if name == "hamming":
        raise PreprocessError(f"interpolation {value!r} is PIL's HAMMING filter, which OpenCV has no equivalent "
                              f"of; accepted: {accepted}")
    raise PreprocessError(f"interpolation must be one of {accepted}, got {value!r}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise PreprocessError(f"{name} must be one of {list(choices)}, got {value!r}")
