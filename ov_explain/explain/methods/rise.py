"""RISE: the probability-weighted sum of random smooth masks (Petsiuk et al., 2018).

Chunks of masked inputs stay in flight on a ring of infer requests; only the masks of chunks in
flight and one float64 accumulator per target are held, so memory does not grow with the masks.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable, Mapping, Sequence

import cv2
import numpy as np

from ov_explain.core.devices import RequestRing
from ov_explain.core.prepared import PreparedInput
from ov_explain.explain.blackbox import Cancelled, Progress, ScoreFunction
from ov_explain.explain.method import BlackboxMethod, require_int, require_number

logger = logging.getLogger(__name__)


def rise_masks(rng: np.random.Generator, count: int, input_size: tuple[int, int], cells: int,
               probability: float) -> np.ndarray:
    """``count`` smooth random masks (count, H, W) in [0, 1]: a cells x cells binary grid, upsampled
    (cubic) to one cell more than the input and cropped at a random shift."""
    height, width = input_size
    cell_h, cell_w = math.ceil(height / cells), math.ceil(width / cells)
    up_h, up_w = (cells + 1) * cell_h, (cells + 1) * cell_w
    masks = np.empty((count, height, width), np.float32)
    for i in range(count):
        grid = (rng.random((cells, cells)) < probability).astype(np.float32)
        dy, dx = int(rng.integers(0, cell_h)), int(rng.integers(0, cell_w))
        upsampled = cv2.resize(grid, (up_w, up_h), interpolation=cv2.INTER_CUBIC)
        masks[i] = upsampled[dy:dy + height, dx:dx + width]
    np.clip(masks, 0.0, 1.0, out=masks)
    return masks


def mask_batches(num_masks: int, chunk: int, max_batch: int | None) -> tuple[int, int]:
    """(masked images per request, requests): ``chunk`` a request, or the model's static batch if it has one."""
    batch_size = chunk if max_batch is None else max_batch
    return batch_size, math.ceil(num_masks / batch_size)


def masked_sum(compiled: Any, max_batch: int | None, prepared: PreparedInput, weights: Callable[[Any], np.ndarray],
               targets: int, masks: Mapping[str, Any], *, seed: int, requests: int, progress: Progress | None,
               name: str, counted: Callable[[int], None] | None = None) -> np.ndarray:
    """The RISE sum (T, H, W) at the input's resolution: sum over masks of weight(mask) * mask / (N * p).

    ``masks``: ``num_masks``, ``num_cells``, ``probability`` and ``chunk`` (masked images per request).
    ``weights(request)`` reads one finished request's (batch, T) weights (padded rows too). Masks are
    drawn in a fixed order from ``seed`` and accumulated in that order, so the result does not depend on
    which inference finishes first; ``counted(images)`` is told of each batch sent.
    """
    num_masks, num_cells, probability, chunk = (masks[k] for k in ("num_masks", "num_cells", "probability", "chunk"))
    input_size = prepared.spatial_size
    rng = np.random.default_rng(seed)
    accumulator = np.zeros((targets, input_size[0] * input_size[1]), np.float64)

    def add(finished: list[tuple[np.ndarray, np.ndarray]]) -> None:
        for masks, found in finished:  # in submission order: the sum does not depend on timing
            flat, weights = masks.reshape(len(masks), -1).astype(np.float64), found[: len(masks)].astype(np.float64)
            for t in range(targets):  # one product per target: a map does not depend on what it is explained with
                accumulator[t] += weights[:, t] @ flat

    batch_size, jobs = mask_batches(num_masks, chunk, max_batch)
    with RequestRing(compiled, max(1, requests), weights) as ring:
        for job in range(jobs):
            count = min(batch_size, num_masks - job * batch_size)
            drawn = rise_masks(rng, count, input_size, num_cells, probability)
            batch = prepared.masked(drawn)
            if count < batch_size and max_batch is not None:
                batch = np.concatenate([batch, np.zeros((batch_size - count,) + batch.shape[1:], np.float32)])
            add(ring.start({0: batch}, drawn))
            if counted is not None:
                counted(count)
            add(ring.ready())
            if progress is not None and progress(job + 1, jobs):
                raise Cancelled(f"{name} cancelled")
        add(ring.drain())
    maps = accumulator / (num_masks * probability)
    return maps.reshape(targets, *input_size).astype(np.float32)


def rise(score: ScoreFunction, prepared: PreparedInput, targets: Sequence[int], *, num_masks: int, num_cells: int,
         probability: float = 0.5, seed: int = 0, chunk: int = 8, requests: int = 4,
         progress: Progress | None = None) -> np.ndarray:
    """RISE maps (T, H, W) at the input's resolution: sum over masks of score[target] * mask / (N * p)."""
    targets = list(targets)

    def read(request: Any) -> np.ndarray:
        raw = np.array(request.get_output_tensor(score.output_index).data)
        return score.to_probabilities(raw.reshape(raw.shape[0], -1))[:, targets]  # padded rows too

    masks = dict(num_masks=num_masks, num_cells=num_cells, probability=probability, chunk=chunk)
    return masked_sum(score.compiled, score.max_batch, prepared, read, len(targets), masks, seed=seed,
                      requests=requests, progress=progress, name="RISE", counted=lambda images: score.count(1, images))


class RISE(BlackboxMethod):
    name = "rise"
    summary = "probability-weighted sum of random smooth masks"
    xai_name = "RISE"
    xai_options = {"num_masks": "num_masks", "num_cells": "num_cells", "probability": "prob"}
    xai_seed = True
    options = {"num_masks": None, "num_cells": None, "probability": 0.5, "chunk": 8}
    #: Same meaning and values as openvino-xai's presets.
    presets = {"speed": {"num_masks": 1000, "num_cells": 4}, "balance": {"num_masks": 5000, "num_cells": 8},
               "quality": {"num_masks": 10000, "num_cells": 12}}

    def check(self, settings: Mapping[str, Any]) -> None:
        for name in ("num_masks", "num_cells", "chunk"):
            require_int(self.name, name, settings[name])
        require_number(self.name, "probability", settings["probability"], 0.0, 1.0)

    def run(self, score: ScoreFunction, prepared: PreparedInput, targets: Sequence[int], options: Mapping[str, Any],
            *, seed: int, parallel: int, progress: Progress | None) -> np.ndarray:
        return rise(score, prepared, targets, seed=seed, requests=parallel, progress=progress, **options)


METHOD = RISE()
