"""Explanation results, target selection and the small base every method builds on."""

from __future__ import annotations

import logging
from dataclasses import InitVar, dataclass, field
from typing import Any, Callable, Sequence, Union

import cv2
import numpy as np

from ov_explain import render
from ov_explain.core.errors import OvExplainError
from ov_explain.core.labels import resolve_class
from ov_explain.core.model import Prediction
from ov_explain.core.preprocess import Geometry

logger = logging.getLogger(__name__)

MODES = ("auto", "whitebox", "blackbox")
Targets = Union[str, int, Sequence[Union[int, str]]]


class ExplainError(OvExplainError):
    """An explanation request that cannot be served (bad targets, options or method)."""


class WhiteboxUnsupportedError(ExplainError):
    """The model's graph has no place for a white-box method (the only error ``mode='auto'`` falls back on)."""


Projector = Callable[[np.ndarray], np.ndarray]


@dataclass
class SaliencyMap:
    """One map: ``raw`` at the method's own resolution, ``on_image`` on the original image's pixels.

    ``target`` is a class index, or None for a class-agnostic map (ActivationMap). ``image`` is the
    map on the original image, or the function that puts a raw-resolution array there: then
    ``on_image`` is computed on first use, and :meth:`levels_on_image` normalises at raw resolution
    before projecting (an audit renders thousands of maps; this is what keeps it cheap).
    """

    target: int | None
    name: str | None
    probability: float | None
    raw: np.ndarray = field(repr=False)
    image: InitVar[np.ndarray | Projector]
    #: The class score this map reads ("logit" / "probability"; None: none or not recorded). It differs from
    #: the explanation's where a degenerate probability map fell back to the logit read-out (CAM).
    readout: str | None = None
    #: The explained detection's box (x1, y1, x2, y2 on the original image) for a detector's map; else None.
    box: tuple[float, float, float, float] | None = None

    def __post_init__(self, image: np.ndarray | Projector) -> None:
        self.raw = np.asarray(self.raw, dtype=np.float32)
        if self.raw.ndim != 2:
            raise ValueError(f"raw: expected a 2-D map (H, W), got shape {self.raw.shape}")
        self._project: Projector | None = image if callable(image) else None
        self._on_image: np.ndarray | None = None if callable(image) else self._check(image)

    @staticmethod
    def _check(array: np.ndarray) -> np.ndarray:
        array = np.asarray(array, dtype=np.float32)
        if array.ndim != 2:
            raise ValueError(f"on_image: expected a 2-D map (H, W), got shape {array.shape}")
        return array

    @property
    def on_image(self) -> np.ndarray:
        if self._on_image is None:
            self._on_image = self._check(self._project(self.raw))
        return self._on_image

    @property
    def materialised(self) -> bool:
        return self._on_image is not None

    def levels_on_image(self, *, as_uint8: bool = False) -> np.ndarray:
        """The map on the original image, min-max normalised to [0, 1] (0 where the model saw nothing).

        ``as_uint8`` gives 0..255 instead: projected at a quarter of the memory traffic, which is
        what an overlay needs anyway.
        """
        if self._project is None or self._on_image is not None:
            levels = render.normalize(self.on_image)
            return cv2.convertScaleAbs(levels, alpha=255.0) if as_uint8 else levels
        levels = render.normalize(self.raw)
        return self._project(cv2.convertScaleAbs(levels, alpha=255.0) if as_uint8 else levels)

    @property
    def label(self) -> str:
        if self.target is None:
            return "all_classes"
        return self.name if self.name is not None else str(self.target)


@dataclass
class Explanation:
    """Maps for one image plus where they came from: method, mode, layer, device, precision, inferences, time."""

    source: str
    image_size: tuple[int, int]
    prediction: Prediction
    maps: list[SaliencyMap]
    method: str
    mode: str
    device: str
    target_layer: str | None = None
    backend: str = "native"
    inferences: int = 0
    timings_ms: dict[str, float] = field(default_factory=dict)
    geometry: Geometry | None = field(default=None, repr=False)
    precision: str = "unknown"  # the working precision the maps were computed in (f32, bf16, f16)
    readout: str | None = None  # white-box class scores read as "logit" or "probability" (None: no class score)
    images_inferred: int = 1  # images the model scored for this explanation (black-box: the perturbed copies)

    def __post_init__(self) -> None:
        if self.mode not in ("whitebox", "blackbox"):
            raise ValueError(f"mode: expected 'whitebox' or 'blackbox', got {self.mode!r}")
        for saliency in self.maps:
            if saliency.materialised and saliency.on_image.shape != tuple(self.image_size):
                raise ValueError(f"map for {saliency.label}: on_image shape {saliency.on_image.shape} does not "
                                 f"match the image size {tuple(self.image_size)}")

    @property
    def map_box(self) -> tuple[float, float, float, float] | None:
        """Where the raw maps lie on the original image (see :meth:`Geometry.input_box`); None if unknown."""
        return self.geometry.input_box() if self.geometry is not None else None

    def map_for(self, target: int | str) -> SaliencyMap:
        for saliency in self.maps:
            if saliency.target == target or (saliency.name is not None and saliency.name == target):
                return saliency
        raise KeyError(f"no map for {target!r}; maps: {[m.label for m in self.maps]}")

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "image_size": list(self.image_size), "method": self.method,
                "mode": self.mode, "backend": self.backend, "target_layer": self.target_layer,
                "device": self.device, "precision": self.precision, "readout": self.readout,
                "inferences": self.inferences, "images_inferred": self.images_inferred,
                "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
                "prediction": self.prediction.to_dict(),
                "maps": [{"target": m.target, "name": m.name,
                          "probability": None if m.probability is None else round(m.probability, 6),
                          "raw_shape": list(m.raw.shape), "readout": m.readout} for m in self.maps]}


def select_targets(targets: Targets, probabilities: np.ndarray, names: Sequence[str] | None, *,
                   top_k: int = 3, threshold: float = 0.1) -> list[int]:
    """Class indices to explain.

    ``"predicted"``: the top class plus others with probability >= ``threshold``, at most ``top_k``;
    ``"all"``: every class; an index, a name, or a list of them: exactly those (unknown names list
    close matches).
    """
    num_classes = probabilities.shape[-1]
    if isinstance(targets, str) and targets in ("predicted", "all"):
        if targets == "all":
            return list(range(num_classes))
        order = np.argsort(-probabilities, kind="stable")[:max(1, top_k)]
        return [int(order[0])] + [int(i) for i in order[1:] if probabilities[i] >= threshold]
    items = [targets] if isinstance(targets, (str, int, np.integer)) else list(targets)
    if not items:
        raise ExplainError("targets: empty list; give class indices, names, 'predicted' or 'all'")
    resolved: list[int] = []
    for item in items:
        index = resolve_class(int(item) if isinstance(item, np.integer) else item, names, num_classes)
        if index not in resolved:
            resolved.append(index)
    return resolved


def choose_targets(targets: Any, prediction: Prediction, names: Sequence[str] | None, *, top_k: int = 3,
                   threshold: float = 0.1) -> list[int]:
    """The classes to explain for one prediction: :func:`select_targets`'s choices, or a function of
    the :class:`Prediction` returning class indices."""
    if callable(targets):
        chosen = [int(c) for c in targets(prediction)]
        if not chosen:
            raise ExplainError("the target function chose no class")
        return chosen
    return select_targets(targets, prediction.probabilities, names, top_k=top_k, threshold=threshold)


def to_original(raw: np.ndarray, input_size: tuple[int, int], geometry: Geometry) -> np.ndarray:
    """Resize a map from method resolution to the model input, then undo crop/letterbox."""
    height, width = input_size
    source = raw if raw.dtype == np.uint8 else raw.astype(np.float32, copy=False)  # uint8 levels stay uint8
    resized = source if raw.shape == (height, width) else cv2.resize(source, (width, height),
                                                                      interpolation=cv2.INTER_LINEAR)
    return geometry.input_to_original(resized, fill=float(np.min(raw)))


def as_image_list(images: Any) -> tuple[list, bool]:
    """One image (a path or an array) or many, as a list, and whether it was a single one."""
    single = isinstance(images, (str, np.ndarray)) or hasattr(images, "__fspath__")
    return ([images] if single else list(images)), single


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ExplainError(f"mode must be one of {list(MODES)}, got {mode!r}")
    return mode
