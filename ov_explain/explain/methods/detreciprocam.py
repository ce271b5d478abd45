"""ReciproCAM for detectors: each cell of the backbone's outputs kept alone, scored by the neck and head at
the box's anchor — a map for every anchor and class from one inference.

The graph is cut where the neck begins (the backbone's outputs at the head's scales, see
:mod:`ov_explain.explain.detection_graph`). For a grid of K = rows x columns cells over the image (default:
the coarsest head scale's, 10 x 10 for a 320 x 320 YOLOv8), copy k of every backbone output keeps only the
block under cell k (zero elsewhere), and the neck and head run on the K copies inside the same inference.
For a kept box from anchor a with class c, its map is

    M[k] = s_c,a( neck+head( F_1 * m_1,k, F_2 * m_2,k, F_3 * m_3,k ) ),   k = 1..K,

the class-c score at anchor a of the copy that kept cell k: ReciproCAM's definition (Byun & Lee, 2022),
with the network after the cut in place of a classifier's head. ``readout="logit"`` (default) reads s before
the class Sigmoid (YOLOv8 / v11 have one): where a cell alone does not make a face, the logits still order
the cells, where sigmoids have all flushed to zero. Cost: the neck and head once per cell (K copies) on top of
one plain inference; the backbone runs once.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np

from ov_explain.explain.base import ExplainError
from ov_explain.explain.detection_graph import build_detection_mosaic, neck_cuts
from ov_explain.explain.method import WhiteboxMethod

logger = logging.getLogger(__name__)


class DetReciproCAM(WhiteboxMethod):
    name = "detreciprocam"
    task = "detection"
    summary = "each backbone cell kept alone where the neck begins, scored by the neck and head at the box's anchor"
    options = {"grid": None, "readout": "logit"}

    def check(self, options: Mapping[str, Any]) -> dict[str, Any]:
        settings = {**self.options, **self.check_options(options)}
        grid = settings["grid"]
        if grid is not None and (isinstance(grid, bool) or not isinstance(grid, int) or not 1 <= grid <= 64):
            raise ExplainError(f"{self.name}: grid must be an integer 1..64 (cells per side), got {grid!r}")
        if settings["readout"] not in ("logit", "probability"):
            raise ExplainError(f"{self.name}: readout must be logit or probability, got {settings['readout']!r}")
        return settings

    def build(self, model: Any, num_classes: int, settings: Mapping[str, Any]) -> tuple[Any, tuple[int, int]]:
        """The detector's graph with the mosaic output, and the map's grid (rows, columns)."""
        cuts = neck_cuts(model, num_classes)
        coarsest = cuts[-1]
        grid = (settings["grid"],) * 2 if settings["grid"] else (coarsest.height, coarsest.width)
        if any(grid[0] > c.height or grid[1] > c.width for c in cuts):
            raise ExplainError(f"{self.name}: a {grid[0]}x{grid[1]} grid is finer than the coarsest backbone output "
                               f"({coarsest.height}x{coarsest.width})")
        logits = num_classes if settings["readout"] == "logit" else 0
        return build_detection_mosaic(model, cuts, grid, logits), grid

    def maps(self, detector: Any, mosaic: np.ndarray, targets: list[Any], grid: tuple[int, int],
             readout: str) -> np.ndarray:
        """Maps (T, rows, columns) of one image's targets from its K mosaic copies."""
        copies = grid[0] * grid[1]
        if readout == "logit":  # (K, C, A): the class logits
            values = np.stack([mosaic[:copies, t.class_index, t.anchor] for t in targets])
        else:  # the network's outputs per copy, decoded as the detector decodes them
            found = detector.proposals([mosaic[:copies]])
            values = np.stack([[p.scores[t.anchor, t.class_index] for p in found] for t in targets])
        return values.reshape(len(targets), *grid).astype(np.float32)


METHOD = DetReciproCAM()
