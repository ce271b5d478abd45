"""A drift folder's names and rows: what the drift audit writes and its report reads."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ov_explain.runs.audit.folder import Box, box_columns, read_box, read_typed_rows

logger = logging.getLogger(__name__)

SETTINGS_FILE, ROWS, ERRORS, ROWS_CSV, ERRORS_CSV, SUMMARY, PLOT, REPORT = (
    "drift.json", "drift.jsonl", "errors.jsonl", "drift.csv", "errors.csv", "summary.json", "correlation.png",
    "report.html")
PREDICTION_CHANGED, ATTENTION_MOVED, STABLE = "Prediction_changed", "Attention_moved", "Stable"
#: A drift audit's cases, most drifted first (an image counts in its most drifted row's case).
CASES = (PREDICTION_CHANGED, ATTENTION_MOVED, STABLE)
FORMAT_VERSION = 1
#: The two deployments, in the order their maps are kept (``{image name}.{deployment}.npy``).
DEPLOYMENTS = ("reference", "candidate")
#: Columns that are not plain values: written flat by ``to_dict`` and read back by ``from_dict``.
_SPECIAL = {"timings_ms", "reference_map_box", "candidate_map_box"}


@dataclass
class DriftRow:
    """One image and one explained class, as both deployments saw it."""

    key: str
    source: str
    stem: str
    ground_truth: str | None
    ground_truth_index: int | None
    target_rank: int
    targets_total: int
    target_index: int
    target_class: str
    target_role: str
    reference_top1_index: int
    reference_top1_class: str
    reference_top1_probability: float
    candidate_top1_index: int
    candidate_top1_class: str
    candidate_top1_probability: float
    top1_agreement: bool
    reference_probability: float  # of the target class
    candidate_probability: float
    probability_change: float  # candidate - reference, for the target class
    reference_case: str
    candidate_case: str
    correlation: float
    iou_top10: float
    peak_shift_cells: float
    peak_shift_fraction: float
    case: str  # the drift case (the audit cases of each deployment are reference_case / candidate_case)
    image_path: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    # Both maps, kept for exports (None in drift audits made before they were kept).
    width: int | None = None
    height: int | None = None
    reference_map_path: str | None = None
    candidate_map_path: str | None = None
    reference_map_box: Box | None = None
    candidate_map_box: Box | None = None

    def __post_init__(self) -> None:
        if self.case not in CASES:
            raise ValueError(f"case: unknown {self.case!r}")
        if not 0 <= self.target_rank < self.targets_total:
            raise ValueError(f"target_rank {self.target_rank} outside 0..{self.targets_total - 1}")
        if not isinstance(self.key, str) or not isinstance(self.image_path, str):
            raise ValueError("key and image_path must be strings")

    def map_path(self, deployment: str) -> str | None:
        return self.reference_map_path if deployment == "reference" else self.candidate_map_path

    def map_box(self, deployment: str) -> Box | None:
        return self.reference_map_box if deployment == "reference" else self.candidate_map_box

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in _SPECIAL}
        data.update(self.timings_ms)
        for deployment in DEPLOYMENTS:
            data.update(box_columns(f"{deployment}_map", self.map_box(deployment)))
        return data

    @classmethod
    def from_dict(cls, data: Any) -> "DriftRow":
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        if "category" in data and "case" not in data:  # a row of a version before "case" was the one word
            data = {("case" if k == "category" else k): v for k, v in data.items()}
        fields = [f for f in dataclasses.fields(cls) if f.name not in _SPECIAL]
        missing = sorted(f.name for f in fields if f.name not in data and f.default is dataclasses.MISSING)
        if missing:
            raise ValueError(f"missing column {missing[0]!r}")
        timings = {k: float(v) for k, v in data.items() if k.endswith("_ms")}
        return cls(**{f.name: data[f.name] for f in fields if f.name in data}, timings_ms=timings,
                   reference_map_box=read_box(data, "reference_map"), candidate_map_box=read_box(data, "candidate_map"))


def read_drift_rows(out: Path) -> list[DriftRow]:
    return list(read_typed_rows(out / ROWS, DriftRow.from_dict))
