"""AISE: Gaussian kernels placed by DIRECT search, kernel-density merged (openvino-xai's black-box default).

The independent searches (one per target and kernel width) run in threads, each with its own
infer request, and score the preserve / delete pair of every probe as one batch of two.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping, Sequence

import numpy as np

from ov_explain.core.prepared import PreparedInput
from ov_explain.explain.base import ExplainError
from ov_explain.explain.blackbox import Cancelled, Progress, ScoreFunction
from ov_explain.explain.method import BlackboxMethod, require_int, require_number

logger = logging.getLogger(__name__)

#: How AISE weights its probes: ``relative`` (score above the worst probe; the default) or ``raw``
#: (the score itself, as openvino-xai 1.1 does).
AISE_WEIGHTINGS = ("relative", "raw")


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


def aise(score: ScoreFunction, prepared: PreparedInput, targets: Sequence[int], *, iterations: int,
         kernel_widths: Sequence[float], solver_epsilon: float = 0.1, workers: int = 8, weighting: str = "relative",
         progress: Progress | None = None) -> np.ndarray:
    """AISE maps (T, H, W) at the input's resolution.

    For each target and kernel width, SciPy's DIRECT searches the kernel centre (x, y) that maximises
    p(target | image * kernel) - p(target | image * (1 - kernel)); every probed kernel, weighted by
    its score, is summed (per width, normalised by its max), the widths added and normalised again.

    ``weighting="relative"`` weights a probe by its score minus the worst probe's. On a confident
    photo every score is negative (deleting a patch barely hurts, keeping only a patch does), so
    ``"raw"`` weights — openvino-xai's — make the least-probed area the brightest and the final
    division by a negative maximum flips signs; ``"raw"`` exists to reproduce that library's maps.
    """
    from scipy.optimize import Bounds, direct

    input_size = prepared.spatial_size
    kernels = GaussianKernels(input_size)
    tensor = prepared.as_float()
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
            local.pair = np.empty((2,) + tensor.tensor.shape, np.float32)  # preserve, delete
        probes: list[tuple[float, float, float]] = []

        def objective(point: np.ndarray) -> float:
            if cancel.is_set():
                raise Cancelled("AISE cancelled")
            if len(probes) >= iterations:
                raise _BudgetSpent  # DIRECT finishes its sweep past maxfun; those probes are never used
            centre_x, centre_y = float(point[0]), float(point[1])
            probabilities = score.run(local.request, tensor.masked_pair(kernels(centre_y, centre_x, width),
                                                                        local.pair))
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


class AISE(BlackboxMethod):
    name = "aise"
    summary = "Gaussian kernels placed by SciPy's DIRECT search, kernel-density merged"
    xai_name = "AISE"
    xai_options = {"iterations": "num_iterations_per_kernel", "kernel_widths": "kernel_widths",
                   "solver_epsilon": "solver_epsilon"}
    options = {"iterations": None, "kernel_widths": None, "solver_epsilon": 0.1, "weighting": "relative"}
    #: Same meaning and values as openvino-xai's presets (iterations per kernel, kernel widths).
    presets = {"speed": {"iterations": 20, "kernel_widths": tuple(np.linspace(0.1, 0.25, 3))},
               "balance": {"iterations": 50, "kernel_widths": tuple(np.linspace(0.1, 0.25, 3))},
               "quality": {"iterations": 50, "kernel_widths": tuple(np.linspace(0.075, 0.25, 5))}}

    def check(self, settings: Mapping[str, Any]) -> None:
        require_int(self.name, "iterations", settings["iterations"])
        widths = settings["kernel_widths"]
        if isinstance(widths, (str, bytes)) or not np.ndim(widths) == 1 or not len(widths):
            raise ExplainError(f"{self.name}: kernel_widths must be a list of numbers, got {widths!r}")
        for width in widths:
            require_number(self.name, "each kernel width", width, 0.0)
        require_number(self.name, "solver_epsilon", settings["solver_epsilon"], 0.0)
        if settings["weighting"] not in AISE_WEIGHTINGS:
            raise ExplainError(f"{self.name}: weighting must be one of {list(AISE_WEIGHTINGS)}, "
                               f"got {settings['weighting']!r}")

    def run(self, score: ScoreFunction, prepared: PreparedInput, targets: Sequence[int], options: Mapping[str, Any],
            *, seed: int, parallel: int, progress: Progress | None) -> np.ndarray:
        return aise(score, prepared, targets, workers=parallel, progress=progress, **options)


METHOD = AISE()
