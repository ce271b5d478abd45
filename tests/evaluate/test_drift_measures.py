"""The map-change measures: values on maps whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ov_explain.evaluate.drift_measures import correlation, iou_top, peak_shift, top_mask


def bump(y: int, x: int, size: int = 7) -> np.ndarray:
    ys, xs = np.mgrid[0:size, 0:size]
    return np.exp(-((ys - y) ** 2 + (xs - x) ** 2) / 2.0).astype(np.float32)


def test_identical_and_scaled_maps_correlate_perfectly():
    a = bump(3, 3)
    assert correlation(a, a) == pytest.approx(1.0)
    assert correlation(a, 5 * a + 2) == pytest.approx(1.0)  # scale-free: INT8's shifted logits do not count
    assert correlation(a, -a) == pytest.approx(-1.0)
    assert correlation(np.zeros((7, 7)), np.zeros((7, 7))) == 1.0
    assert correlation(a, np.zeros((7, 7))) == 0.0


def test_a_moved_peak_is_measured_in_cells_and_as_a_fraction_of_the_diagonal():
    a, b = bump(0, 0), bump(6, 6)
    assert correlation(a, b) < 0
    assert iou_top(a, b, 0.1) == 0.0
    cells, fraction = peak_shift(a, b)
    assert cells == pytest.approx(math.hypot(6, 6)) and fraction == pytest.approx(6 / 7)
    assert peak_shift(a, a) == (0.0, 0.0)


def test_top_fraction_overlap():
    a = np.arange(100, dtype=np.float32).reshape(10, 10)
    assert top_mask(a, 0.1).sum() == 10 and top_mask(a, 0.1)[9].all()
    shifted = np.roll(a, -5)  # the top 10 cells of one are 5 of the other's
    assert iou_top(a, shifted, 0.1) == pytest.approx(5 / 15)


def test_maps_of_different_resolution_are_compared_on_the_references_grid():
    a = bump(3, 3)
    import cv2

    b = cv2.resize(a, (14, 14), interpolation=cv2.INTER_LINEAR)
    assert correlation(a, b) > 0.99 and peak_shift(a, b)[0] <= 1.0
