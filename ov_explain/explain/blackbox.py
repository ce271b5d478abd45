"""What every black-box method shares: the score function over a compiled model, progress, cancelling.

The methods themselves (RISE, AISE) are in :mod:`ov_explain.explain.methods`; they perturb a
:class:`~ov_explain.core.prepared.PreparedInput` and read only class probabilities.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ov_explain.explain.base import ExplainError

logger = logging.getLogger(__name__)

#: Called with (done, total) after each unit of work; return True to cancel.
Progress = Callable[[int, int], "bool | None"]


class Cancelled(ExplainError):
    """The progress callback asked to stop."""


@dataclass
class ScoreFunction:
    """Class probabilities for a batch of prepared inputs, on a compiled model; counts inference
    requests (``calls``) and the images they scored (``images``, padding not counted).

    ``to_probabilities`` turns raw outputs into probabilities (softmax for logits).
    """

    compiled: Any
    output_index: int
    to_probabilities: Callable[[np.ndarray], np.ndarray]
    max_batch: int | None  # None: dynamic batch
    calls: int = 0
    images: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def count(self, n: int, images: int = 0) -> None:
        with self._lock:
            self.calls += n
            self.images += images

    def request(self) -> Any:
        return self.compiled.create_infer_request()

    def raw(self, request: Any, batch: np.ndarray) -> np.ndarray:
        """Raw outputs (N, K) for one batch on one request: split into, or padded to, the model's
        static batch when it has one."""
        limit = self.max_batch
        if limit is not None and batch.shape[0] > limit:
            return np.concatenate([self.raw(request, batch[i:i + limit]) for i in range(0, batch.shape[0], limit)])
        count = batch.shape[0]
        if limit is not None and count < limit:
            batch = np.concatenate([batch, np.zeros((limit - count,) + batch.shape[1:], batch.dtype)])
        request.infer({0: batch})
        self.count(1, count)
        return np.array(request.get_output_tensor(self.output_index).data).reshape(batch.shape[0], -1)[:count]

    def run(self, request: Any, batch: np.ndarray) -> np.ndarray:
        """Probabilities (N, K) for one batch on one request."""
        return self.to_probabilities(self.raw(request, batch))
