"""How much two saliency maps of the same image and class differ: pure functions on raw maps.

Each measure answers one question a deployment review asks:

* ``correlation`` (Pearson r of the raw maps): is the overall pattern of attention the same?
  1 = identical up to scale, 0 = unrelated. Scale-free, so INT8's shifted logits do not count.
* ``iou_top`` (intersection over union of the 10 % most salient cells): do both deployments look at
  the same *region*? Robust to changes in the weak background a correlation is sensitive to.
* ``peak_shift`` (distance between the maxima, in map cells and as a fraction of the image
  diagonal): did the single most important spot move, and how far on the picture?
"""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np

logger = logging.getLogger(__name__)


def _same_grid(reference: np.ndarray, candidate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    reference = np.asarray(reference, np.float32)
    candidate = np.asarray(candidate, np.float32)
    if reference.ndim != 2 or candidate.ndim != 2:
        raise ValueError(f"maps must be 2-D, got {reference.shape} and {candidate.shape}")
    if candidate.shape != reference.shape:  # e.g. another architecture: compare on the reference's grid
        candidate = cv2.resize(candidate, reference.shape[::-1], interpolation=cv2.INTER_LINEAR)
    return reference, candidate


def correlation(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Pearson r; two constant maps count as identical (1.0), one constant map as unrelated (0.0)."""
    a, b = _same_grid(reference, candidate)
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    a, b = a - a.mean(), b - b.mean()
    norms = math.sqrt(float(a @ a) * float(b @ b))
    if norms == 0:
        return 1.0 if not a.any() and not b.any() else 0.0
    return float(np.clip(a @ b / norms, -1.0, 1.0))


def top_mask(values: np.ndarray, fraction: float) -> np.ndarray:
    """The ``fraction`` of cells with the highest values (at least one)."""
    flat = values.ravel()
    count = max(1, int(round(fraction * flat.size)))
    order = np.argsort(-flat, kind="stable")[:count]
    mask = np.zeros(flat.size, bool)
    mask[order] = True
    return mask.reshape(values.shape)


def iou_top(reference: np.ndarray, candidate: np.ndarray, fraction: float = 0.1) -> float:
    """Intersection over union of the two maps' top ``fraction`` most salient cells."""
    a, b = _same_grid(reference, candidate)
    first, second = top_mask(a, fraction), top_mask(b, fraction)
    return float((first & second).sum() / (first | second).sum())


def peak_shift(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float]:
    """(cells, fraction of the image diagonal) between the two maps' maxima."""
    a, b = _same_grid(reference, candidate)
    (ya, xa), (yb, xb) = (np.unravel_index(int(np.argmax(m)), m.shape) for m in (a, b))
    cells = math.hypot(float(ya - yb), float(xa - xb))
    height, width = a.shape
    fraction = math.hypot((ya - yb) / height, (xa - xb) / width) / math.sqrt(2.0)
    return cells, fraction
