"""Image loading: any common file kind becomes an upright RGB uint8 array, or a clear ImageReadError."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from ov_explain.core.errors import ImageReadError, one_line

logger = logging.getLogger(__name__)

#: Images with more pixels than this are refused (a 16k x 12k photo is ~200 MP); override per call.
DEFAULT_MAX_PIXELS = 200_000_000

_JPEG_MAGIC = b"\xff\xd8\xff"
#: A JPEG marker: FF then a code that is not stuffing (FF 00), fill (FF FF) or a restart (FF D0-D7).
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xff\xd0-\xd7]")


#: What a folder of images is read for (``explain photos/``, datasets): the suffixes OpenCV decodes.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})


def is_image_file(path: Path) -> bool:
    """A file named as an image this tool reads (hidden files are not)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def expand_images(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[Path]]:
    """(images, skipped): each folder in ``paths`` replaced by its image files (sorted, not recursive) and
    what else it holds (``skipped``); files named on their own are kept, whatever their names, so that a bad
    one is reported as a read error."""
    images: list[Path] = []
    skipped: list[Path] = []
    for entry in map(Path, paths):
        if entry.is_dir():
            for child in sorted(entry.iterdir()):
                if child.is_file() and is_image_file(child):
                    images.append(child)
                elif not child.name.startswith("."):
                    skipped.append(child)
        else:
            images.append(entry)
    return images, skipped


def read_image(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as an upright (EXIF-rotated) RGB uint8 array of shape (H, W, 3).

    Greyscale is replicated to three channels, alpha is composited over white, 16-bit and float
    images are scaled to 8 bits, CMYK JPEGs are converted by the decoder.
    """
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():  # a FIFO or device would block or never end
        raise ImageReadError(f"{path}: not a regular file (a pipe or device), expected an image file")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ImageReadError(f"{path}: is a directory, expected an image file") from None
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return decode_image(data.tobytes(), source=str(path), max_pixels=max_pixels)


#: cv2's reduced-size JPEG decoding, by factor.
_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


def read_bgr_at_least(path: str | os.PathLike, longest_side: int, size: tuple[int, int] | None) -> np.ndarray | None:
    """A picture of ours (an overlay: BGR, never rotated) for a thumbnail, or None if it cannot be read; decoded
    at 1/8, 1/4 or 1/2 scale where its ``size`` (height, width) says that still leaves ``longest_side`` pixels:
    libjpeg scales while decoding, in a fraction of the time of a whole decode and a bigger shrink."""
    if not os.path.isfile(path):  # OpenCV would print its own warning on stderr for a file that is gone
        return None
    flag = cv2.IMREAD_COLOR
    if size is not None:
        flag = next((f for factor, f in _REDUCED if max(size) // factor >= longest_side), cv2.IMREAD_COLOR)
    return cv2.imread(str(path), flag)


def decode_image(data: bytes, *, source: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, TIFF, WebP, BMP, ...) like :func:`read_image`."""
    if not data:
        raise ImageReadError(f"{source}: empty file, expected an image")
    buffer = np.frombuffer(data, dtype=np.uint8)
    # JPEG carries EXIF orientation and never alpha: decode it upright. Other formats keep alpha
    # and bit depth (IMREAD_UNCHANGED), which skips EXIF orientation; they rarely carry it.
    is_jpeg = data[:3] == _JPEG_MAGIC
    if is_jpeg and not _jpeg_has_end(data):
        # libjpeg decodes a cut-off file into a half-grey picture with only a stderr warning.
        raise ImageReadError(f"{source}: truncated JPEG (no end-of-image marker)")
    flags = cv2.IMREAD_COLOR if is_jpeg else cv2.IMREAD_UNCHANGED
    try:
        decoded = cv2.imdecode(buffer, flags)
    except cv2.error as exc:
        # OpenCV refuses images above its own pixel limit with an exception rather than None.
        raise ImageReadError(f"{source}: cannot decode ({one_line(exc)})") from None
    if decoded is None:
        raise ImageReadError(f"{source}: not a readable image (corrupt, truncated or unsupported format)")
    height, width = decoded.shape[:2]
    if height * width > max_pixels:
        raise ImageReadError(
            f"{source}: image is {width}x{height} = {height * width / 1e6:.0f} MP, "
            f"larger than the limit of {max_pixels / 1e6:.0f} MP (raise max_pixels to allow it)"
        )
    return _to_rgb_uint8(decoded, source)


def _jpeg_has_end(data: bytes) -> bool:
    """Whether the JPEG's marker structure reaches its end-of-image marker (FF D9).

    Walks from the start: each marker segment is skipped by its length (so a thumbnail's FF D9
    inside EXIF does not count), and after a scan header the entropy-coded data is searched for the
    next marker (the several scans of a progressive JPEG included). Whatever follows the first end
    of image (Motion Photo video, maker trailers, appended thumbnails) is never looked at.
    """
    position = 2  # after SOI
    while marker := _JPEG_MARKER.search(data, position):
        code = data[marker.start() + 1]
        if code == 0xD9:
            return True
        position = marker.end()
        if code not in (0x01, 0xD8):  # every other marker starts a segment with a 2-byte length
            position += int.from_bytes(data[position:position + 2], "big")
    return False


def _to_rgb_uint8(decoded: np.ndarray, source: str) -> np.ndarray:
    image = _to_uint8(decoded, source)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 2:  # grey + alpha
        grey = _composite_over_white(image[:, :, :1].astype(np.float32), image[:, :, 1])
        return cv2.cvtColor(grey[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if channels == 4:
        rgb = _composite_over_white(image[:, :, 2::-1].astype(np.float32), image[:, :, 3])
        return np.ascontiguousarray(rgb)
    raise ImageReadError(f"{source}: {channels} channels, expected 1 (grey), 3 (colour) or 4 (with alpha)")


def _to_uint8(image: np.ndarray, source: str) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return np.round(image.astype(np.float32) / 257.0).astype(np.uint8)
    if image.dtype in (np.float32, np.float64):
        if not np.all(np.isfinite(image)):
            raise ImageReadError(f"{source}: floating-point image contains NaN or infinity")
        return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    raise ImageReadError(f"{source}: pixel type {image.dtype} not supported, expected 8/16-bit or float")


def _composite_over_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    weight = (alpha.astype(np.float32) / 255.0)[:, :, None]
    blended = colour * weight + 255.0 * (1.0 - weight)
    return np.round(blended).astype(np.uint8)
