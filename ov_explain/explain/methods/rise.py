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
from ov_explain.explain.base import ExplainError
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


#: Masks between two looks at whether the map has converged (a multiple of every chunk size used here).
CHECK_EVERY = 128


def masked_sum(compiled: Any, max_batch: int | None, prepared: PreparedInput, weights: Callable[[Any], np.ndarray],
               targets: int, masks: Mapping[str, Any], *, seed: int, requests: int, progress: Progress | None,
               name: str, counted: Callable[[int], None] | None = None) -> np.ndarray:
    """The RISE sum (T, H, W) at the input's resolution: sum over masks of weight(mask) * mask / (N * p).

    ``masks``: ``num_masks``, ``num_cells``, ``probability`` and ``chunk`` (masked images per request), and
    optionally ``baseline`` and ``converged`` (see :class:`MaskSum`). ``weights(request)`` reads one finished
    request's (batch, T) weights (padded rows too). Masks are drawn in a fixed order from ``seed`` and
    accumulated in that order, and convergence is looked at only between whole checkpoints, so neither the map
    nor the number of masks used depends on which inference finishes first; ``counted(images)`` is told of
    each batch sent.
    """
    num_masks, num_cells, probability, chunk = (masks[k] for k in ("num_masks", "num_cells", "probability", "chunk"))
    input_size = prepared.spatial_size
    rng = np.random.default_rng(seed)
    total = MaskSum(targets, input_size, probability, baseline=masks.get("baseline", False))
    converged = masks.get("converged")
    if converged is not None and converged >= 1:
        converged = None  # 1: every mask, whatever the estimate says

    def add(finished: list[tuple[np.ndarray, np.ndarray]]) -> None:
        for (job, drawn), found in finished:  # in submission order: the sum does not depend on timing
            total.add(job, drawn, found[: len(drawn)])

    batch_size, jobs = mask_batches(num_masks, chunk, max_batch)
    check = max(1, CHECK_EVERY // batch_size) if converged is not None else 0
    with RequestRing(compiled, max(1, requests), weights) as ring:
        for job in range(jobs):
            count = min(batch_size, num_masks - job * batch_size)
            drawn = rise_masks(rng, count, input_size, num_cells, probability)
            batch = prepared.masked(drawn)
            if count < batch_size and max_batch is not None:
                batch = np.concatenate([batch, np.zeros((batch_size - count,) + batch.shape[1:], np.float32)])
            add(ring.start({0: batch}, (job, drawn)))
            if counted is not None:
                counted(count)
            add(ring.ready())
            if progress is not None and progress(job + 1, jobs):
                raise Cancelled(f"{name} cancelled")
            if check and (job + 1) % check == 0 and job + 1 < jobs:
                add(ring.drain())  # a whole checkpoint: the decision sees the same masks whatever the timing
                if total.masks >= 2 * CHECK_EVERY and total.reliability().min() >= converged:
                    logger.debug("%s: converged after %d of %d masks", name, total.masks, num_masks)
                    break
        add(ring.drain())
    return total.maps().reshape(targets, *input_size).astype(np.float32)


class MaskSum:
    """The running RISE sum of two interleaved halves of the masks (even and odd batches), so that how far the
    map has converged can be estimated from the maps themselves.

    ``baseline``: each weight's deviation from the mean weight is summed, and the mean added back — the same
    expected map (RISE's E[w | pixel kept]), without the noise of how often each pixel happened to be kept (a
    control variate; measured on the bundled photos, speed preset, against 10,000 masks: r at 384 masks 0.93 -
    0.99, plain RISE at 1,000 masks 0.78 - 0.99)."""

    def __init__(self, targets: int, input_size: tuple[int, int], probability: float, *, baseline: bool) -> None:
        pixels = input_size[0] * input_size[1]
        self.probability, self.baseline = probability, baseline
        self.weighted = np.zeros((2, targets, pixels), np.float64)  # sum of w * mask, per half
        self.kept = np.zeros((2, pixels), np.float64)  # sum of masks, per half
        self.weight = np.zeros((2, targets), np.float64)  # sum of w, per half
        self.count = np.zeros(2, np.int64)

    @property
    def masks(self) -> int:
        return int(self.count.sum())

    def add(self, job: int, masks: np.ndarray, weights: np.ndarray) -> None:
        half = job % 2
        flat, weights = masks.reshape(len(masks), -1).astype(np.float64), weights.astype(np.float64)
        for t in range(weights.shape[1]):  # one product per target: a map does not depend on what is beside it
            self.weighted[half, t] += weights[:, t] @ flat
        self.kept[half] += flat.sum(axis=0)
        self.weight[half] += weights.sum(axis=0)
        self.count[half] += len(masks)

    def _map(self, weighted: np.ndarray, kept: np.ndarray, weight: np.ndarray, count: int) -> np.ndarray:
        plain = weighted / (count * self.probability)
        if not self.baseline:
            return plain
        mean = weight / count
        return plain - mean[:, None] * (kept[None] / (count * self.probability)) + mean[:, None]

    def maps(self) -> np.ndarray:
        """(T, H*W): the map of every mask so far."""
        return self._map(self.weighted.sum(axis=0), self.kept.sum(axis=0), self.weight.sum(axis=0), self.masks)

    def reliability(self) -> np.ndarray:
        """(T,): the estimated correlation of the current map with the map of endless masks: the two halves'
        correlation r, stepped up to the whole (Spearman-Brown, 2r / (1 + r)), and its square root."""
        halves = [self._map(self.weighted[h], self.kept[h], self.weight[h], int(self.count[h])) for h in (0, 1)]
        found = []
        for a, b in zip(*halves):
            a, b = a - a.mean(), b - b.mean()
            denominator = float(np.sqrt((a @ a) * (b @ b)))
            r = float(a @ b) / denominator if denominator > 0 else 1.0  # a flat map has nothing left to move
            found.append(np.sqrt(max(0.0, 2 * r / (1 + r))) if r > -1 else 0.0)
        return np.array(found)


def rise(score: ScoreFunction, prepared: PreparedInput, targets: Sequence[int], *, num_masks: int, num_cells: int,
         probability: float = 0.5, seed: int = 0, chunk: int = 8, requests: int = 4, baseline: bool = True,
         converged: float | None = None, progress: Progress | None = None) -> np.ndarray:
    """RISE maps (T, H, W) at the input's resolution: sum over masks of score[target] * mask / (N * p), with the
    mean score as ``baseline`` and stopping early once every map is ``converged`` (None: all masks)."""
    targets = list(targets)

    def read(request: Any) -> np.ndarray:
        raw = np.array(request.get_output_tensor(score.output_index).data)
        return score.to_probabilities(raw.reshape(raw.shape[0], -1))[:, targets]  # padded rows too

    masks = dict(num_masks=num_masks, num_cells=num_cells, probability=probability, chunk=chunk, baseline=baseline,
                 converged=converged)
    return masked_sum(score.compiled, score.max_batch, prepared, read, len(targets), masks, seed=seed,
                      requests=requests, progress=progress, name="RISE", counted=lambda images: score.count(1, images))


class RISE(BlackboxMethod):
    name = "rise"
    summary = "probability-weighted sum of random smooth masks, the mean score as baseline"
    xai_name = "RISE"
    xai_options = {"num_masks": "num_masks", "num_cells": "num_cells", "probability": "prob"}
    xai_seed = True
    options = {"num_masks": None, "num_cells": None, "probability": 0.5, "chunk": 8, "baseline": True,
               "converged": None}
    #: openvino-xai's masks and cells for each preset name (the most masks drawn), and the estimated
    #: correlation with the converged map at which it stops sooner (``converged=1``: every mask, and with
    #: ``baseline=False`` the classic RISE sum openvino-xai computes).
    presets = {"speed": {"num_masks": 1000, "num_cells": 4, "converged": 0.96},
               "balance": {"num_masks": 5000, "num_cells": 8, "converged": 0.98},
               "quality": {"num_masks": 10000, "num_cells": 12, "converged": 0.99}}

    def check(self, settings: Mapping[str, Any]) -> None:
        for name in ("num_masks", "num_cells", "chunk"):
            require_int(self.name, name, settings[name])
        require_number(self.name, "probability", settings["probability"], 0.0, 1.0)
        if "baseline" in settings and not isinstance(settings["baseline"], bool):
            raise ExplainError(f"{self.name}: baseline must be true or false, got {settings['baseline']!r}")
        value = settings.get("converged")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1):
            raise ExplainError(f"{self.name}: converged must be a number in (0, 1] (1: every mask), got {value!r}")

    def run(self, score: ScoreFunction, prepared: PreparedInput, targets: Sequence[int], options: Mapping[str, Any],
            *, seed: int, parallel: int, progress: Progress | None) -> np.ndarray:
        return rise(score, prepared, targets, seed=seed, requests=parallel, progress=progress, **options)


METHOD = RISE()
