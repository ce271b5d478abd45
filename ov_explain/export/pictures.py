"""The pictures an export writes for a map: its levels laid over its image, as grayscale or RGBA
(:func:`ov_explain.render.rgba_png`)."""

from __future__ import annotations

import numpy as np

from ov_explain import render
from ov_explain.export.items import ExportImage, ExportMap


def levels_of(image: ExportImage, item: ExportMap, *, min_side: int = 32) -> np.ndarray:
    """The map as uint8 levels laid over its whole image, at the map's own resolution (see
    :func:`ov_explain.render.frame_levels`)."""
    raw = item.load()
    size = image.image_size if image.image_size is not None else raw.shape
    return render.frame_levels(raw, item.box, size, min_side=min_side)


def heatmap_png(levels: np.ndarray) -> bytes:
    """An 8-bit grayscale PNG of the levels (FiftyOne's recommended heatmap file, range 0..255)."""
    return render.encode_png(np.ascontiguousarray(levels, dtype=np.uint8))
