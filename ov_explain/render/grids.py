"""Per-case picture grids (like the seed's ``show_use_case_image``), drawn with OpenCV into one image."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from ov_explain.render.maps import encode_jpeg

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
    return shrink(picture, (max(1, round(width * scale)), max(1, round(height * scale))))


def shrink(picture: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The picture resized down to ``size`` (width, height) without aliasing: by a factor of two or less, a 3x3
    Gaussian blur then bilinear sampling (0.1 ms for a 300 px picture, where OpenCV's area resampling takes 0.45 ms
    at such uneven factors); further, area resampling (bilinear alone would skip pixels and shimmer)."""
    height, width = picture.shape[:2]
    if min(size[0] / width, size[1] / height) >= 0.5:
        return cv2.resize(cv2.GaussianBlur(picture, (3, 3), 0), size, interpolation=cv2.INTER_LINEAR)
    return cv2.resize(picture, size, interpolation=cv2.INTER_AREA)


#: A grid's cell: the picture fitted in a square of this many pixels, its title lines below.
CELL = 240
#: A grid's file ending: JPEG (quality 90), since a grid is photographs (overlays that are JPEGs already):
#: a 24-tile grid (1000 x 1930) as PNG was 2.4 MB and took 71 ms to encode, as JPEG 0.4 MB and 5 ms.
GRID_SUFFIX = ".jpg"
#: The endings grids had: ``.png`` until 0.3. A run removes a case's grid under them (never other files).
FORMER_GRID_SUFFIXES = (".png",)
GRID_JPEG_QUALITY = 90
_FONT, _LINE = cv2.FONT_HERSHEY_SIMPLEX, 15


def grid_jpeg(tiles: Sequence[Tile], title: str, *, columns: int = 4, cell: int = CELL) -> bytes:
    """A JPEG of the tiles in a grid, each with its title lines, under the grid's title: drawn with OpenCV into
    one array (a 24-tile grid in milliseconds; matplotlib's figure took about a second). Titles are drawn in
    OpenCV's Hershey font: characters outside ASCII show as ``?``."""
    if not tiles:
        raise ValueError("grid_jpeg: no tiles")
    columns = max(1, min(columns, len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    lines = max(len(t.title.splitlines()) for t in tiles)
    pad, head = 8, 34
    height_of = cell + lines * _LINE + pad
    canvas = np.full((head + rows * (height_of + pad), columns * (cell + pad) + pad, 3), 255, np.uint8)
    _text(canvas, title, (pad, 22), 0.6, 1)
    for n, tile in enumerate(tiles):
        top, left = head + (n // columns) * (height_of + pad), pad + (n % columns) * (cell + pad)
        picture = _fit(tile.picture, cell)
        y, x = top + cell - picture.shape[0], left + (cell - picture.shape[1]) // 2  # its foot on the titles
        canvas[y:y + picture.shape[0], x:x + picture.shape[1]] = picture
        for k, line in enumerate(tile.title.splitlines()):
            _text(canvas, _clip(line, cell), (left, top + cell + (k + 1) * _LINE - 3), 0.4, 1)
    return encode_jpeg(canvas, GRID_JPEG_QUALITY)


def _fit(picture: np.ndarray, side: int) -> np.ndarray:
    """The picture scaled so its longest side is ``side`` (enlarged too, so that small tiles stay visible)."""
    height, width = picture.shape[:2]
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return shrink(picture, size) if scale < 1 else cv2.resize(picture, size, interpolation=cv2.INTER_LINEAR)


def _ascii(text: str) -> str:
    return text.encode("ascii", "replace").decode("ascii")


def _clip(text: str, width: int, scale: float = 0.4) -> str:
    """The line shortened with an ellipsis to fit ``width`` pixels."""
    text = _ascii(text)
    while len(text) > 4 and cv2.getTextSize(text, _FONT, scale, 1)[0][0] > width:
        text = text[:-4] + "..."
    return text


def _text(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float, thickness: int) -> None:
    cv2.putText(canvas, _ascii(text), origin, _FONT, scale, (20, 20, 20), thickness, cv2.LINE_AA)
