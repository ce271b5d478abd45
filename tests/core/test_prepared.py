"""The prepared input: a validated value, and masking towards its fill value in either layout."""

from __future__ import annotations

import numpy as np
import pytest

from ov_explain.core.prepared import PreparedInput
from ov_explain.core.preprocess import Geometry

GEOMETRY = Geometry.stretch((6, 8), (4, 5))


def test_shape_layout_and_fill_are_checked():
    with pytest.raises(ValueError, match="layout: expected one of"):
        PreparedInput(np.zeros((3, 4, 5), np.float32), GEOMETRY, "NCHW", "x")
    with pytest.raises(ValueError, match="3-D CHW array without batch axis"):
        PreparedInput(np.zeros((1, 3, 4, 5), np.float32), GEOMETRY, "CHW", "x")
    with pytest.raises(ValueError, match="fill: expected 3 values"):
        PreparedInput(np.zeros((3, 4, 5), np.float32), GEOMETRY, "CHW", "x", fill=(0.0,))


@pytest.mark.parametrize("layout", ["CHW", "HWC"])
def test_masking_keeps_where_one_and_fills_where_zero(layout):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (4, 5, 3)).astype(np.uint8)
    tensor = pixels.transpose(2, 0, 1) if layout == "CHW" else pixels
    fill = (10.0, 20.0, 30.0)
    prepared = PreparedInput(tensor, GEOMETRY, layout, "x", fill)
    assert prepared.spatial_size == (4, 5) and prepared.channels == 3
    masks = np.stack([np.ones((4, 5)), np.zeros((4, 5)), np.full((4, 5), 0.25)]).astype(np.float32)
    batch = prepared.masked(masks)
    as_hwc = batch.transpose(0, 2, 3, 1) if layout == "CHW" else batch
    np.testing.assert_allclose(as_hwc[0], pixels)
    np.testing.assert_allclose(as_hwc[1], np.broadcast_to(np.float32(fill), (4, 5, 3)))
    np.testing.assert_allclose(as_hwc[2], np.float32(fill) + (pixels - np.float32(fill)) * 0.25, rtol=1e-6)
    pair = prepared.as_float().masked_pair(masks[2], np.empty((2,) + tensor.shape, np.float32))
    np.testing.assert_allclose(pair[0], batch[2], rtol=1e-6)
    np.testing.assert_allclose(pair[1], prepared.masked(1 - masks[2:3])[0], rtol=1e-6)
    with pytest.raises(ValueError, match=r"masks: expected shape \(N, 4, 5\)"):
        prepared.masked(np.ones((1, 5, 4), np.float32))


def test_a_normalised_tensor_is_masked_by_multiplying():
    tensor = np.random.default_rng(1).normal(size=(3, 4, 5)).astype(np.float32)
    prepared = PreparedInput(tensor, GEOMETRY, "CHW", "x")
    mask = np.random.default_rng(2).random((2, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(prepared.masked(mask), tensor[None] * mask[:, None], rtol=1e-6)
