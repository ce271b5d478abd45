"""Writing an explanation's files: the overlay JPEG, and optionally the raw map (.npy) and an RGBA
heat map (.rgba.png), each atomically (a temp file renamed into place), for ``explain`` and ``audit``.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ov_explain import render
from ov_explain.core.storage import atomic_write_bytes
from ov_explain.explain.base import SaliencyMap

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MapStyle:
    """How maps are drawn and which files are written besides the overlay."""

    colormap: str = "jet"
    overlay_weight: float = 0.5
    jpeg_quality: int = 90
    save_raw: bool = False
    save_rgba: bool = False

    def __post_init__(self) -> None:
        if self.colormap not in render.COLORMAPS:
            raise ValueError(f"colormap: unknown {self.colormap!r}; known: {', '.join(render.COLORMAPS)}")
        if not 0.0 <= self.overlay_weight <= 1.0:
            raise ValueError(f"overlay_weight: expected 0..1, got {self.overlay_weight}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality: expected 1..100, got {self.jpeg_quality}")


@dataclass(frozen=True)
class MapFiles:
    """The files written for one map, as paths relative to the folder they were written into."""

    overlay: str
    raw: str | None = None
    rgba: str | None = None
    on_image: str | None = None  # a detector's map on the original image's pixels (with ``raw``)


def to_bgr(pixels: np.ndarray) -> np.ndarray:
    """Once per image: colour maps and the JPEG encoder work in BGR."""
    return cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)


def npy_bytes(raw: np.ndarray) -> bytes:
    """A raw map as the bytes of a float32 ``.npy`` file."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(raw, dtype=np.float32))
    return buffer.getvalue()


#: Ground-truth boxes are drawn green, detections white.
TRUTH_COLOUR = (0, 200, 0)


def write_map_files(root: Path, name: str, bgr: np.ndarray, saliency: SaliencyMap, style: MapStyle, *,
                    truth: tuple[tuple[float, float, float, float], str] | None = None,
                    keep_on_image: bool = True, draw_target_box: bool = True) -> MapFiles:
    """Render ``saliency`` over the BGR image and write ``root/name.jpg`` (+ ``.npy``, ``.rgba.png``).

    ``name`` may include a sub-folder (``Case/stem...``), which must exist. A detector's map (``saliency.box``)
    has its box and label drawn (unless ``draw_target_box`` is false), and ``truth`` (a ground-truth box and
    its label) beside it; ``keep_on_image``: its map on the image's pixels is saved too (``.image.npy``, with
    the raw map).
    """
    levels = saliency.levels_on_image(as_uint8=True)
    overlay = render.blend_levels(bgr, levels, weight=style.overlay_weight, colormap=style.colormap, bgr=True)
    if truth is not None:
        overlay = render.draw_box(overlay, truth[0], truth[1], color=TRUTH_COLOUR)
    boxed = saliency.box is not None
    if boxed and draw_target_box:
        overlay = render.draw_box(overlay, saliency.box, f"{saliency.label} {saliency.probability:.2f}")
    files = MapFiles(f"{name}.jpg", f"{name}.npy" if style.save_raw else None,
                     f"{name}.rgba.png" if style.save_rgba else None,
                     f"{name}.image.npy" if style.save_raw and boxed and keep_on_image else None)
    if files.on_image is not None:
        atomic_write_bytes(root / files.on_image, npy_bytes(saliency.on_image))
    atomic_write_bytes(root / files.overlay, render.encode_jpeg(overlay, style.jpeg_quality, bgr=True))
    if files.raw is not None:
        atomic_write_bytes(root / files.raw, npy_bytes(saliency.raw))
    if files.rgba is not None:
        atomic_write_bytes(root / files.rgba, render.rgba_png(levels, style.colormap))
    return files
