"""Pure rendering functions: normalise, resize, colour-map, overlay, RGBA colourisation, PNG bytes.

None of them modifies its inputs; all return new arrays. Images are RGB uint8 (H, W, 3).
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

logger = logging.getLogger(__name__)

COLORMAPS = {
    "jet": cv2.COLORMAP_JET, "turbo": cv2.COLORMAP_TURBO, "viridis": cv2.COLORMAP_VIRIDIS,
    "inferno": cv2.COLORMAP_INFERNO, "magma": cv2.COLORMAP_MAGMA, "plasma": cv2.COLORMAP_PLASMA,
    "hot": cv2.COLORMAP_HOT, "bone": cv2.COLORMAP_BONE, "parula": cv2.COLORMAP_PARULA,
}


def normalize(saliency: np.ndarray, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Scale a map to [0, 1]: per-map min-max, or a fixed ``(low, high)`` to compare maps fairly.

    A constant map becomes all zeros; NaN becomes 0.
    """
    values = np.asarray(saliency, dtype=np.float32)
    if np.isnan(values).any():
        values = np.nan_to_num(values, nan=0.0)
    low, high = (float(values.min()), float(values.max())) if value_range is None else map(float, value_range)
    if not high > low:
        return np.zeros_like(values)
    scaled = (values - low) * np.float32(1.0 / (high - low))  # a new array: the input is never touched
    return np.clip(scaled, 0.0, 1.0, out=scaled)


def resize(saliency: np.ndarray, size: tuple[int, int], interpolation: str = "linear") -> np.ndarray:
    """Resize a 2-D map to ``size`` = (H, W)."""
    flags = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST}
    if interpolation not in flags:
        raise ValueError(f"interpolation must be one of {list(flags)}, got {interpolation!r}")
    height, width = size
    return cv2.resize(np.asarray(saliency, dtype=np.float32), (width, height), interpolation=flags[interpolation])


def colorize(saliency: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """An RGB uint8 picture of a map (normalised first): JET by default, others by name."""
    return _apply_colormap(normalize(saliency), colormap)


def _apply_colormap(levels: np.ndarray, colormap: str, *, bgr: bool = False) -> np.ndarray:
    """RGB (or BGR) uint8 from values already in [0, 1]."""
    if colormap not in COLORMAPS:
        raise ValueError(f"unknown colormap {colormap!r}; known: {', '.join(COLORMAPS)}")
    # float [0, 1] -> 0..255, rounding half to even and saturating like np.round; uint8 is used as is
    indices = levels if levels.dtype == np.uint8 else cv2.convertScaleAbs(levels, alpha=255.0)
    coloured = cv2.applyColorMap(indices, COLORMAPS[colormap])
    return coloured if bgr else cv2.cvtColor(coloured, cv2.COLOR_BGR2RGB)


def overlay(image: np.ndarray, saliency: np.ndarray, *, weight: float = 0.5, colormap: str = "jet",
            value_range: tuple[float, float] | None = None) -> np.ndarray:
    """The image blended with the coloured map (resized to the image): ``weight`` is the map's share."""
    image = _check_rgb(image)
    levels = normalize(saliency, value_range)
    if levels.shape != image.shape[:2]:
        levels = resize(levels, image.shape[:2])
    return blend_levels(image, levels, weight=weight, colormap=colormap)


def blend_levels(image: np.ndarray, levels: np.ndarray, *, weight: float = 0.5, colormap: str = "jet",
                 bgr: bool = False) -> np.ndarray:
    """Blend a map already normalised (float in [0, 1], or uint8 0..255) and of the image's size.

    ``bgr``: the image is BGR (and so is the result).

    The fast path of :func:`overlay` for callers that hold normalised maps (dataset audits).
    """
    image = _check_rgb(image)
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    if levels.shape != image.shape[:2]:
        raise ValueError(f"levels of shape {levels.shape} for an image of shape {image.shape[:2]}")
    coloured = _apply_colormap(levels, colormap, bgr=bgr)
    # One saturating pass in OpenCV (rounds like np.round), ~20x faster than float arrays in numpy.
    return cv2.addWeighted(image, 1.0 - weight, coloured, weight, 0.0)


def colorize_rgba(saliency: np.ndarray, *, colormap: str = "jet", fade_below: float = 0.1,
                  max_alpha: float = 0.8) -> np.ndarray:
    """RGBA uint8 (H, W, 4): colour from the map, alpha growing with activation so low values fade out.

    Alpha is 0 at or below ``fade_below`` (normalised), rising linearly to ``max_alpha`` at 1.
    """
    levels = normalize(saliency)
    rgb = _apply_colormap(levels, colormap)
    alpha = np.clip((levels - fade_below) / max(1e-6, 1.0 - fade_below), 0.0, 1.0) * max_alpha
    return np.dstack([rgb, np.round(alpha * 255).astype(np.uint8)])


def frame_levels(saliency: np.ndarray, box: tuple[float, float, float, float] | None,
                 image_size: tuple[int, int], *, min_side: int = 32) -> np.ndarray:
    """A map at its own resolution laid over the whole image: uint8 levels (H', W'), 0 outside ``box``.

    ``box`` is where the map lies on the image, in its pixels (``(left, top, right, bottom)``, see
    :meth:`ov_explain.core.preprocess.Geometry.input_box`; None: the whole image). Viewers stretch a map
    over its image, so a map of a centre crop must carry the cropped-away margins to sit on the right
    pixels. Each output pixel takes the min-max normalised level of the map cell under its centre
    (no interpolation: the values are the map's); cells are repeated ``k`` times, the least ``k`` that
    makes the map's short side at least ``min_side``, so the crop edges land within a fraction of a cell.
    """
    raw = np.asarray(saliency, dtype=np.float32)
    if raw.ndim != 2:
        raise ValueError(f"expected a 2-D map (H, W), got shape {raw.shape}")
    height, width = (int(v) for v in image_size)
    left, top, right, bottom = (0.0, 0.0, float(width), float(height)) if box is None else map(float, box)
    if not (right > left and bottom > top and height > 0 and width > 0):
        raise ValueError(f"box {box} on an image of {image_size}: expected left < right, top < bottom")
    rows, cols = raw.shape
    per_pixel_y, per_pixel_x = rows / (bottom - top), cols / (right - left)  # map cells per image pixel
    repeat = max(1, -(-min_side // min(rows, cols)))
    out_h = min(height, max(1, round(height * per_pixel_y * repeat)))
    out_w = min(width, max(1, round(width * per_pixel_x * repeat)))
    cell_y = np.floor(((np.arange(out_h) + 0.5) * (height / out_h) - top) * per_pixel_y).astype(np.int64)
    cell_x = np.floor(((np.arange(out_w) + 0.5) * (width / out_w) - left) * per_pixel_x).astype(np.int64)
    inside_y, inside_x = (cell_y >= 0) & (cell_y < rows), (cell_x >= 0) & (cell_x < cols)
    levels = cv2.convertScaleAbs(normalize(raw), alpha=255.0)
    framed = np.zeros((out_h, out_w), np.uint8)
    framed[np.ix_(inside_y, inside_x)] = levels[np.ix_(cell_y[inside_y], cell_x[inside_x])]
    return framed


def draw_box(picture: np.ndarray, box: tuple[float, float, float, float], label: str, *,
             color: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """A copy of ``picture`` (uint8, H x W x 3) with ``box`` (x1, y1, x2, y2 in its pixels) outlined and
    ``label`` written on a dark band above it (below its top edge when there is no room)."""
    out = np.ascontiguousarray(picture).copy()
    height, width = out.shape[:2]
    thickness = max(1, round(min(height, width) / 250))
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    cv2.rectangle(out, (x1, y1), (x2, y2), (0, 0, 0), thickness + 2)
    cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness)
    scale = max(0.4, min(height, width) / 800)
    (text_w, text_h), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    top = y1 - text_h - base - 2 if y1 - text_h - base - 2 >= 0 else y1 + thickness
    cv2.rectangle(out, (x1, top), (min(width - 1, x1 + text_w + 4), top + text_h + base + 2), (0, 0, 0), -1)
    cv2.putText(out, label, (x1 + 2, top + text_h + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, color, thickness,
                cv2.LINE_AA)
    return out


def rgba_png(levels: np.ndarray, colormap: str = "jet") -> bytes:
    """PNG bytes of :func:`colorize_rgba` for uint8 levels (0..255): the audit's ``.rgba.png`` and the
    exported maps (transparent where the level is 0)."""
    return encode_png(colorize_rgba(np.asarray(levels, np.float32) / 255.0, colormap=colormap))


def encode_png(picture: np.ndarray) -> bytes:
    """PNG bytes of an RGB (H, W, 3), RGBA (H, W, 4) or grey (H, W) uint8 array, in memory."""
    picture = np.asarray(picture)
    if picture.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {picture.dtype}")
    if picture.ndim == 3 and picture.shape[2] == 3:
        bgr = cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)
    elif picture.ndim == 3 and picture.shape[2] == 4:
        bgr = cv2.cvtColor(picture, cv2.COLOR_RGBA2BGRA)
    elif picture.ndim == 2:
        bgr = picture
    else:
        raise ValueError(f"expected (H, W), (H, W, 3) or (H, W, 4), got {picture.shape}")
    ok, data = cv2.imencode(".png", bgr)
    if not ok:
        raise ValueError("PNG encoding failed")
    return data.tobytes()


def encode_jpeg(picture: np.ndarray, quality: int = 92, *, bgr: bool = False) -> bytes:
    """JPEG bytes of an RGB (or, with ``bgr``, BGR) uint8 array."""
    picture = _check_rgb(picture)
    ok, data = cv2.imencode(".jpg", picture if bgr else cv2.cvtColor(picture, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


def _check_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
    return image
