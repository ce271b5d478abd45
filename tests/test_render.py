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
