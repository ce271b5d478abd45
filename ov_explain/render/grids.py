"""Per-case picture grids (like the seed's ``show_use_case_image``), drawn with matplotlib off-screen."""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tile:
    """One picture of a grid and its title lines."""

    picture: np.ndarray  # RGB uint8
    title: str


def thumbnail(picture: np.ndarray, longest_side: int = 320) -> np.ndarray:
    """Shrink so the longest side is at most ``longest_side`` (never enlarges)."""
    height, width = picture.shape[:2]
    scale = longest_side / max(height, width)
    if scale >= 1:
        return picture
    return cv2.resize(picture, (max(1, round(width * scale)), max(1, round(height * scale))),
                      interpolation=cv2.INTER_AREA)


def grid_png(tiles: Sequence[Tile], title: str, *, columns: int = 4, tile_inches: float = 3.0) -> bytes:
    """A PNG of the tiles in a grid with their titles and a figure title."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state between threads

    if not tiles:
        raise ValueError("grid_png: no tiles")
    columns = max(1, min(columns, len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    figure = Figure(figsize=(columns * tile_inches, rows * (tile_inches + 0.5) + 0.6), layout="constrained")
    figure.suptitle(title, fontsize=13)
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    for axis, tile in zip(axes, tiles):
        axis.imshow(tile.picture)
        axis.set_title(tile.title, fontsize=8, wrap=True)
    for axis in axes:
        axis.axis("off")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()
