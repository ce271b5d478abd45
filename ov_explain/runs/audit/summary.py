"""An audit's closing files, rebuilt from its manifest: summary.json, the CSVs, the confusion table, grids."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2

from ov_explain.core.storage import atomic_write_bytes, atomic_write_text
from ov_explain.render.grids import Tile, grid_png, thumbnail
from ov_explain.runs.audit.folder import (
    CONFUSION,
    ERROR_COLUMNS,
    ERRORS_CSV,
    GRIDS,
    MANIFEST_CSV,
    SUMMARY,
    AuditRow,
    ErrorRow,
)
from ov_explain.runs.cases import CASES

logger = logging.getLogger(__name__)


@dataclass
class AuditSummary:
    """What an audit found, over every image in the output folder (this run and resumed ones)."""

    out_dir: Path
    images: int
    errors: int
    resumed: int
    cases: dict[str, int]
    per_class: dict[str, dict[str, int]]
    confusion: dict[str, dict[str, int]]
    top1_accuracy: float | None
    top5_accuracy: float | None
    model: str
    method: str
    mode: str
    device: str
    precision: str  # the working precision that executed (f32, bf16, f16)
    target_layer: str | None
    thresholds: dict[str, float]
    seconds: float
    images_per_second: float
    grids: dict[str, str] = field(default_factory=dict)
    readout: str | None = None  # white-box class scores read as "logit" / "probability" (None: black-box)

    def __post_init__(self) -> None:
        if set(self.cases) - set(CASES):
            raise ValueError(f"cases: unknown case names {sorted(set(self.cases) - set(CASES))}")
        if sum(self.cases.values()) != self.images:
            raise ValueError(f"cases: counts add up to {sum(self.cases.values())}, not {self.images} images")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["out_dir"] = str(self.out_dir)
        return data


def write_summary(out: Path, rows: list[AuditRow], errors: list[ErrorRow], run: dict[str, Any],
                  grid_tiles: int | None) -> AuditSummary:
    """Write the CSVs, summary.json, confusion.csv and (``grid_tiles`` not None) the case grids.

    ``run`` holds what the rows do not: model, method, mode, device, precision, target_layer,
    thresholds, seconds, images_per_second, resumed.
    """
    write_csv(out / MANIFEST_CSV, [r.to_dict() for r in rows])
    write_csv(out / ERRORS_CSV, [e.to_dict() for e in errors], ERROR_COLUMNS)
    images = [r for r in rows if r.target_rank == 0]
    cases = Counter(r.case for r in images)
    per_class: dict[str, Counter] = defaultdict(Counter)
    confusion: dict[str, Counter] = defaultdict(Counter)
    for row in images:
        truth = row.ground_truth_class or "(no ground truth)"
        per_class[truth]["images"] += 1
        per_class[truth][row.case] += 1
        if row.correct:
            per_class[truth]["correct"] += 1
        confusion[truth][row.top1.name] += 1
    labelled = [r for r in images if r.ground_truth_index is not None]
    grids = write_grids(out, rows, grid_tiles) if grid_tiles is not None else {}
    summary = AuditSummary(
        out_dir=out, images=len(images), errors=len(errors), cases={c: cases[c] for c in CASES if cases[c]},
        per_class={k: dict(v) for k, v in sorted(per_class.items())},
        confusion={k: dict(v.most_common()) for k, v in sorted(confusion.items())},
        top1_accuracy=round(sum(bool(r.correct) for r in labelled) / len(labelled), 4) if labelled else None,
        top5_accuracy=round(sum(bool(r.in_top_k) for r in labelled) / len(labelled), 4) if labelled else None,
        grids=grids, **run)
    atomic_write_text(out / SUMMARY, json.dumps(summary.to_dict(), indent=2) + "\n")
    write_csv(out / CONFUSION, [{"ground_truth": t, "predicted": p, "images": n}
                                for t, row in summary.confusion.items() for p, n in row.items()],
              ["ground_truth", "predicted", "images"])
    return summary


def write_csv(path: Path, rows: list[dict[str, Any]], columns: Sequence[str] | None = None) -> None:
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def write_grids(out: Path, rows: Sequence[Any], tiles_per_grid: int, *, cases: Sequence[str] = CASES,
                order: Callable[[Any], Any] | None = None, title: Callable[[Any], str] | None = None) -> dict[str, str]:
    """One picture grid per case of the rows' overlays, in ``order`` (default: most confident images first,
    an image's maps together), titled by ``title``; returns case -> relative path. Detection audits pass
    their own cases, order and titles."""
    order = order or (lambda r: (-r.top1.probability, r.key, r.target_rank))
    title = title or tile_title
    (out / GRIDS).mkdir(exist_ok=True)
    written = {}
    by_case: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        if row.overlay_path is not None:
            by_case[row.case].append(row)
    for case in cases:
        path = out / GRIDS / f"{case}.png"
        if case not in by_case:
            path.unlink(missing_ok=True)
            continue
        chosen = sorted(by_case[case], key=order)
        tiles = []
        for row in chosen[:tiles_per_grid]:
            picture = cv2.imread(str(out / row.overlay_path), cv2.IMREAD_COLOR)
            if picture is None:
                continue
            tiles.append(Tile(thumbnail(cv2.cvtColor(picture, cv2.COLOR_BGR2RGB)), title(row)))
        if not tiles:
            continue
        images = len({r.key for r in by_case[case]})
        shown = f"{len(tiles)} of {len(by_case[case])} maps, {images} images"
        atomic_write_bytes(path, grid_png(tiles, f"{case.replace('_', ' ')} ({shown})"))
        written[case] = f"{GRIDS}/{case}.png"
    return written


def tile_title(row: AuditRow) -> str:
    lines = [row.stem]
    if row.ground_truth_class is not None:
        lines.append(f"gt: {row.ground_truth_class} {row.ground_truth_probability:.2f}")
    lines.append(f"pr: {row.top1.name} {row.top1.probability:.2f}")
    lines.append(f"map: {row.target_class} ({row.target_role.replace('_', ' ')})")
    return "\n".join(lines)
