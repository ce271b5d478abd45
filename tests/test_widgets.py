"""The notebook explorer, driven without a browser: set widget values, read what the widgets show."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import cv2
import numpy as np
import pytest

pytest.importorskip("ipywidgets")

from ov_explain.widgets import PATH_CHOICE, UPLOAD_CHOICE, Explorer  # noqa: E402

STAMP = datetime(2026, 1, 1, tzinfo=timezone.utc)


def png_pixels(data: bytes) -> np.ndarray:
    picture = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert picture is not None, "not a PNG"
    return picture


def choose(explorer: Explorer, name: str) -> None:
    explorer.image.value = next(value for label, value in explorer.image.options if label == name)


@pytest.fixture(scope="module")
def explorer() -> Explorer:
    return Explorer(device="CPU")


@pytest.mark.slow
def test_opens_with_a_white_box_explanation_of_the_first_photo(explorer):
    assert explorer.device.options[0] == "AUTO" and "CPU" in explorer.device.options
    assert "<b>cam</b> (whitebox" in explorer.status.value and "on <b>CPU</b>" in explorer.status.value
    assert "football helmet" in explorer.predictions.value  # astronaut.jpg, the first photo
    assert png_pixels(explorer.picture.value).shape == (512, 512, 3)


@pytest.mark.slow
def test_changing_image_class_opacity_and_colormap_updates_the_picture(explorer):
    choose(explorer, "chelsea.jpg")
    assert "for <b>tiger cat</b>" in explorer.status.value
    assert explorer.target.options[0] == "tiger cat" and "tabby" in explorer.target.options[:5]  # top first
    assert len(explorer.target.options) == 1000
    first = png_pixels(explorer.picture.value)
    assert first.shape[:2] == (300, 451)

    explorer.target.value = "tabby"
    assert "for <b>tabby</b>" in explorer.status.value
    tabby = png_pixels(explorer.picture.value)
    assert np.abs(tabby.astype(int) - first.astype(int)).mean() > 1

    explorer.opacity.value = 0.0  # no map at all: the photo itself (up to PNG-free rounding)
    original = cv2.cvtColor(explorer._pixels, cv2.COLOR_RGB2BGR)
    np.testing.assert_array_equal(png_pixels(explorer.picture.value), original)
    explorer.opacity.value = 0.5
    explorer.colormap.value = "viridis"
    assert not np.array_equal(png_pixels(explorer.picture.value), tabby)
    explorer.colormap.value = "jet"


@pytest.mark.slow
def test_black_box_waits_for_the_button_then_runs_in_the_background(explorer):
    choose(explorer, "coffee.jpg")
    explorer.method.value = "aise"
    assert "press <b>Explain</b>" in explorer.status.value
    explorer.explain(wait=True)
    assert "<b>aise</b> (blackbox) on <b>CPU</b> in f32 for <b>espresso</b>" in explorer.status.value
    assert explorer.progress.value == 1.0 and explorer.cancel_button.disabled
    explorer.method.value = "reciprocam"


@pytest.mark.slow
def test_a_long_black_box_run_can_be_cancelled(photos_dir):
    explorer = Explorer(device="CPU", preset="quality", images=[photos_dir / "coffee.jpg"])
    explorer.method.value = "rise"
    explorer.explain()
    assert not explorer.cancel_button.disabled and explorer.run_button.disabled
    deadline = time.monotonic() + 60
    while explorer.progress.value == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    explorer.cancel()
    explorer.wait(timeout=60)
    assert "cancelled" in explorer.status.value
    assert 0 < explorer.progress.value < 1 and not explorer.run_button.disabled


@pytest.mark.slow
def test_side_by_side_comparison_of_methods(explorer):
    choose(explorer, "camera.jpg")
    explorer.compare.value = ("reciprocam", "activationmap")
    explorer.compare_methods(wait=True)
    assert "compared 2 methods" in explorer.status.value
    titles = [cell.children[0].value for cell in explorer.gallery.children]
    assert titles[0].startswith("<b>reciprocam</b>") and titles[1].startswith("<b>activationmap</b>")
    pictures = [png_pixels(cell.children[1].value) for cell in explorer.gallery.children]
    assert pictures[0].shape == pictures[1].shape == (512, 512, 3)
    assert not np.array_equal(pictures[0], pictures[1])


@pytest.mark.slow
def test_path_and_upload_inputs_and_their_errors(explorer, photos_dir, tmp_path):
    explorer.image.value = PATH_CHOICE
    assert "type a path" in explorer.status.value
    explorer.path.value = str(tmp_path / "missing.jpg")
    assert "error:" in explorer.status.value and "missing.jpg" in explorer.status.value
    explorer.path.value = str(photos_dir / "rocket.jpg")
    assert "for <b>missile</b>" in explorer.status.value

    explorer.image.value = UPLOAD_CHOICE
    assert "no file uploaded" in explorer.status.value
    explorer.upload.value = ({"name": "motorcycle.jpg", "type": "image/jpeg", "size": 1, "last_modified": STAMP,
                              "content": memoryview((photos_dir / "motorcycle.jpg").read_bytes())},)
    assert "for <b>moped</b>" in explorer.status.value
    explorer.upload.value = ({"name": "bad.jpg", "type": "image/jpeg", "size": 1, "last_modified": STAMP,
                              "content": memoryview(b"not an image")},)
    assert "error:" in explorer.status.value and "bad.jpg" in explorer.status.value


@pytest.mark.slow
def test_a_detector_shows_its_boxes_and_the_chosen_boxs_map(yolov8_path, photos_dir):
    """The real YOLOv8n: the boxes listed, a box picked from them, its map (with its box drawn) shown."""
    two = [photos_dir / "astronaut.jpg", photos_dir / "coffee.jpg"]
    explorer = Explorer(yolov8_path, device="CPU", images=two)
    assert explorer.task == "detection" and explorer.target.description == "Box"
    assert "drise" in explorer.method.options and "cam" not in explorer.method.options
    assert "<b>detreciprocam</b> (whitebox)" in explorer.status.value and "1 box(es), 1 inference" in \
        explorer.status.value
    assert list(explorer.target.options) == ["0: FACE_FEMALE 0.82"] and explorer.target.value == "0: FACE_FEMALE 0.82"
    assert "FACE_FEMALE" in explorer.predictions.value
    shown = png_pixels(explorer.picture.value)
    assert shown.shape == (512, 512, 3)
    explorer.opacity.value = 0.0  # no map: the photo with the box drawn on it, white on the box's edge
    plain = png_pixels(explorer.picture.value)
    x1, y1, x2, y2 = (int(round(v)) for v in explorer._explanation.detections.detections[0].box)
    assert plain[(y1 + y2) // 2, x1].min() > 200 and not np.array_equal(plain, shown)
    choose(explorer, "coffee.jpg")
    assert "no detections" in explorer.predictions.value and list(explorer.target.options) == []
