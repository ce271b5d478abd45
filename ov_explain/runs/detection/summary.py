"""A detection audit's closing files, from its manifest in one streaming pass: summary.json (counts per case and
class, precision / recall / AP per class and their mean), classes.csv, the CSVs and a picture grid per case."""

from __future__ import annotations

import json
import logging
import math
from array import array
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ov_explain.core.storage import atomic_write_text
from ov_explain.runs.audit.folder import ERROR_COLUMNS, ERRORS_CSV, MANIFEST_CSV, SUMMARY, ErrorRow
from ov_explain.runs.audit.summary import write_csv, write_csv_stream, write_grids
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
from ov_explain.runs.gallery import Gallery

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


#: Cases whose boxes do not count in precision, recall and AP (no ground truth to compare with, or a crowd).
NOT_EVALUATED = frozenset({NO_BOXES, NO_GT_HIGH, NO_GT_LOW, IGNORED_CROWD})


class _ClassTally:
    """One class's boxes as they stream by: each evaluated detection's score and whether it hit (for AP: 9 bytes
    a detection), its missed ground-truth boxes, its detections, its boxes per case."""

    def __init__(self) -> None:
        self.scores, self.hits = array("d"), array("b")
        self.missed = self.detections = 0
        self.cases: Counter[str] = Counter()

    def scores_row(self) -> dict[str, Any]:
        hits = sum(self.hits)
        positives = hits + self.missed
        ap = average_precision(self.scores, self.hits, positives)
        found = len(self.scores)
        return {"ground_truth": positives, "detections": self.detections, "true_positives": hits,
                "false_positives": found - hits, "false_negatives": self.missed,
                "precision": round(hits / found, 4) if found else None,
                "recall": round(hits / positives, 4) if positives else None,
                "ap": None if math.isnan(ap) else round(ap, 4),
                "cases": {c: self.cases[c] for c in BOX_CASES if self.cases[c]}}


def _most_confident_first(row: BoxRow) -> tuple[float, str, int]:
    """A grid's order of boxes: the highest score first, then by image and box."""
    return -(row.target_score or 0.0), row.key, row.target_rank


class BoxTally:
    """A detection audit's counts from its rows in one pass, holding per class what AP needs and per case the
    few boxes its grid shows, not the rows. An image's rows come together (the engine appends them at once)."""

    def __init__(self, grid_tiles: int | None) -> None:
        self.classes: dict[str, _ClassTally] = defaultdict(_ClassTally)
        self.named: set[str] = set()  # the classes detected, or in the ground truth of an evaluated box
        self.cases: Counter[str] = Counter()
        self.images = self.images_without_boxes = 0
        self.gallery = Gallery(grid_tiles or 0, key=_most_confident_first)
        self.case_images: Counter[str] = Counter()  # images with a map in each case
        self._last_in_case: dict[str, str] = {}

    def add(self, row: BoxRow) -> None:
        if row.target_rank == 0:
            self.images += 1
        if row.case == NO_BOXES:
            self.images_without_boxes += 1
            return
        self.cases[row.case] += 1
        evaluated = row.case not in NOT_EVALUATED
        if row.detected_class is not None:
            self.named.add(row.detected_class)
            self.classes[row.detected_class].detections += 1
        if evaluated and row.ground_truth_class is not None:
            self.named.add(row.ground_truth_class)
        if evaluated and row.detection is not None:
            tally = self.classes[row.detected_class]
            tally.scores.append(row.score)
            tally.hits.append(row.case in (TP_HIGH, TP_LOW))
        if evaluated and row.case == FALSE_NEGATIVE and row.ground_truth_class is not None:
            self.classes[row.ground_truth_class].missed += 1
        owner = row.detected_class if row.detection is not None else row.ground_truth_class
        if owner is not None:
            self.classes[owner].cases[row.case] += 1
        if row.overlay_path is not None:
            self.gallery.add(row.case, row)
            if self._last_in_case.get(row.case) != row.key:
                self.case_images[row.case] += 1
                self._last_in_case[row.case] = row.key

    def per_class(self) -> dict[str, dict[str, Any]]:
        """Per class: counts, precision, recall and AP over the images with ground truth, and boxes per case."""
        return {name: self.classes[name].scores_row() for name in sorted(self.named)}


def write_detection_summary(out: Path, rows: Callable[[], Iterable[BoxRow]], errors: list[ErrorRow],
                            run: dict[str, Any], grid_tiles: int | None) -> DetectionAuditSummary:
    """Write the CSVs, summary.json, classes.csv and (``grid_tiles`` not None) the case grids, in one pass over
    ``rows()`` (a second for manifest.csv only if later rows have columns the first lacks, see
    :func:`~ov_explain.runs.audit.summary.write_csv_stream`).

    ``run`` holds what the rows do not: model, method, mode, device, precision, target_layer, readout,
    thresholds, ap_iou, seconds, images_per_second, resumed."""
    tally = BoxTally(grid_tiles)
    write_csv_stream(out / MANIFEST_CSV, rows, each=tally.add, as_columns=BoxRow.to_dict)
    write_csv(out / ERRORS_CSV, [e.to_dict() for e in errors], ERROR_COLUMNS)
    per_class = tally.per_class()
    aps = [v["ap"] for v in per_class.values() if v["ap"] is not None]
    grids = {}
    if grid_tiles is not None:
        kept = [r for case in BOX_CASES for r in tally.gallery.members(case)]
        grids = write_grids(out, kept, grid_tiles, cases=BOX_CASES, title=tile_title,
                            order=_most_confident_first,
                            totals={c: (tally.gallery.counts[c], tally.case_images[c]) for c in BOX_CASES})
    summary = DetectionAuditSummary(
        out_dir=out, images=tally.images, errors=len(errors), boxes=sum(tally.cases.values()),
        cases={c: tally.cases[c] for c in BOX_CASES if tally.cases[c]}, per_class=per_class,
        mean_ap=round(sum(aps) / len(aps), 4) if aps else None,
        images_without_boxes=tally.images_without_boxes, grids=grids, **run)
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

