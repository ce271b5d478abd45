"""Faithfulness metrics users can call: insertion / deletion AUC and the pointing game.

Insertion: start from a blurred image and reveal pixels in decreasing saliency order; the target's
probability should rise fast (high AUC). Deletion: remove pixels in that order from the real image;
it should fall fast (low AUC). Both run the steps as one batched inference.
"""

from __future__ import annotations

import logging
from typing import Callable

import cv2
import numpy as np

logger = logging.getLogger(__name__)

#: Probabilities (N, K) for a batch of RGB uint8 images (N, H, W, 3).
ScoreImages = Callable[[np.ndarray], np.ndarray]


def _curve(start: np.ndarray, finish: np.ndarray, saliency: np.ndarray, target: int, score: ScoreImages,
           steps: int) -> np.ndarray:
    order = np.argsort(-saliency.ravel(), kind="stable")
    pixels = order.size
    frames = []
    for step in range(steps + 1):
        revealed = np.zeros(pixels, bool)
        revealed[order[: round(pixels * step / steps)]] = True
        frames.append(np.where(revealed.reshape(saliency.shape)[..., None], finish, start))
    return score(np.stack(frames))[:, target]


def _auc(curve: np.ndarray) -> float:
    return float(np.trapezoid(curve, dx=1.0 / (len(curve) - 1)) if hasattr(np, "trapezoid")
                 else np.trapz(curve, dx=1.0 / (len(curve) - 1)))


def insertion_deletion_auc(image: np.ndarray, saliency: np.ndarray, target: int, score: ScoreImages, *,
                           steps: int = 16, blur_sigma: float = 10.0) -> tuple[float, float]:
    """(insertion AUC, deletion AUC) for ``target``; ``saliency`` is on the image's pixels (H, W)."""
    if saliency.shape != image.shape[:2]:
        raise ValueError(f"saliency shape {saliency.shape} must match the image {image.shape[:2]}")
    blurred = cv2.GaussianBlur(image, (0, 0), blur_sigma)
    grey = np.full_like(image, 127)  # mid-grey: "no information" for most normalisations
    insertion = _curve(blurred, image, saliency, target, score, steps)
    deletion = _curve(image, grey, saliency, target, score, steps)
    return _auc(insertion), _auc(deletion)


def pointing_game(saliency: np.ndarray, box: tuple[int, int, int, int], tolerance: int = 15) -> bool:
    """Whether the map's maximum falls inside ``box`` = (x0, y0, x1, y1), grown by ``tolerance`` pixels."""
    y, x = np.unravel_index(int(np.argmax(saliency)), saliency.shape)
    x0, y0, x1, y1 = box
    return x0 - tolerance <= x <= x1 + tolerance and y0 - tolerance <= y <= y1 + tolerance
