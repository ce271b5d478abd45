"""Every common image kind becomes upright RGB uint8, or a one-line error naming the file."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from ov_explain.core.errors import ImageReadError
from ov_explain.core.images import decode_image, read_bgr_at_least, read_image


def write(path, array: np.ndarray, ext: str = ".png"):
    ok, data = cv2.imencode(ext, array)
    assert ok
    path.write_bytes(data.tobytes())
    return path


def test_colour_jpeg_comes_back_rgb(tmp_path):
    bgr = np.zeros((16, 16, 3), np.uint8)
    bgr[:, :, 2] = 250  # red in OpenCV's BGR order
    image = read_image(write(tmp_path / "red.jpg", bgr, ".jpg"))
    assert image.shape == (16, 16, 3) and image.dtype == np.uint8
    assert image[..., 0].mean() > 240 and image[..., 2].mean() < 15


def test_greyscale_is_replicated_to_three_channels(tmp_path):
    grey = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (8, 1))
    image = read_image(write(tmp_path / "grey.png", grey))
    assert image.shape == (8, 16, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image[..., channel], grey)


def test_rgba_is_composited_over_white(tmp_path):
    bgra = np.zeros((4, 4, 4), np.uint8)
    bgra[..., 2] = 255  # red
    bgra[..., 3] = 128  # half transparent
    image = read_image(write(tmp_path / "rgba.png", bgra))
    np.testing.assert_array_equal(image[0, 0], [255, 127, 127])


def test_grey_with_alpha(tmp_path):
    path = tmp_path / "la.png"
    Image.fromarray(np.dstack([np.zeros((4, 4), np.uint8), np.full((4, 4), 255, np.uint8)]), "LA").save(path)
    np.testing.assert_array_equal(read_image(path)[0, 0], [0, 0, 0])


@pytest.mark.parametrize("channels", [1, 3])
def test_sixteen_bit_is_scaled_to_eight(tmp_path, channels):
    array = np.full((4, 4) if channels == 1 else (4, 4, 3), 32896, np.uint16)  # 128 * 257
    array[0, 0] = 65535
    image = read_image(write(tmp_path / "deep.png", array))
    assert image.dtype == np.uint8 and image[0, 0, 0] == 255 and image[1, 1, 0] == 128


def test_float_tiff_is_scaled(tmp_path):
    image = read_image(write(tmp_path / "float.tiff", np.full((4, 4, 3), 0.5, np.float32), ".tiff"))
    # OpenCV 5 round-trips this exactly (128); OpenCV 4.11 (the xai environment) writes float TIFFs
    # with a slight colour shift (130, 127, 125): within 3 grey levels either way.
    assert image.dtype == np.uint8 and np.all(np.abs(image.astype(int) - 128) <= 3)


def test_cmyk_jpeg_is_converted(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, quality=95)  # pure red in CMYK
    image = read_image(path)
    assert image.shape == (16, 16, 3)
    red, green, blue = image[8, 8].astype(int)
    assert red > 200 and green < 60 and blue < 60


def test_exif_orientation_is_applied(tmp_path):
    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[:, :20] = (255, 0, 0)  # left half red
    rgb[:, 20:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "rotated.jpg"
    Image.fromarray(rgb).save(path, exif=exif.tobytes(), quality=95)
    image = read_image(path)
    assert image.shape == (40, 20, 3), "stored landscape, displayed portrait"
    assert image[5, 10, 0] > 200 and image[35, 10, 2] > 200, "left half must end up on top"


def test_too_large_is_refused_with_its_size(tmp_path):
    path = write(tmp_path / "big.png", np.zeros((100, 120, 3), np.uint8))
    with pytest.raises(ImageReadError, match=r"big.png: image is 120x100 .* larger than the limit"):
        read_image(path, max_pixels=10_000)


@pytest.mark.parametrize("name, content, message", [
    ("empty.jpg", b"", "empty file"),
    ("notes.jpg", b"these are not pixels\n" * 20, "not a readable image"),
    ("random.png", bytes(range(256)) * 8, "not a readable image"),
])
def test_bad_files_get_one_clear_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert str(info.value).startswith(str(path)) and message in str(info.value)
    assert "\n" not in str(info.value)


def test_truncated_jpeg_is_refused(tmp_path, photos_dir):
    data = (photos_dir / "coffee.jpg").read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.jpg: truncated JPEG"):
        read_image(path)


def trailer(size: int = 100_000, seed: int = 0) -> bytes:
    """Arbitrary bytes without FF D9 in them, like a camera maker's trailer or a Motion Photo's video."""
    data = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()
    data = data.replace(b"\xff\xd9", b"\xff\x00")
    assert b"\xff\xd9" not in data
    return data


def with_thumbnail(jpeg: bytes) -> bytes:
    """An APP13 segment holding a small complete JPEG (as Photoshop and EXIF embed thumbnails) after SOI."""
    ok, thumbnail = cv2.imencode(".jpg", np.full((8, 8, 3), 90, np.uint8))
    assert ok and thumbnail.tobytes().endswith(b"\xff\xd9")
    payload = b"Photoshop 3.0\x00" + thumbnail.tobytes()
    return jpeg[:2] + b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


@pytest.fixture(params=["baseline", "progressive", "restart markers", "embedded thumbnail"])
def photo_jpeg(request, photos_dir) -> bytes:
    """A complete real photo as JPEG bytes, in the layouts that matter for finding its end."""
    original = (photos_dir / "coffee.jpg").read_bytes()
    if request.param == "baseline":
        return original
    if request.param == "embedded thumbnail":
        return with_thumbnail(original)
    options = {"progressive": True} if request.param == "progressive" else {"restart_marker_blocks": 4}
    buffer = io.BytesIO()
    Image.open(io.BytesIO(original)).save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("after", ["100 KB trailer", "FF D9 then 100 KB", "appended JPEG"])
def test_jpeg_with_data_after_the_image_is_read(tmp_path, photos_dir, photo_jpeg, after):
    extra = {"100 KB trailer": trailer(),
             "FF D9 then 100 KB": b"\xff\xd9" + trailer(),
             "appended JPEG": (photos_dir / "chelsea.jpg").read_bytes()}[after]
    path = tmp_path / "motion.jpg"
    path.write_bytes(photo_jpeg + extra)
    np.testing.assert_array_equal(read_image(path), decode_image(photo_jpeg))


@pytest.mark.parametrize("after", [b"", trailer(20_000)], ids=["nothing", "trailer"])
def test_jpeg_cut_in_its_scan_data_is_refused(tmp_path, photo_jpeg, after):
    path = tmp_path / "cut.jpg"
    path.write_bytes(photo_jpeg[: len(photo_jpeg) * 6 // 10] + after)
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert str(info.value) == f"{path}: truncated JPEG (no end-of-image marker)"


def test_opencv_refusal_is_one_line_naming_the_file(tmp_path):
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    # A tiny PNG whose header claims 40000 x 40000 pixels: above OpenCV's own limit, which raises.
    header = struct.pack(">IIBBBBB", 40_000, 40_000, 8, 2, 0, 0, 0)
    path = tmp_path / "huge.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
                     + chunk(b"IEND", b""))
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    message = str(info.value)
    assert message.startswith(f"{path}: cannot decode (") and "CV_IO_MAX_IMAGE_PIXELS" in message
    assert "\n" not in message and len(message) < len(str(path)) + 250


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageReadError, match="missing.jpg: file not found"):
        read_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageReadError, match="is a directory"):
        read_image(tmp_path)


def test_decode_bytes_matches_file(photos_dir):
    path = photos_dir / "chelsea.jpg"
    np.testing.assert_array_equal(decode_image(path.read_bytes()), read_image(path))


def test_unicode_path(tmp_path):
    path = write(tmp_path / "кот 猫.png", np.zeros((3, 3, 3), np.uint8))
    assert read_image(path).shape == (3, 3, 3)


def test_bundled_greyscale_photo_reads_as_rgb(photos_dir):
    image = read_image(photos_dir / "camera.jpg")
    assert image.shape == (512, 512, 3)
    assert np.array_equal(image[..., 0], image[..., 1])


def test_an_overlay_read_for_a_thumbnail_is_reduced_or_none_and_silent_when_gone(tmp_path, photos_dir, capfd):
    photo = photos_dir / "coffee.jpg"
    height, width = cv2.imread(str(photo)).shape[:2]
    reduced = read_bgr_at_least(photo, 224, (height, width))
    assert reduced.shape[1] == width // 2 and max(reduced.shape[:2]) >= 224  # decoded at 1/2, still big enough
    assert read_bgr_at_least(photo, 224, None).shape[:2] == (height, width)
    capfd.readouterr()
    assert read_bgr_at_least(tmp_path / "deleted.jpg", 224, (height, width)) is None
    assert capfd.readouterr().err == ""  # no OpenCV warning reaches the user's terminal
