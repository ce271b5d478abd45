"""A prepared model input: the tensor one image becomes, and everything needed to use it.

Every method and the audit take this value instead of a bare array, so nothing guesses the layout
from the spec or from a tensor's shape again: an IR with embedded preprocessing takes uint8 RGB
pixels (H, W, 3), a plain IR a normalised float tensor in the spec's layout, and a perturbation
(black-box) replaces a pixel by :attr:`PreparedInput.fill`, the value that means "nothing here"
in that space (zero after normalisation, the spec's mean colour in pixels).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from ov_explain.core.preprocess import Geometry

logger = logging.getLogger(__name__)

#: Layouts of a prepared tensor (no batch axis).
TENSOR_LAYOUTS = ("CHW", "HWC")


@dataclass(frozen=True)
class PreparedInput:
    """One image as the compiled model takes it (no batch axis), and the way back to the image.

    ``layout`` is ``CHW`` or ``HWC``; ``fill`` is the per-channel value (in the tensor's channel
    order and units) that a masked-out pixel takes, zero by default; ``source`` names the image (a
    path or ``<array>``).
    """

    tensor: np.ndarray = field(repr=False)
    geometry: Geometry
    layout: str
    source: str
    fill: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.layout not in TENSOR_LAYOUTS:
            raise ValueError(f"layout: expected one of {list(TENSOR_LAYOUTS)}, got {self.layout!r}")
        if self.tensor.ndim != 3:
            raise ValueError(f"tensor: expected a 3-D {self.layout} array without batch axis, "
                             f"got shape {self.tensor.shape}")
        if self.fill is None:
            object.__setattr__(self, "fill", (0.0,) * self.channels)
        if len(self.fill) != self.channels:
            raise ValueError(f"fill: expected {self.channels} values (one per channel), got {len(self.fill)}")

    def __iter__(self) -> Iterator[Any]:
        """``tensor, geometry, source = classifier.prepare(image)``: the tuple ``prepare`` returned
        before it returned this value keeps working."""
        return iter((self.tensor, self.geometry, self.source))

    @property
    def channels(self) -> int:
        return int(self.tensor.shape[0] if self.layout == "CHW" else self.tensor.shape[2])

    @property
    def spatial_size(self) -> tuple[int, int]:
        """(H, W) of the tensor: the resolution black-box masks are drawn at."""
        shape = self.tensor.shape
        return (int(shape[1]), int(shape[2])) if self.layout == "CHW" else (int(shape[0]), int(shape[1]))

    @property
    def element_type(self) -> np.dtype:
        return self.tensor.dtype

    def _fill_array(self) -> np.ndarray:
        fill = np.asarray(self.fill, np.float32)
        return fill[:, None, None] if self.layout == "CHW" else fill[None, None, :]

    def masked(self, masks: np.ndarray) -> np.ndarray:
        """A float32 batch (N, ...) of this input kept where ``masks`` (N, H, W) is 1 and replaced by
        :attr:`fill` where it is 0: ``fill + (tensor - fill) * mask``."""
        masks = np.asarray(masks, np.float32)
        if masks.ndim != 3 or masks.shape[1:] != self.spatial_size:
            raise ValueError(f"masks: expected shape (N, {self.spatial_size[0]}, {self.spatial_size[1]}), "
                             f"got {masks.shape}")
        axes = masks[:, None, :, :] if self.layout == "CHW" else masks[:, :, :, None]
        if not any(self.fill):  # a normalised tensor: removing a pixel is multiplying it by zero
            return self.tensor.astype(np.float32, copy=False)[None] * axes
        fill = self._fill_array()
        return fill[None] + (self.tensor.astype(np.float32) - fill)[None] * axes

    def masked_pair(self, mask: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out[0]`` = kept where ``mask`` (H, W) is high, ``out[1]`` = kept where it is low (the
        preserve / delete pair AISE scores), written into a preallocated (2, ...) float32 array."""
        fill = self._fill_array()
        kernel = mask[None, :, :] if self.layout == "CHW" else mask[:, :, None]
        difference = self.tensor.astype(np.float32, copy=False) - fill
        np.multiply(difference, kernel, out=out[0])
        np.subtract(difference, out[0], out=out[1])
        if any(self.fill):
            out += fill[None]
        return out

    def as_float(self) -> "PreparedInput":
        """The same input as float32 (black-box batches are float even when the image is uint8)."""
        if self.tensor.dtype == np.float32:
            return self
        return PreparedInput(self.tensor.astype(np.float32), self.geometry, self.layout, self.source, self.fill)
