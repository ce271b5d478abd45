"""What an export reads from a finished audit or drift audit: one record per image, its maps, safely.

A folder is read, never written: the rows say which maps exist (``.npy`` at the method's own
resolution) and where each lies on its image. Every name that will become an object key or a file
path is checked to be one of the folder's own structured names (safe characters only), and every map
file to lie inside the folder, so a damaged or hand-edited manifest cannot send an export elsewhere.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ov_explain.core.errors import OvExplainError
from ov_explain.core.preprocess import PreprocessSpec
from ov_explain.runs.audit.folder import MANIFEST, Box, read_rows
from ov_explain.runs.audit.folder import SETTINGS_FILE as AUDIT_SETTINGS
from ov_explain.runs.cases import CASES
from ov_explain.runs.drift.folder import CASES as DRIFT_CASES
from ov_explain.runs.drift.folder import DEPLOYMENTS, read_drift_rows
from ov_explain.runs.drift.folder import ROWS as DRIFT_ROWS
from ov_explain.runs.drift.folder import SETTINGS_FILE as DRIFT_SETTINGS

logger = logging.getLogger(__name__)

#: ``np.load`` parses a .npy header with ``ast.literal_eval``; on CPython before 3.11.5 (Debian 12's 3.11.2)
#: building ASTs in two threads at once can raise "SystemError: AST constructor recursion depth mismatch"
#: (CPython gh-106905). Export threads read maps one at a time; the files are small, the uploads stay parallel.
_NPY_LOCK = threading.Lock()

SAFE_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")  # drift names hold "_r_+0.93"


class ExportError(OvExplainError):
    """An export that cannot start or finish: the folder, the destination, a missing extra."""


@dataclass(frozen=True)
class ExportMap:
    """One explained map: which class, why, where its raw values are and where they lie on the image."""

    name: str  # "<case>/<structured name>[.<deployment>]": the map's place, safe characters only
    raw_path: Path
    target_class: str
    target_index: int
    target_role: str  # predicted / runner_up / ground_truth
    target_probability: float | None
    box: Box | None  # where the map lies on the image (None: the whole image)
    deployment: str | None = None  # drift audits: reference / candidate
    #: Detection audits: the box the map explains — case, detected class and score (None for a missed box),
    #: its box, the ground-truth class and box it was compared with, and their IoU.
    detection: dict[str, Any] | None = None

    def load(self) -> np.ndarray:
        """The raw map; a damaged file is one :class:`ExportError` naming it."""
        try:
            with _NPY_LOCK:
                raw = np.load(self.raw_path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ExportError(f"{self.raw_path}: cannot read the map ({exc})") from None
        if raw.ndim != 2:
            raise ExportError(f"{self.raw_path}: expected a 2-D map, got shape {raw.shape}")
        return raw


@dataclass(frozen=True)
class ExportImage:
    """One audited image and its maps, with what reviewers filter on."""

    key: str
    source: str  # the original image file, as the audit read it
    stem: str
    case: str  # the image's case (an audit's, or a drift audit's)
    ground_truth: str | None
    predictions: dict[str, tuple[str, float]]  # "prediction" (audit) or each deployment: (class, probability)
    image_size: tuple[int, int] | None  # (H, W)
    maps: tuple[ExportMap, ...]
    provenance: dict[str, Any] = field(default_factory=dict)
    #: Detection audits: the image's ground-truth boxes and detections, each {label, box (x1, y1, x2, y2 in
    #: pixels), ...} with the detections' score, case and IoU.
    boxes: dict[str, list[dict[str, Any]]] | None = None


@dataclass(frozen=True)
class ExportSource:
    """A finished folder, read: its kind (``audit`` / ``drift``) and its images in dataset order."""

    folder: Path
    kind: str
    images: tuple[ExportImage, ...]

    @property
    def maps(self) -> int:
        return sum(len(image.maps) for image in self.images)


def read_source(folder: str | Path) -> ExportSource:
    """Read an audit's or a drift audit's folder for export; one :class:`ExportError` line if it cannot."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ExportError(f"{folder}: no such folder (expected the --out folder of an audit or a drift audit)")
    if (folder / AUDIT_SETTINGS).is_file() and (folder / MANIFEST).is_file():
        detection = _settings(folder / AUDIT_SETTINGS).get("task") == "detection"
        images = _detection_images(folder) if detection else _audit_images(folder)
        kind = "detection" if detection else "audit"
    elif (folder / DRIFT_SETTINGS).is_file() and (folder / DRIFT_ROWS).is_file():
        if _settings(folder / DRIFT_SETTINGS).get("task") == "detection":
            raise ExportError(f"{folder}: a detector's drift folder is not exported (its report.html shows it); "
                              "export each deployment's detection audit instead (ov-explain audit --model ...)")
        images = _drift_images(folder)
        kind = "drift"
    else:
        raise ExportError(f"{folder}: not a finished audit or drift audit (no {AUDIT_SETTINGS} + {MANIFEST} or "
                          f"{DRIFT_SETTINGS} + {DRIFT_ROWS})")
    if not images:
        raise ExportError(f"{folder}: the {kind} holds no explained image to export")
    return ExportSource(folder, kind, tuple(images))


def _settings(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path}: cannot read the run's settings ({exc})") from None
    if not isinstance(data, dict):
        raise ExportError(f"{path}: expected a JSON object")
    return data


def _grouped(rows: list[Any], folder: Path) -> dict[str, list[Any]]:
    """Rows by image, in dataset order; an image whose rows are not all there (a run still going, or
    killed) is left out with a warning."""
    by_key: dict[str, list[Any]] = {}
    for row in rows:
        by_key.setdefault(row.key, []).append(row)
    partial = [k for k, group in by_key.items() if len(group) != group[0].targets_total]
    if partial:
        logger.warning("%s: %d image(s) have only part of their rows (a run still going or interrupted); left out",
                       folder, len(partial))
    return {k: group for k, group in by_key.items() if k not in partial}


def _source_path(source: str) -> str:
    """The original image as an absolute path (relative sources are read from the current folder)."""
    return str(Path(source).resolve())


def _legacy_box(settings: dict[str, Any], height: int, width: int) -> Box | None:
    """Rows of audits made before boxes were recorded: the box from the run's spec, or None (whole image)."""
    spec_data = settings.get("preprocess")
    if not isinstance(spec_data, dict):
        return None
    try:
        spec = PreprocessSpec.from_dict(spec_data)
    except OvExplainError:
        return None
    return None if spec.resize == "stretch" else spec.geometry(height, width).input_box()


def _audit_images(folder: Path) -> list[ExportImage]:
    try:
        rows = list(read_rows(folder))
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    settings = _settings(folder / AUDIT_SETTINGS)
    if any(row.map_box is None for row in rows) and not isinstance(settings.get("preprocess"), dict):
        logger.warning("%s: rows without a map box and a custom preprocessing function: maps are laid over the "
                       "whole image", folder)
    images = []
    for key, group in _grouped(rows, folder).items():
        first = group[0]
        legacy = _legacy_box(settings, first.height, first.width) if first.map_box is None else None
        maps = []
        for row in sorted(group, key=lambda r: r.target_rank):
            if row.raw_path is None:
                raise ExportError(f"{folder}: the audit kept no raw maps (it ran with --no-raw); run it again with "
                                  "--raw --restart to export its maps")
            name = _checked_name(folder, row.case, row.overlay_path, CASES, ".jpg")
            maps.append(ExportMap(name, _checked_file(folder, row.raw_path, name), row.target_class,
                                  row.target_index, row.target_role, row.target_probability, row.map_box or legacy))
        images.append(ExportImage(
            key, _source_path(first.source), first.stem, first.case, first.ground_truth_class or first.ground_truth,
            {"prediction": (first.top1.name, first.top1.probability)}, (first.height, first.width), tuple(maps),
            {"method": first.method, "mode": first.mode, "device": first.device, "precision": first.precision,
             "readout": first.readout}))
    return images


def _detection_images(folder: Path) -> list[ExportImage]:
    """A detection audit's images: a map per explained box, the boxes for labels."""
    from ov_explain.runs.detection.cases import BOX_CASES
    from ov_explain.runs.detection.folder import read_box_rows

    try:
        rows = list(read_box_rows(folder))
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    images = []
    for key, group in _grouped(rows, folder).items():
        group.sort(key=lambda r: r.target_rank)
        first, maps = group[0], []
        for row in group:
            if row.overlay_path is None:
                continue  # an image without any box
            if row.raw_path is None:
                raise ExportError(f"{folder}: the audit kept no raw maps (it ran with --no-raw); run it again with "
                                  "--raw --restart to export its maps")
            name = _checked_name(folder, row.case, row.overlay_path, BOX_CASES, ".jpg")
            box = {"case": row.case, "box_number": row.target_rank, "detected_class": row.detected_class,
                   "score": row.score, "box": row.detected_box or row.truth_box, "ground_truth": row.ground_truth_class,
                   "truth_box": row.truth_box, "iou": row.iou}
            maps.append(ExportMap(name, _checked_file(folder, row.raw_path, name), row.target_class or "",
                                  row.target_index if row.target_index is not None else -1,
                                  f"box{row.target_rank}" + ("" if row.detection is not None else "_missed"),
                                  row.target_score, row.map_box, detection=box))
        truths = {r.truth: r for r in group if r.truth is not None}  # a box compared twice is listed once
        boxes = {"ground_truth": [{"label": r.ground_truth_class, "box": r.truth_box}
                                  for _, r in sorted(truths.items())],
                 "predictions": [{"label": r.detected_class, "box": r.detected_box, "score": r.score, "case": r.case,
                                  "iou": r.iou} for r in group if r.detection is not None]}
        images.append(ExportImage(  # the image's case: its first box's (each map carries its own)
            key, _source_path(first.source), first.stem, first.case, None, {}, (first.height, first.width),
            tuple(maps), {"method": first.method, "mode": first.mode, "device": first.device,
                          "precision": first.precision, "readout": first.readout,
                          "cases": sorted({r.case for r in group})}, boxes))
    return images


def _drift_images(folder: Path) -> list[ExportImage]:
    try:
        rows = read_drift_rows(folder)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    settings = _settings(folder / DRIFT_SETTINGS)
    provenance = {d: {k: (settings.get(d) or {}).get(k) for k in ("method", "device", "precision")}
                  for d in DEPLOYMENTS}
    images = []
    for key, group in _grouped(rows, folder).items():
        first = group[0]
        maps = []
        for row in sorted(group, key=lambda r: r.target_rank):
            base = _checked_name(folder, row.case, row.image_path, DRIFT_CASES, ".jpg")
            for deployment in DEPLOYMENTS:
                path = row.map_path(deployment)
                if path is None:
                    raise ExportError(f"{folder}: this drift audit kept no maps (it was made before they were kept); "
                                      "run it again with --restart to export its maps")
                name = f"{base}.{deployment}"
                probability = row.reference_probability if deployment == "reference" else row.candidate_probability
                maps.append(ExportMap(name, _checked_file(folder, path, name), row.target_class, row.target_index,
                                      row.target_role, probability, row.map_box(deployment), deployment))
        # The image's case is its most drifted row's (as the drift summary counts it).
        case = min((r.case for r in group), key=DRIFT_CASES.index)
        size = (first.height, first.width) if first.height and first.width else None
        images.append(ExportImage(
            key, _source_path(first.source), first.stem, case, first.ground_truth,
            {"reference": (first.reference_top1_class, first.reference_top1_probability),
             "candidate": (first.candidate_top1_class, first.candidate_top1_probability)}, size, tuple(maps),
            provenance))
    return images


def _checked_name(folder: Path, group: str, relative: str, groups: tuple[str, ...], extension: str) -> str:
    """``group/file`` without ``extension``, refused unless it is one of the folder's own names."""
    parts = PurePosixPath(str(relative)).parts
    if (len(parts) != 2 or parts[0] != group or group not in groups or not parts[1].endswith(extension)
            or not SAFE_FILE.match(parts[1]) or ".." in parts[1]):
        raise ExportError(f"{folder}: a row names {relative!r}, which is not a file name this folder's runs "
                          "write; the rows are damaged")
    return f"{group}/{parts[1][:-len(extension)]}"


def _checked_file(folder: Path, relative: str, name: str) -> Path:
    """The map file of row ``name``: its own name with ``.npy``, inside the folder, present."""
    if str(relative) != f"{name}.npy":
        raise ExportError(f"{folder}: the map of {name} is listed as {relative!r}, not {name}.npy; "
                          "the rows are damaged")
    path = folder / relative
    if not path.is_file():
        raise ExportError(f"{path}: map file missing (listed in the rows); restore it or run the audit again")
    return path
