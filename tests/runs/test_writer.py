"""One writer for an explanation's files, used by ``explain`` and ``audit`` alike: atomic, complete."""

from __future__ import annotations

import numpy as np
import pytest

from ov_explain import read_image
from ov_explain.explain import Explainer
from ov_explain.runs.writer import MapStyle, to_bgr, write_map_files


def test_overlay_raw_and_rgba_are_written_atomically(classifier, photos_dir, tmp_path):
    pixels = read_image(photos_dir / "coffee.jpg")
    explanation = Explainer(classifier).explain(pixels)
    (tmp_path / "Case").mkdir()
    files = write_map_files(tmp_path, "Case/coffee_map", to_bgr(pixels), explanation.maps[0],
                            MapStyle(save_raw=True, save_rgba=True))
    assert (files.overlay, files.raw, files.rgba) == ("Case/coffee_map.jpg", "Case/coffee_map.npy",
                                                      "Case/coffee_map.rgba.png")
    assert sorted(p.name for p in (tmp_path / "Case").iterdir()) == ["coffee_map.jpg", "coffee_map.npy",
                                                                     "coffee_map.rgba.png"]  # no temp files left
    assert read_image(tmp_path / files.overlay).shape == pixels.shape
    np.testing.assert_array_equal(np.load(tmp_path / files.raw), explanation.maps[0].raw)
    import cv2

    rgba = cv2.imread(str(tmp_path / files.rgba), cv2.IMREAD_UNCHANGED)
    assert rgba.shape == pixels.shape[:2] + (4,)


def test_explain_and_audit_write_the_same_overlay(run, photos_dir, tmp_path):
    """``ov-explain explain`` and ``ov-explain audit`` render a map through the same writer: the
    espresso overlay of coffee.jpg is the same picture in both."""
    import json

    result = run("explain", photos_dir / "coffee.jpg", "--device", "CPU", "--out", tmp_path / "explained", "--json")
    assert result.exit_code == 0, result.output
    explained = json.loads(result.stdout)["explanations"][0]["maps"][0]
    assert explained["name"] == "espresso"
    audited = run("audit", photos_dir / "ground_truth.csv", "--device", "CPU", "--out", tmp_path / "audit",
                  "--no-grids", "--no-report")
    assert audited.exit_code == 0, audited.output
    rows = [json.loads(line) for line in (tmp_path / "audit" / "manifest.jsonl").read_text().splitlines()]
    row = next(r for r in rows if r["key"].endswith("coffee.jpg") and r["target_class"] == "espresso")
    mine, theirs = read_image(explained["overlay"]), read_image(tmp_path / "audit" / row["overlay_path"])
    difference = np.abs(mine.astype(int) - theirs.astype(int))
    # The same levels, colours and JPEG quality; the audit's THROUGHPUT compile may round a map value
    # differently in the last bit, which moves a level by one here and there.
    assert mine.shape == theirs.shape and difference.mean() < 0.05 and difference.max() <= 8


def test_a_bad_style_is_refused():
    with pytest.raises(ValueError, match="colormap: unknown 'rainbow'"):
        MapStyle(colormap="rainbow")
