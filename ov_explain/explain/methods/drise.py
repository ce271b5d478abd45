"""D-RISE: random masks weighted by how well the masked image still detects each box (Petsiuk et al., CVPR 2021).

For a target detection t (box L_t, class-score vector P_t) and a masked image whose proposals are
d_j = (L_j, P_j), the mask's weight is

    w_t = max_j  IoU(L_t, L_j) * cos(P_t, P_j) * O_j

and the map is sum_i w_t(M_i) M_i / (N p). D-RISE's O_j is the proposal's objectness; YOLOv8 has none,
so O_j is the proposal's best class score (YOLOv5's scores already carry its objectness): a proposal at
the same place whose scores collapsed counts for what it still detects. Every proposal of the raw output
is compared (not only those left after a threshold and NMS), so weights are continuous in the mask.

One pass serves every box of an image: each masked image is inferred once and scored against all
targets. Masks are RISE's (smooth, randomly shifted), drawn in a fixed order from the seed and summed in
that order, batched through a ring of infer requests; the progress callback can cancel between batches.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import numpy as np

from ov_explain.core.prepared import PreparedInput
from ov_explain.explain.blackbox import Progress
from ov_explain.explain.methods.rise import RISE, masked_sum

logger = logging.getLogger(__name__)


def similarity(target_boxes: np.ndarray, target_scores: np.ndarray, boxes: np.ndarray,
               scores: np.ndarray) -> np.ndarray:
    """D-RISE weights (T,) of one masked image: the best IoU x cosine x confidence over its proposals."""
    if len(boxes) == 0:
        return np.zeros(len(target_boxes), np.float32)
    left = np.maximum(target_boxes[:, None, 0], boxes[None, :, 0])
    top = np.maximum(target_boxes[:, None, 1], boxes[None, :, 1])
    right = np.minimum(target_boxes[:, None, 2], boxes[None, :, 2])
    bottom = np.minimum(target_boxes[:, None, 3], boxes[None, :, 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    area = lambda b: np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)  # noqa: E731
    union = area(target_boxes)[:, None] + area(boxes)[None, :] - inter
    overlap = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
    norms = np.linalg.norm(target_scores, axis=1)[:, None] * np.linalg.norm(scores, axis=1)[None, :]
    # Elementwise, not a matrix product: BLAS picks kernels by shape, so a box's weights would change in the
    # last bit with how many boxes are explained together (measured: 6e-8 between 1 and 2 targets).
    cosine = (target_scores[:, None, :] * scores[None, :, :]).sum(axis=2) / np.maximum(norms, 1e-12)
    confidence = scores.max(axis=1)[None, :]
    return (overlap * cosine * confidence).max(axis=1).astype(np.float32)


def drise(detector: Any, prepared: PreparedInput, target_boxes: np.ndarray, target_scores: np.ndarray, *,
          num_masks: int, num_cells: int, probability: float = 0.5, seed: int = 0, chunk: int = 8,
          requests: int = 2, progress: Progress | None = None) -> np.ndarray:
    """Maps (T, H, W) at the input's resolution for the targets (boxes in model-input pixels and their
    class-score vectors)."""
    count = len(detector.compiled.outputs)

    def read(request: Any) -> np.ndarray:
        outputs = [np.array(request.get_output_tensor(i).data) for i in range(count)]
        return np.stack([similarity(target_boxes, target_scores, found.boxes, found.scores)
                         for found in detector.proposals(outputs)])

    masks = dict(num_masks=num_masks, num_cells=num_cells, probability=probability, chunk=chunk)
    return masked_sum(detector.compiled, detector.max_batch, prepared, read, len(target_boxes), masks, seed=seed,
                      requests=requests, progress=progress, name="D-RISE")


class DRISE(RISE):
    """RISE's options and checks; detections as targets, the detector as the score."""

    name = "drise"
    task = "detection"
    summary = "detector-aware RISE: masks weighted by IoU x class similarity x confidence of the best proposal"
    xai_name = None
    xai_options: Mapping[str, str] = {}
    xai_seed = False
    options = {"num_masks": None, "num_cells": None, "probability": 0.5, "chunk": 8}  # the classic sum, every mask
    presets = {"speed": {"num_masks": 500, "num_cells": 8}, "balance": {"num_masks": 2000, "num_cells": 12},
               "quality": {"num_masks": 5000, "num_cells": 16}}

    def run(self, score: Any, prepared: PreparedInput, targets: Sequence[Any], options: Mapping[str, Any], *,
            seed: int, parallel: int, progress: Progress | None) -> np.ndarray:
        """``score`` is the detector; ``targets`` its detections (their input boxes and score vectors)."""
        boxes = np.array([t.input_box for t in targets], np.float32).reshape(-1, 4)
        scores = np.array([t.scores for t in targets], np.float32).reshape(len(targets), -1)
        return drise(score, prepared, boxes, scores, seed=seed, requests=parallel, progress=progress, **options)


METHOD = DRISE()
