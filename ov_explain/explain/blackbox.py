"""Black-box methods: RISE and AISE perturb the preprocessed input and only read class probabilities.

Both keep the device busy: RISE keeps chunks of masked inputs in flight on a ring of infer requests;
AISE runs its independent DIRECT searches (one per target and kernel width) in threads, each with its
own infer request, and evaluates the preserve/delete pair of every probe as one batch of two. Memory is
bounded: RISE holds only the masks of in-flight chunks and one float32 accumulator per target.
"""

from __future__ import annotations

import logging
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from ..devices import RequestRing
from .base import ExplainError

logger = logging.getLogger(__name__)

#: Same meaning as openvino-xai's presets.
RISE_PRESETS = {"speed": (1000, 4), "balance": (5000, 8), "quality": (10000, 12)}
AISE_PRESETS = {"speed": (20, np.linspace(0.1, 0.25, 3)), "balance": (50, np.linspace(0.1, 0.25, 3)),
                "quality": (50, np.linspace(0.075, 0.25, 5))}

#: Called with (done, total) after each unit of work; return True to cancel.
Progress = Callable[[int, int], "bool | None"]


class Cancelled(ExplainError):
    """The progress callback asked to stop."""


@dataclass
class ScoreFunction:
    """Class probabilities for a batch of preprocessed inputs, on a compiled model.

    ``to_probabilities`` turns raw outputs into probabilities (softmax for logits).
    """

    compiled: Any
    output_index: int
    to_probabilities: Callable[[np.ndarray], np.ndarray]
    max_batch: int | None  # None: dynamic batch
    calls: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def count(self, n: int) -> None:
        with self._lock:
            self.calls += n

    def request(self) -> Any:
        return self.compiled.create_infer_request()

    def run(self, request: Any, batch: np.ndarray) -> np.ndarray:
        """Probabilities (N, K) for one batch on one request (split if the model takes batch 1)."""
        if self.max_batch is not None and batch.shape[0] != self.max_batch:
            return np.concatenate([self.run(request, batch[i:i + 1]) for i in range(batch.shape[0])])
        request.infer({0: batch})
        self.count(1)
        raw = np.array(request.get_output_tensor(self.output_index).data).reshape(batch.shape[0], -1)
        return self.to_probabilities(raw)


def _mask_axes(layout: str) -> tuple[int, ...]:
    """Where to broadcast an (H, W) mask over a (N, ...) input batch."""
    return (slice(None), None, slice(None), slice(None)) if layout == "NCHW" else \
        (slice(None), slice(None), slice(None), None)


# ----- RISE -------------------------------------------------------------------------------------------
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


def rise(score: ScoreFunction, tensor: np.ndarray, layout: str, targets: Sequence[int], *, num_masks: int,
         num_cells: int, probability: float = 0.5, seed: int = 0, chunk: int = 8, requests: int = 4,
         progress: Progress | None = None) -> np.ndarray:
    """RISE maps (T, H, W) at model-input resolution: sum over masks of score[target] * mask / (N * p).

    Masks are drawn in a fixed order from ``seed`` and accumulated in that order, so the result does
    not depend on which inference finishes first.
    """
    if num_masks < 1 or num_cells < 1 or not 0 < probability < 1:
        raise ExplainError(f"RISE needs num_masks >= 1, num_cells >= 1 and 0 < prob < 1; got {num_masks}, "
                           f"{num_cells}, {probability}")
    input_size = tensor.shape[1:3] if layout == "NCHW" else tensor.shape[0:2]
    rng = np.random.default_rng(seed)
    targets = list(targets)
    accumulator = np.zeros((len(targets), input_size[0] * input_size[1]), np.float64)
    axes = _mask_axes(layout)

    def read(request: Any) -> np.ndarray:
        raw = np.array(request.get_output_tensor(score.output_index).data)
        return score.to_probabilities(raw.reshape(raw.shape[0], -1))[:, targets]  # padded rows too

    def add(finished: list[tuple[np.ndarray, np.ndarray]]) -> None:
        for masks, scores in finished:  # in submission order: the sum does not depend on timing
            accumulator[:] += scores[: len(masks)].T.astype(np.float64) @ masks.reshape(len(masks), -1)

    batch_size = chunk if score.max_batch is None else score.max_batch
    jobs = math.ceil(num_masks / batch_size)
    with RequestRing(score.compiled, requests, read) as ring:
        for job in range(jobs):
            count = min(batch_size, num_masks - job * batch_size)
            masks = rise_masks(rng, count, input_size, num_cells, probability)
            batch = (tensor[None] * masks[axes]).astype(np.float32)
            if count < batch_size and score.max_batch is not None:
                batch = np.concatenate([batch, np.zeros((batch_size - count,) + batch.shape[1:], np.float32)])
            add(ring.start({0: batch}, masks))
            score.count(1)
            add(ring.ready())
            if progress is not None and progress(job + 1, jobs):
                raise Cancelled("RISE cancelled")
        add(ring.drain())
    maps = accumulator / (num_masks * probability)
    return maps.reshape(len(targets), *input_size).astype(np.float32)


# ----- AISE -------------------------------------------------------------------------------------------
class GaussianKernels:
    """2-D Gaussian bumps on the unit square, sampled on the model-input grid, peak 1."""

    def __init__(self, input_size: tuple[int, int]) -> None:
        self.ys = np.linspace(0, 1, input_size[0], dtype=np.float32)
        self.xs = np.linspace(0, 1, input_size[1], dtype=np.float32)

    def __call__(self, centre_y: float, centre_x: float, width: float) -> np.ndarray:
        # Separable: H + W exponentials and one outer product instead of H * W exponentials.
        scale = np.float32(-0.5 / (width * width))
        rows = np.exp(scale * (self.ys - np.float32(centre_y)) ** 2)
        columns = np.exp(scale * (self.xs - np.float32(centre_x)) ** 2)
        return np.outer(rows, columns)


class _BudgetSpent(Exception):
    """Stops a DIRECT search once it has made the probes the map uses."""


#: How AISE weights its probes: ``relative`` (score above the worst probe; the default) or ``raw``
#: (the score itself, as openvino-xai 1.1 does).
AISE_WEIGHTINGS = ("relative", "raw")


def aise(score: ScoreFunction, tensor: np.ndarray, layout: str, targets: Sequence[int], *,
         iterations: int, kernel_widths: Sequence[float], solver_epsilon: float = 0.1, workers: int = 8,
         weighting: str = "relative", progress: Progress | None = None) -> np.ndarray:
    """AISE maps (T, H, W) at model-input resolution.

    For each target and kernel width, SciPy's DIRECT searches the kernel centre (x, y) that maximises
    p(target | image * kernel) - p(target | image * (1 - kernel)); every probed kernel, weighted by
    its score, is summed (per width, normalised by its max), the widths added and normalised again.

    ``weighting="relative"`` weights a probe by its score minus the worst probe's. On a confident
    photo every score is negative (deleting a patch barely hurts, keeping only a patch does), so
    ``"raw"`` weights — openvino-xai's — make the least-probed area the brightest and the final
    division by a negative maximum flips signs; ``"raw"`` exists to reproduce that library's maps.
    """
    from scipy.optimize import Bounds, direct

    if iterations < 1 or not len(kernel_widths):
        raise ExplainError(f"AISE needs iterations >= 1 and at least one kernel width; got {iterations}, "
                           f"{list(kernel_widths)}")
    if weighting not in AISE_WEIGHTINGS:
        raise ExplainError(f"AISE weighting must be one of {list(AISE_WEIGHTINGS)}, got {weighting!r}")
    input_size = tensor.shape[1:3] if layout == "NCHW" else tensor.shape[0:2]
    kernels = GaussianKernels(input_size)
    axes = _mask_axes(layout)
    jobs = [(t, float(w)) for t in range(len(targets)) for w in kernel_widths]
    local = threading.local()
    done = [0]
    cancel = threading.Event()
    lock = threading.Lock()

    def search(job: tuple[int, float]) -> tuple[int, np.ndarray]:
        target_pos, width = job
        target = targets[target_pos]
        if not hasattr(local, "request"):
            local.request = score.request()
            local.pair = np.empty((2,) + tensor.shape, np.float32)  # preserve, delete
        probes: list[tuple[float, float, float]] = []

        def objective(point: np.ndarray) -> float:
            if cancel.is_set():
                raise Cancelled("AISE cancelled")
            if len(probes) >= iterations:
                raise _BudgetSpent  # DIRECT finishes its sweep past maxfun; those probes are never used
            centre_x, centre_y = float(point[0]), float(point[1])
            kernel = kernels(centre_y, centre_x, width)[axes[1:]]
            np.multiply(tensor, kernel, out=local.pair[0])
            np.subtract(tensor, local.pair[0], out=local.pair[1])  # image * (1 - kernel)
            probabilities = score.run(local.request, local.pair)
            value = float(probabilities[0, target] - probabilities[1, target])
            probes.append((centre_y, centre_x, value))
            return -value

        try:
            direct(objective, Bounds([0.0, 0.0], [1.0, 1.0]), eps=solver_epsilon, maxfun=iterations,
                   locally_biased=False)
        except _BudgetSpent:
            pass
        weighted = np.zeros(input_size, np.float32)
        floor = min(value for _, _, value in probes) if weighting == "relative" else 0.0
        for centre_y, centre_x, value in probes:
            weighted += kernels(centre_y, centre_x, width) * (value - floor)
        peak = weighted.max()
        if peak > 0:
            weighted /= peak
        with lock:
            done[0] += 1
            if progress is not None and progress(done[0], len(jobs)):
                cancel.set()
        return target_pos, weighted

    maps = np.zeros((len(targets),) + tuple(input_size), np.float32)
    # More searches in flight than device streams: while one thread runs Python (DIRECT, kernels),
    # another's inference keeps the device busy.
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(jobs)))) as pool:
        for target_pos, weighted in pool.map(search, jobs):
            maps[target_pos] += weighted
    if cancel.is_set():
        raise Cancelled("AISE cancelled")
    for i in range(len(targets)):
        peak = maps[i].max()
        if peak > 0 or (weighting == "raw" and peak != 0):  # openvino-xai divides by any maximum
            maps[i] /= peak
    return maps
