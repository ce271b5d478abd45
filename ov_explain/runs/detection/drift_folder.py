"""A detector drift folder's rows: one :class:`BoxDriftRow` per box as both deployments saw it (what the
detector drift writes and its report and exports read)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ov_explain.runs.audit.folder import Box, flat_columns, from_columns, read_typed_rows
from ov_explain.runs.drift.folder import ATTENTION_MOVED, ROWS, STABLE

BOX_LOST, BOX_NEW, CLASS_CHANGED, NO_BOXES = "Box_lost", "Box_new", "Class_changed", "No_boxes"
#: The cases of a detector's drift, most drifted first (folders; ``No_boxes`` rows have no file).
BOX_DRIFT_CASES = (BOX_LOST, BOX_NEW, CLASS_CHANGED, ATTENTION_MOVED, STABLE)
DEPLOYMENTS = ("reference", "candidate")
_BOXES = {name: name.removesuffix("_box") for name in ("reference_box", "candidate_box", "reference_map_box",
                                                       "candidate_map_box")}


@dataclass
class BoxDriftRow:
    """One box of one image as both deployments saw it (``None`` on the side that did not find it)."""

    key: str
    source: str
    stem: str
    width: int
    height: int
    case: str
    target_rank: int
    targets_total: int
    reference: int | None  # position in the reference's detections
    candidate: int | None
    reference_class: str | None
    candidate_class: str | None
    reference_score: float | None
    candidate_score: float | None
    score_change: float | None  # candidate - reference
    box_iou: float | None  # of the two deployments' boxes
    correlation: float | None
    iou_top10: float | None
    peak_shift_cells: float | None
    peak_shift_fraction: float | None
    reference_case: str | None  # each deployment's audit case of the box (against the ground truth, or by score)
    candidate_case: str | None
    image_path: str | None
    reference_map_path: str | None = None
    candidate_map_path: str | None = None
    reference_box: Box | None = None
    candidate_box: Box | None = None
    reference_map_box: Box | None = None
    candidate_map_box: Box | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.case not in (*BOX_DRIFT_CASES, NO_BOXES):
            raise ValueError(f"case: unknown {self.case!r}")
        if not 0 <= self.target_rank < self.targets_total:
            raise ValueError(f"target_rank {self.target_rank} outside 0..{self.targets_total - 1}")
        if (self.case == NO_BOXES) != (self.image_path is None):
            raise ValueError(f"image_path: a {self.case} row "
                             f"{'has no' if self.case == NO_BOXES else 'needs a'} picture")

    def to_dict(self) -> dict[str, Any]:
        return flat_columns(self, _BOXES)

    @classmethod
    def from_dict(cls, data: Any) -> "BoxDriftRow":
        return from_columns(cls, data, _BOXES)


def read_box_drift_rows(out: Path) -> list[BoxDriftRow]:
    """The rows of a detector's drift folder; a damaged row raises ``ValueError`` naming its line."""
    return list(read_typed_rows(out / ROWS, BoxDriftRow.from_dict))
