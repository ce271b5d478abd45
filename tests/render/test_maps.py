"""Rendering is pure: right values and shapes, inputs never modified."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ov_explain import render


@pytest.fixture
def saliency():
    return np.array([[0.0, 1.0], [2.0, 4.0]], np.float32)


@pytest.fixture
def image():
    return np.full((4, 6, 3), 100, np.uint8)


def test_normalize_min_max_and_fixed_range(saliency):
    np.testing.assert_allclose(render.normalize(saliency), [[0, 0.25], [0.5, 1.0]])
    np.testing.assert_allclose(render.normalize(saliency, (0, 8)), [[0, 0.125], [0.25, 0.5]])
    assert not render.normalize(np.full((2, 2), 3.0)).any()
    assert render.normalize(np.array([[np.nan, 1.0]])).tolist() == [[0.0, 1.0]]


def test_resize_and_colorize_shapes(saliency):
    assert render.resize(saliency, (5, 7)).shape == (5, 7)
    coloured = render.colorize(saliency)
    assert coloured.shape == (2, 2, 3) and coloured.dtype == np.uint8
    assert coloured[1, 1, 0] > 100 and coloured[0, 0, 2] > 100  # JET: high = red, low = blue
    with pytest.raises(ValueError, match="unknown colormap 'rainbowz'"):
        render.colorize(saliency, "rainbowz")
    assert not np.array_equal(render.colorize(saliency, "viridis"), coloured)


def test_overlay_weight_extremes(image, saliency):
    np.testing.assert_array_equal(render.overlay(image, saliency, weight=0.0), image)
    full = render.overlay(image, saliency, weight=1.0)
    np.testing.assert_array_equal(full, render.colorize(render.resize(render.normalize(saliency), (4, 6))))
    with pytest.raises(ValueError, match="weight must be in"):
        render.overlay(image, saliency, weight=2)


def test_rgba_alpha_fades_low_activations(saliency):
    rgba = render.colorize_rgba(saliency, fade_below=0.3, max_alpha=1.0)
    assert rgba.shape == (2, 2, 4)
    assert rgba[0, 0, 3] == 0 and rgba[0, 1, 3] == 0  # 0 and 0.25 are below the fade
    assert rgba[1, 1, 3] == 255 and 0 < rgba[1, 0, 3] < 255


def test_png_round_trip(saliency):
    rgba = render.colorize_rgba(saliency)
    decoded = cv2.imdecode(np.frombuffer(render.encode_png(rgba), np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGBA), rgba)
    assert render.encode_png(np.zeros((3, 3), np.uint8))[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="uint8"):
        render.encode_png(saliency)


def test_no_function_mutates_its_inputs(image, saliency):
    image_before, saliency_before = image.copy(), saliency.copy()
    render.normalize(saliency)
    render.normalize(saliency, (0, 1))
    render.resize(saliency, (3, 3))
    render.colorize(saliency)
    render.overlay(image, saliency, weight=0.7, colormap="inferno")
    render.overlay(image, saliency, value_range=(0, 10))
    render.colorize_rgba(saliency)
    render.encode_png(image)
    render.encode_jpeg(image)
    np.testing.assert_array_equal(image, image_before)
    np.testing.assert_array_equal(saliency, saliency_before)


# ----- frame_levels: a map at its own resolution laid over the whole image -----------------------------
def _levels(raw: np.ndarray) -> np.ndarray:
    return np.round(255 * (raw - raw.min()) / (raw.max() - raw.min())).astype(np.uint8)


def test_frame_levels_of_a_whole_image_map_are_its_cells_repeated():
    raw = np.arange(12, dtype=np.float32).reshape(3, 4) ** 2
    framed = render.frame_levels(raw, None, (60, 80), min_side=6)
    assert framed.shape == (6, 8)  # cells doubled so the short side reaches 6
    np.testing.assert_array_equal(framed, np.repeat(np.repeat(_levels(raw), 2, 0), 2, 1))


def test_frame_levels_put_each_cell_where_the_centre_crop_saw_it_and_zero_outside():
    """chelsea.jpg (300 x 451) through the bundled spec: short side to 256, centre crop 224; a 7 x 7 map."""
    from ov_explain.core.preprocess import PreprocessSpec

    spec = PreprocessSpec(size=(224, 224), resize="center_crop", crop_fraction=0.875)
    _, geometry = spec.fit(np.zeros((300, 451, 3), np.uint8))
    left, top, right, bottom = geometry.input_box()
    assert (left, top, right, bottom) == pytest.approx((93.75, 18.75, 356.25, 281.25), abs=0.5)  # 256 / 300 scale
    raw = np.random.default_rng(0).random((7, 7)).astype(np.float32)
    framed = render.frame_levels(raw, (left, top, right, bottom), (300, 451))
    height, width = framed.shape
    assert min(height, width) >= 32 and width / height == pytest.approx(451 / 300, rel=0.05)
    levels = _levels(raw)
    for i in range(7):
        for j in range(7):  # the frame pixel under each cell's centre holds that cell's level
            x, y = left + (j + 0.5) * (right - left) / 7, top + (i + 0.5) * (bottom - top) / 7
            assert framed[int(y * height / 300), int(x * width / 451)] == levels[i, j]
    x_centres, y_centres = (np.arange(width) + 0.5) * 451 / width, (np.arange(height) + 0.5) * 300 / height
    assert not framed[:, (x_centres < left) | (x_centres > right)].any()  # cropped-away margins are empty
    assert not framed[(y_centres < top) | (y_centres > bottom)].any()
    assert set(np.unique(framed)) <= set(np.unique(levels)) | {0}  # no value the map does not have


def test_frame_levels_refuse_an_empty_box():
    with pytest.raises(ValueError, match="expected left < right"):
        render.frame_levels(np.ones((2, 2)), (5, 0, 5, 10), (10, 10))
