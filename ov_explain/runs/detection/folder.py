"""A detection audit folder's rows: one :class:`BoxRow` per box (a detection, or a ground-truth box no detection
found), in the classifier audit's files (``audit.json``, ``manifest.jsonl``, ``errors.jsonl``, ...).

An image with no detection and no ground-truth box still gets one row (case ``No_boxes``, no files), so the
folder records that it was audited and a resume does not redo it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ov_explain.runs.audit.folder import MANIFEST, Box, flat_columns, from_columns, read_typed_rows
from ov_explain.runs.detection.cases import BOX_CASES, FALSE_NEGATIVE

#: The row of an image without a box (detected or in the ground truth): no map, no file.
NO_BOXES = "No_boxes"
ROW_CASES = (*BOX_CASES, NO_BOXES)
#: The boxes a row carries (field -> column prefix: ``{prefix}_left`` .. ``_bottom``, original-image pixels).
BOX_FIELDS = {"detected_box": "detected", "truth_box": "truth", "map_box": "map"}


@dataclass
class BoxRow:
    """One box of one image: the detection and / or the ground-truth box it was compared with, its case, what
    its map explains (``target_*``: the detection's class and score, or for a missed box its class's score at
    the anchor the map reads), the map's files and provenance."""

    key: str
    source: str
    stem: str
    width: int
    height: int
    case: str
    target_rank: int  # the box's number in the image (``_box{k}`` in file names)
    targets_total: int  # rows of this image
    detections: int  # boxes the detector kept in this image
    truths: int | None  # ground-truth boxes of the image (None: the dataset has none for it)
    detection: int | None  # position in the image's detections (None: a missed ground-truth box)
    truth: int | None  # position in the image's ground-truth boxes (None: nothing under the detection)
    detected_class: str | None
    detected_index: int | None
    score: float | None
    ground_truth: str | None  # the class name as the dataset writes it
    ground_truth_class: str | None  # the model's class it maps to
    ground_truth_index: int | None
    iou: float | None
    target_class: str | None
    target_index: int | None
    target_score: float | None
    anchor: int | None  # the proposal the map reads
    method: str
    mode: str
    device: str
    precision: str
    target_layer: str | None
    readout: str | None
    inferences: int
    overlay_path: str | None
    raw_path: str | None = None
    rgba_path: str | None = None
    detected_box: Box | None = None
    truth_box: Box | None = None
    map_box: Box | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.case not in ROW_CASES:
            raise ValueError(f"case: unknown {self.case!r}")
        if not 0 <= self.target_rank < self.targets_total:
            raise ValueError(f"target_rank {self.target_rank} outside 0..{self.targets_total - 1}")
        if not isinstance(self.key, str):
            raise ValueError("key must be a string")
        if (self.case == NO_BOXES) != (self.overlay_path is None):
            raise ValueError(f"overlay_path: a {self.case} row {'has no' if self.case == NO_BOXES else 'needs a'} map")
        if self.case == FALSE_NEGATIVE and (self.truth is None or self.detection is not None):
            raise ValueError("a False_negative row is a ground-truth box without a detection")
        if self.case not in (FALSE_NEGATIVE, NO_BOXES) and self.detection is None:
            raise ValueError(f"a {self.case} row needs its detection")

    @property
    def paths(self) -> list[str]:
        """The files of this row, relative to the audit folder."""
        return [p for p in (self.overlay_path, self.raw_path, self.rgba_path) if p]

    def to_dict(self) -> dict[str, Any]:
        """The manifest's flat columns, in the order the CSV shows them."""
        return flat_columns(self, BOX_FIELDS)

    @classmethod
    def from_dict(cls, data: Any) -> "BoxRow":
        """A row read back from the manifest; ``ValueError`` if it is damaged or incomplete."""
        return from_columns(cls, data, BOX_FIELDS)


def read_box_rows(out: Path) -> Iterator[BoxRow]:
    """The manifest's rows; a damaged row raises ``ValueError`` naming its line."""
    return read_typed_rows(out / MANIFEST, BoxRow.from_dict)
