"""Case grids drawn with OpenCV: every tile placed with its title, long titles clipped, any picture size."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ov_explain.render.grids import CELL, Tile, grid_jpeg, thumbnail


def test_a_grid_places_every_tile_under_its_title(photos_dir):
    photo = cv2.cvtColor(cv2.imread(str(photos_dir / "coffee.jpg")), cv2.COLOR_BGR2RGB)
    tall = np.zeros((300, 40, 3), np.uint8)  # black, tall and thin; enlarged to the cell's height
    tiles = [Tile(photo, "coffee\ngt: espresso 0.94"), Tile(tall, "a very long title " * 10 + "\nnaïve ünïcode"),
             Tile(photo[:10, :10], "tiny")]
    jpeg = grid_jpeg(tiles, "True positive high confidence (3 of 9 maps, 9 images)", columns=2)
    assert jpeg[:3] == b"\xff\xd8\xff"
    grid = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert grid is not None and grid.shape[1] == 2 * (CELL + 8) + 8 and grid.shape[0] > 2 * CELL
    dark = (grid < 40).all(axis=2)
    second = dark[:, CELL + 16:2 * CELL + 16]
    assert second[:CELL + 40].sum() > 240 * 30  # the black tile, enlarged to the full cell height
    assert not dark[:, -4:].any()  # clipped titles stay inside their cell, the margin stays white
    with pytest.raises(ValueError, match="no tiles"):
        grid_jpeg([], "empty")


def test_thumbnails_shrink_without_aliasing_at_any_scale():
    stripes = np.zeros((400, 400, 3), np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes: skipping pixels would give all black or all white
    for side, within in ((399, 1), (224, 1), (100, 1), (37, 11)):  # shrinks by 0.998, 0.56, 0.25, 0.09
        small = thumbnail(stripes, side)
        assert small.shape == (side, side, 3)
        # Every pixel the stripes' grey mean; at 0.09 a pixel covers 10.8 stripes, 5 or 6 of them white
        # (116..139), so area resampling's uneven footprints allow 11 there.
        assert np.abs(small[2:-2, 2:-2].astype(int) - 128).max() <= within, side
    assert thumbnail(stripes, 500) is stripes  # never enlarged
