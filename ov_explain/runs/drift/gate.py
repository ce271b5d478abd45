"""The deployment gate: ``--fail-on top1-agreement<0.99,map-correlation-p05<0.8`` checked against a summary."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Sequence

from ov_explain.runs.drift.summary import DriftSummary
from ov_explain.runs.engine import FolderError

logger = logging.getLogger(__name__)

#: A classifier's drift metrics; a detector's (box by box, see ov_explain.runs.detection.drift) share the map ones.
CLASSIFIER_METRICS = ("top1-agreement", "map-correlation-median", "map-correlation-p05", "iou-median",
                      "prediction-changed", "attention-moved")
DETECTION_METRICS = ("box-agreement", "map-correlation-median", "map-correlation-p05", "iou-median", "boxes-lost",
                     "boxes-new", "attention-moved")
GATE_METRICS = tuple(dict.fromkeys(CLASSIFIER_METRICS + DETECTION_METRICS))


@dataclass(frozen=True)
class Limit:
    """``metric<value`` or ``metric>value``: crossed when the metric is on the wrong side."""

    metric: str
    operator: str
    value: float

    def crossed(self, metrics: dict[str, float | None]) -> bool:
        actual = metrics.get(self.metric)
        if actual is None:
            return True  # nothing measured cannot pass a gate
        return actual < self.value if self.operator == "<" else actual > self.value

    def __str__(self) -> str:
        return f"{self.metric}{self.operator}{self.value:g}"


def parse_gate(text: str) -> list[Limit]:
    """``top1-agreement<0.99,map-correlation-p05<0.8``: a comma-separated list of limits."""
    limits = []
    for part in (p.strip() for p in text.split(",")):
        match = re.fullmatch(r"([a-z0-9-]+)\s*([<>])\s*([-+]?\d*\.?\d+)", part)
        if match is None or match[1] not in GATE_METRICS:
            raise FolderError(f"--fail-on: {part!r} is not METRIC<VALUE or METRIC>VALUE with a metric of "
                              f"{', '.join(GATE_METRICS)}")
        limits.append(Limit(match[1], match[2], float(match[3])))
    return limits


def check_gate(summary: DriftSummary | Any, limits: Sequence[Limit]) -> list[str]:
    """The limits the summary crosses, each with the measured value (empty: the gate passes); a metric of the
    other task (top-1 agreement of a detector) is not measured, which no gate passes."""
    metrics = summary.metrics()
    return [f"{limit} (measured {metrics[limit.metric]})" if limit.metric in metrics else
            f"{limit} (not measured for this model: use {', '.join(metrics)})"
            for limit in limits if limit.crossed(metrics)]
