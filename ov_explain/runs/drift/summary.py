"""A drift folder's closing files: summary.json, the CSVs and the correlation plot, from its rows."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ov_explain.core.storage import atomic_write_bytes, atomic_write_text, read_jsonl
from ov_explain.runs.audit.folder import ERROR_COLUMNS, ErrorRow
from ov_explain.runs.audit.summary import write_csv
from ov_explain.runs.drift.folder import (
    ATTENTION_MOVED,
    CASES,
    ERRORS,
    ERRORS_CSV,
    PLOT,
    PREDICTION_CHANGED,
    ROWS_CSV,
    STABLE,
    SUMMARY,
    read_drift_rows,
)

logger = logging.getLogger(__name__)


@dataclass
class DriftSummary:
    """What changed between the two deployments, over every image in the folder."""

    out_dir: Path
    images: int
    rows: int
    errors: int
    resumed: int
    top1_agreement: float | None
    cases: dict[str, int]
    case_transitions: dict[str, dict[str, int]]
    map_correlation_median: float | None
    map_correlation_p05: float | None
    iou_top10_median: float | None
    worst_classes: list[dict[str, Any]]
    reference: dict[str, Any]
    candidate: dict[str, Any]
    thresholds: dict[str, float]
    seconds: float
    gate: list[str] = field(default_factory=list)  # limits crossed (empty: passed, or no gate)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["out_dir"] = str(self.out_dir)
        return data

    def metrics(self) -> dict[str, float | None]:
        """The values a ``--fail-on`` gate can test, by name."""
        images = max(1, self.images)
        return {"top1-agreement": self.top1_agreement, "map-correlation-median": self.map_correlation_median,
                "map-correlation-p05": self.map_correlation_p05, "iou-median": self.iou_top10_median,
                "prediction-changed": self.cases.get(PREDICTION_CHANGED, 0) / images,
                "attention-moved": self.cases.get(ATTENTION_MOVED, 0) / images}


def write_drift_summary(out: Path, settings: dict[str, Any], resumed: int, seconds: float) -> DriftSummary:
    """summary.json, the CSVs and the correlation plot, from the folder's rows."""
    rows = read_drift_rows(out)
    errors = [ErrorRow.from_dict(e) for e in read_jsonl(out / ERRORS) if isinstance(e, dict)]
    write_csv(out / ROWS_CSV, [r.to_dict() for r in rows])
    write_csv(out / ERRORS_CSV, [e.to_dict() for e in errors], ERROR_COLUMNS)
    images = [r for r in rows if r.target_rank == 0]
    per_image: dict[str, str] = {}  # an image counts in its most drifted row's case
    for row in rows:
        current = per_image.get(row.key, STABLE)
        per_image[row.key] = min(current, row.case, key=CASES.index)
    transitions: dict[str, Counter] = defaultdict(Counter)
    for row in images:
        transitions[row.reference_case][row.candidate_case] += 1
    correlations = np.array([r.correlation for r in rows], np.float64)
    by_class: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        by_class[row.target_class].append(row.correlation)
    worst = sorted(({"class": c, "median_correlation": round(float(np.median(v)), 4), "maps": len(v)}
                    for c, v in by_class.items()), key=lambda w: (w["median_correlation"], w["class"]))[:10]
    thresholds = settings["thresholds"]
    summary = DriftSummary(
        out_dir=out, images=len(images), rows=len(rows), errors=len(errors), resumed=resumed,
        top1_agreement=round(sum(r.top1_agreement for r in images) / len(images), 4) if images else None,
        cases={c: n for c in CASES if (n := sum(case == c for case in per_image.values()))},
        case_transitions={k: dict(v) for k, v in sorted(transitions.items())},
        map_correlation_median=round(float(np.median(correlations)), 4) if rows else None,
        map_correlation_p05=round(float(np.percentile(correlations, 5)), 4) if rows else None,
        iou_top10_median=round(float(np.median([r.iou_top10 for r in rows])), 4) if rows else None,
        worst_classes=worst, reference=settings["reference"], candidate=settings["candidate"],
        thresholds=thresholds, seconds=round(seconds, 3))
    atomic_write_text(out / SUMMARY, json.dumps(summary.to_dict(), indent=2) + "\n")
    if rows:
        atomic_write_bytes(out / PLOT, correlation_plot(correlations, thresholds["min_correlation"]))
    return summary


def correlation_plot(correlations: np.ndarray, threshold: float) -> bytes:
    """A histogram of map correlations with the "attention moved" threshold, as PNG bytes."""
    import io

    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state between threads

    figure = Figure(figsize=(6, 3.2), dpi=100)
    axes = figure.add_subplot()
    axes.hist(np.clip(correlations, -1, 1), bins=np.linspace(-1, 1, 41), color="#4472c4")
    axes.axvline(threshold, color="#c00000", linestyle="--", label=f"attention moved below {threshold:.2f}")
    axes.set_xlabel("map correlation (reference vs candidate)")
    axes.set_ylabel("maps")
    axes.legend(loc="upper left")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
