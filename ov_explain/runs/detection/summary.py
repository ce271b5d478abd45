"""A detection audit's closing files, rebuilt from its manifest: summary.json (counts per case and class,
precision / recall / AP per class and their mean), classes.csv, the CSVs and a picture grid per case."""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ov_explain.core.storage import atomic_write_text
from ov_explain.runs.audit.folder import ERROR_COLUMNS, ERRORS_CSV, MANIFEST_CSV, SUMMARY, ErrorRow
from ov_explain.runs.audit.summary import write_csv, write_grids
from ov_explain.runs.detection.cases import (
    BOX_CASES,
    FALSE_NEGATIVE,
    IGNORED_CROWD,
    NO_GT_HIGH,
    NO_GT_LOW,
    TP_HIGH,
    TP_LOW,
    average_precision,
)
from ov_explain.runs.detection.folder import NO_BOXES, BoxRow

logger = logging.getLogger(__name__)

CLASSES_CSV = "classes.csv"
CLASS_COLUMNS = ("class", "ground_truth", "detections", "true_positives", "false_positives", "false_negatives",
                 "precision", "recall", "ap")


@dataclass
class DetectionAuditSummary:
    """What a detection audit found, over every image in the output folder (this run and resumed ones).

    ``per_class``: for each of the model's classes in the ground truth or the detections, its ground-truth
    boxes, detections, true / false positives, missed boxes, precision, recall and AP at ``ap_iou`` (COCO's
    101-point AP; images without ground truth do not count), and its boxes per case. ``mean_ap``: over the
    classes with ground truth (None without any)."""

    out_dir: Path
    images: int
    errors: int
    resumed: int
    boxes: int
    cases: dict[str, int]
    per_class: dict[str, dict[str, Any]]
    mean_ap: float | None
    ap_iou: float
    model: str
    method: str
    mode: str
    device: str
    precision: str
    target_layer: str | None
    readout: str | None
    thresholds: dict[str, float]
    seconds: float
    images_per_second: float
    images_without_boxes: int = 0
    grids: dict[str, str] = field(default_factory=dict)
    task: str = "detection"

    def __post_init__(self) -> None:
        if set(self.cases) - set(BOX_CASES):
            raise ValueError(f"cases: unknown case names {sorted(set(self.cases) - set(BOX_CASES))}")
        if sum(self.cases.values()) != self.boxes:
            raise ValueError(f"cases: counts add up to {sum(self.cases.values())}, not {self.boxes} boxes")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["out_dir"] = str(self.out_dir)
        return data


def class_scores(rows: list[BoxRow]) -> dict[str, dict[str, Any]]:
    """Per class: counts, precision, recall and AP over the images with ground truth, and boxes per case."""
    evaluated = [r for r in rows if r.case not in (NO_BOXES, NO_GT_HIGH, NO_GT_LOW, IGNORED_CROWD)]
    names = sorted({r.detected_class for r in rows if r.detected_class is not None}
                   | {r.ground_truth_class for r in evaluated if r.ground_truth_class is not None})
    table = {}
    for name in names:
        found = [r for r in evaluated if r.detection is not None and r.detected_class == name]
        hits = [r.case in (TP_HIGH, TP_LOW) for r in found]
        missed = sum(r.case == FALSE_NEGATIVE and r.ground_truth_class == name for r in evaluated)
        positives = sum(hits) + missed
        ap = average_precision([r.score for r in found], hits, positives)
        cases = Counter(r.case for r in rows if (r.detected_class if r.detection is not None
                                                 else r.ground_truth_class) == name)
        table[name] = {
            "ground_truth": positives, "detections": sum(r.detected_class == name for r in rows),
            "true_positives": sum(hits), "false_positives": len(found) - sum(hits), "false_negatives": missed,
            "precision": round(sum(hits) / len(found), 4) if found else None,
            "recall": round(sum(hits) / positives, 4) if positives else None,
            "ap": None if math.isnan(ap) else round(ap, 4),
            "cases": {c: cases[c] for c in BOX_CASES if cases[c]}}
    return table


def write_detection_summary(out: Path, rows: list[BoxRow], errors: list[ErrorRow], run: dict[str, Any],
                            grid_tiles: int | None) -> DetectionAuditSummary:
    """Write the CSVs, summary.json, classes.csv and (``grid_tiles`` not None) the case grids.

    ``run`` holds what the rows do not: model, method, mode, device, precision, target_layer, readout,
    thresholds, ap_iou, seconds, images_per_second, resumed."""
    write_csv(out / MANIFEST_CSV, [r.to_dict() for r in rows])
    write_csv(out / ERRORS_CSV, [e.to_dict() for e in errors], ERROR_COLUMNS)
    boxes = [r for r in rows if r.case != NO_BOXES]
    cases = Counter(r.case for r in boxes)
    per_class = class_scores(rows)
    aps = [v["ap"] for v in per_class.values() if v["ap"] is not None]
    grids = {}
    if grid_tiles is not None:
        grids = write_grids(out, boxes, grid_tiles, cases=BOX_CASES, title=tile_title,
                            order=lambda r: (-(r.target_score or 0.0), r.key, r.target_rank))
    summary = DetectionAuditSummary(
        out_dir=out, images=len({r.key for r in rows}), errors=len(errors), boxes=len(boxes),
        cases={c: cases[c] for c in BOX_CASES if cases[c]}, per_class=per_class,
        mean_ap=round(sum(aps) / len(aps), 4) if aps else None,
        images_without_boxes=sum(r.case == NO_BOXES for r in rows), grids=grids, **run)
    atomic_write_text(out / SUMMARY, json.dumps(summary.to_dict(), indent=2) + "\n")
    write_csv(out / CLASSES_CSV, [{"class": name, **{k: v for k, v in values.items() if k != "cases"}}
                                  for name, values in per_class.items()], CLASS_COLUMNS)
    return summary


def tile_title(row: BoxRow) -> str:
    lines = [f"{row.stem} box {row.target_rank}"]
    if row.ground_truth_class is not None:
        lines.append(f"gt: {row.ground_truth_class}" + (f" IoU {row.iou:.2f}" if row.iou is not None else ""))
    lines.append(f"pr: {row.detected_class} {row.score:.2f}" if row.detection is not None
                 else f"missed ({row.target_class} {row.target_score:.2f} there)")
    return "\n".join(lines)

