"""Detection audit: detect and explain every box of every image, sort the maps into case folders per box.

The classifier audit's folder and guarantees (settings refused when they differ, resume, lock, signals, user
files left alone, the Ray engine) on the same row engine; what differs is the row (one per box:
:class:`~ov_explain.runs.detection.folder.BoxRow`), the cases (:mod:`ov_explain.runs.detection.cases`) and the
summary (precision / recall / AP per class). Output folder::

    audit.json                      settings (task: detection)
    <Case_name>/{stem}_gt_{class}_{iou}_pr_{class}_{score}_box{k}.jpg   overlay per box (+ .npy raw map)
    manifest.jsonl, manifest.csv    one row per box (an image with none: one No_boxes row)
    errors.jsonl, errors.csv        images that could not be audited, and why
    summary.json, classes.csv       counts per case and class, precision / recall / AP per class
    grids/<Case_name>.jpg, report.html
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ov_explain.core.config import ModelConfig
from ov_explain.core.errors import OvExplainError
from ov_explain.core.images import read_image
from ov_explain.explain.config import ExplainConfig
from ov_explain.explain.detection import BoxTargets, DetectionExplainer, DetectionExplanation
from ov_explain.runs.audit.folder import (
    ERRORS,
    ERRORS_CSV,
    FORMAT_VERSION,
    GRIDS,
    MANIFEST,
    MANIFEST_CSV,
    MAP_EXTENSIONS,
    REPORT,
    SETTINGS_FILE,
    SUMMARY,
    ErrorRow,
    read_errors,
)
from ov_explain.runs.config import RunConfig
from ov_explain.runs.dataset import LabelResolver
from ov_explain.runs.detection.cases import (
    BOX_CASES,
    FALSE_NEGATIVE,
    BoxCase,
    BoxThresholds,
    Found,
    Truth,
    classify_boxes,
)
from ov_explain.runs.detection.dataset import BoxSample
from ov_explain.runs.detection.folder import NO_BOXES, BoxRow, read_box_rows
from ov_explain.runs.detection.summary import CLASSES_CSV, DetectionAuditSummary, write_detection_summary
from ov_explain.runs.engine import FolderError, FolderKind, Progress, ThreadEngine, run_rows
from ov_explain.runs.naming import file_labels, format_box_name, parse_box_name, unique_stems
from ov_explain.runs.ray_engine import RayEngine, actor_core
from ov_explain.runs.report import build_report
from ov_explain.runs.settings import digest, method_settings, model_settings, run_record, style_settings
from ov_explain.runs.writer import to_bgr, write_map_files

logger = logging.getLogger(__name__)

#: An image's ground truth as the worker needs it: each box and its label as the dataset wrote it; None when the
#: dataset says nothing about the image (cases by score alone).
GroundTruth = tuple[tuple[Truth, str], ...] | None

#: What a detection audit writes in its folder, for the shared engine's folder contract.
DETECTION_FOLDER = FolderKind(
    noun="an audit", settings_file=SETTINGS_FILE, rows_file=MANIFEST, errors_file=ERRORS,
    top_files=(SETTINGS_FILE, MANIFEST, ERRORS, MANIFEST_CSV, ERRORS_CSV, SUMMARY, CLASSES_CSV, REPORT),
    cases=BOX_CASES, picture_folders=(GRIDS,), file_extensions=MAP_EXTENSIONS,
    path_columns=("overlay_path", "raw_path", "rgba_path"), stem_of=lambda name: parse_box_name(name).name.stem,
    parse_row=BoxRow.from_dict, error_type=ErrorRow)


def resolve_truths(dataset: Any, samples: Sequence[BoxSample], resolver: LabelResolver) -> dict[str, GroundTruth]:
    """Every image's boxes with their classes as the model's indices; a class name that is none of the model's
    is one :class:`~ov_explain.runs.engine.FolderError`-like setup error naming them all, before any image."""
    names = sorted({b.label for s in samples for b in s.boxes or ()})
    unknown = {}
    for name in names:
        try:
            resolver(name)
        except OvExplainError as exc:
            unknown[name] = str(exc)
    if unknown:
        shown = ", ".join(repr(n) for n in list(unknown)[:5]) + (", ..." if len(unknown) > 5 else "")
        raise FolderError(f"{dataset}: {len(unknown)} ground-truth class name(s) are none of the model's classes "
                          f"({shown}; {next(iter(unknown.values()))}); map them with --label-map FILE")
    return {s.key: _truths_of(s, resolver) for s in samples}


class FractionalTruth(tuple):
    """An image's ground truth whose boxes are fractions of its width and height (YOLO's labels): scaled to
    pixels by :func:`image_truths` once the worker has read the image, so setup decodes no image."""


def _truths_of(sample: BoxSample, resolver: LabelResolver) -> GroundTruth:
    if sample.boxes is None:
        return None
    found = tuple((Truth(b.box, resolver(b.label), b.crowd), b.label) for b in sample.boxes)
    return FractionalTruth(found) if any(b.relative for b in sample.boxes) else found


def image_truths(truths: Mapping[str, GroundTruth], key: str, pixels: np.ndarray) -> GroundTruth:
    """One image's ground truth in its pixels (x1, y1, x2, y2), whatever units the dataset wrote."""
    found = truths.get(key)
    if not isinstance(found, FractionalTruth):
        return found
    height, width = pixels.shape[:2]
    scale = (width, height, width, height)
    return tuple((dataclasses.replace(t, box=tuple(float(v) * s for v, s in zip(t.box, scale))), label)
                 for t, label in found)


# ----- the audit ----------------------------------------------------------------------------------------
def run_detection_audit(samples: Sequence[BoxSample], explainer: DetectionExplainer, out_dir: str | os.PathLike,
                        truths: Mapping[str, GroundTruth], *, options: Any, label_map: Mapping[str, str] | None = None,
                        run: RunConfig = RunConfig(), progress: Progress | None = None,
                        all_samples: Sequence[BoxSample] | None = None, stop: threading.Event | None = None,
                        recipe: "DetectionAuditWork | None" = None) -> DetectionAuditSummary:
    """Audit ``samples`` (their ``truths`` from :func:`resolve_truths`) into ``out_dir``; resumes a previous
    run of the same settings. ``options`` are the audit's (:class:`~ov_explain.runs.audit.run.AuditOptions`);
    ``run``, ``progress``, ``stop``, ``all_samples`` and ``recipe`` as for a classifier audit."""
    out = Path(out_dir)
    if options.save_raw is None:
        options = dataclasses.replace(options, save_raw=True)
    settings = _settings(explainer, options, label_map)
    universe = list(all_samples) if all_samples is not None else list(samples)
    stems = dict(zip((s.key for s in universe), unique_stems([s.key for s in universe],
                                                             [s.path.stem for s in universe])))
    if run.engine == "ray":
        if recipe is None:
            raise FolderError("the Ray engine builds its work from a recipe (DetectionAuditWork): pass recipe=")
        engine: Any = RayEngine(recipe, stems, run.ray)
    else:
        threads, per_image = explainer.plan(run.workers)
        engine = ThreadEngine(BoxWorker(explainer, dict(truths), options, out, stems, per_image), threads)
    stats = run_rows(samples, engine, out, DETECTION_FOLDER, settings, set(stems.values()), restart=run.restart,
                     progress=progress, stop=stop)
    summary = _finish(out, explainer, options, stats.seconds, stats.ran, stats.resumed)
    if options.report:
        build_report(out)
    logger.info("detection audit: %d images in %.1f s, %d boxes, %d errors", stats.ran, stats.seconds,
                summary.boxes, summary.errors)
    return summary


@dataclass(frozen=True)
class DetectionAuditWork:
    """The recipe of a detection audit's per-image work, to build it in another process (a Ray actor)."""

    model: ModelConfig
    explain: ExplainConfig
    truths: dict[str, GroundTruth]
    options: Any
    workers: int | None
    out: str

    def build(self, threads: int, stems: dict[str, str]) -> "BoxWorker":
        detector = self.model.load(hint="THROUGHPUT", core=actor_core(threads))
        explainer = self.explain.create(detector)
        _, per_image = explainer.plan(self.workers)
        return BoxWorker(explainer, self.truths, self.options, Path(self.out), stems, per_image)


# ----- one image ------------------------------------------------------------------------------------
class BoxWorker:
    """Everything done for one image, in a worker thread: returns its rows, one per box."""

    def __init__(self, explainer: DetectionExplainer, truths: dict[str, GroundTruth], options: Any, out: Path,
                 stems: dict[str, str], parallel: int) -> None:
        self.explainer, self.truths, self.options, self.out, self.stems = explainer, truths, options, out, stems
        self.parallel, self.style = parallel, options.style
        self.thresholds: BoxThresholds = options.box_thresholds
        names = explainer.detector.names
        self.names, self.file_names = names, file_labels(names)

    def __call__(self, sample: Any) -> list[BoxRow]:
        started = time.perf_counter()
        pixels = read_image(sample.path)
        decoded = time.perf_counter()
        ground_truth = image_truths(self.truths, sample.key, pixels)
        truths = None if ground_truth is None else [t for t, _ in ground_truth]
        prepared = self.explainer.prepare(pixels, source=str(sample.path))
        prep_ms = (time.perf_counter() - decoded) * 1000
        decided: list[list[BoxCase]] = []  # decided once, between the detections and the maps

        def choose(found: Any) -> BoxTargets:
            cases = classify_boxes([Found(d.box, d.class_index, d.score) for d in found.detections], truths,
                                   self.thresholds)
            decided.append(cases)
            return BoxTargets([c.detection for c in cases if c.detection is not None],
                              [(truths[c.truth].box, truths[c.truth].class_index) for c in cases
                               if c.case == FALSE_NEGATIVE])

        explanation = self.explainer.explain_prepared(prepared, choose, parallel=self.parallel,
                                                      preprocess_ms=prep_ms)
        explained = time.perf_counter()
        timings = {"decode_ms": (decoded - started) * 1000, "preprocess_ms": prep_ms,
                   "explain_ms": (explained - decoded) * 1000 - prep_ms}
        return self._write(sample, pixels, explanation, ground_truth, decided[0], timings, explained)

    def _write(self, sample: Any, pixels: np.ndarray, explanation: DetectionExplanation, ground_truth: GroundTruth,
               cases: list[BoxCase], timings: dict[str, float], explained: float) -> list[BoxRow]:
        stem, bgr = self.stems[sample.key], to_bgr(pixels)
        detections = explanation.detections.detections
        targets = [detections[i] for i in explanation.explained] + explanation.truths
        common = dict(key=sample.key, source=str(sample.path), stem=stem, width=int(pixels.shape[1]),
                      height=int(pixels.shape[0]), detections=len(detections),
                      truths=None if ground_truth is None else len(ground_truth), method=explanation.method,
                      mode=explanation.mode, device=explanation.device, precision=explanation.precision,
                      target_layer=explanation.target_layer, readout=explanation.readout,
                      inferences=explanation.inferences)
        rows = []
        for k, (case, target, saliency) in enumerate(zip(cases, targets, explanation.maps)):
            found = detections[case.detection] if case.detection is not None else None
            truth, label = ground_truth[case.truth] if case.truth is not None else (None, None)
            name = format_box_name(stem, self.file_names[target.class_index], target.score, k,
                                   None if truth is None else self.file_names[truth.class_index],
                                   None if truth is None else case.iou or 0.0, extension="")
            (self.out / case.case).mkdir(exist_ok=True)
            drawn = None if truth is None else (truth.box, f"gt {self.names[truth.class_index]}")
            if found is None:  # a missed box: drawn once, as ground truth, with its class's score there
                drawn = (truth.box, f"missed {self.names[truth.class_index]} ({target.score:.2f} there)")
            files = write_map_files(self.out, f"{case.case}/{name}", bgr, saliency, self.style, truth=drawn,
                                    keep_on_image=False, draw_target_box=found is not None)
            rows.append(dict(
                case=case.case, target_rank=k, detection=case.detection, truth=case.truth,
                detected_class=None if found is None else found.label,
                detected_index=None if found is None else found.class_index,
                score=None if found is None else round(float(found.score), 6), ground_truth=label,
                ground_truth_class=None if truth is None else self.names[truth.class_index],
                ground_truth_index=None if truth is None else truth.class_index,
                iou=None if case.iou is None else round(case.iou, 6), target_class=target.label,
                target_index=target.class_index, target_score=round(float(target.score), 6), anchor=target.anchor,
                overlay_path=files.overlay, raw_path=files.raw, rgba_path=files.rgba,
                detected_box=None if found is None else found.box, truth_box=None if truth is None else truth.box,
                map_box=explanation.map_box))
        if not rows:  # nothing detected, nothing to find: one row records the image
            rows.append(dict(case=NO_BOXES, target_rank=0, detection=None, truth=None, detected_class=None,
                             detected_index=None, score=None, ground_truth=None, ground_truth_class=None,
                             ground_truth_index=None, iou=None, target_class=None, target_index=None,
                             target_score=None, anchor=None, overlay_path=None))
        timings["write_ms"] = (time.perf_counter() - explained) * 1000
        rounded = {k: round(v, 3) for k, v in timings.items()}
        return [BoxRow(**common, **row, targets_total=len(rows), timings_ms=rounded) for row in rows]


# ----- output folder: settings, final files ------------------------------------------------------------
def _settings(explainer: DetectionExplainer, options: Any, label_map: Mapping[str, str] | None) -> dict[str, Any]:
    detector = explainer.detector
    return {
        "format_version": FORMAT_VERSION, "task": "detection", **model_settings(detector),
        "labels_sha256": digest(json.dumps(detector.names)),
        "label_map_sha256": digest(json.dumps(dict(label_map or {}), sort_keys=True)),
        "output_format": detector.output_format, "confidence": detector.confidence, "nms_iou": detector.iou,
        **method_settings(explainer), "readout": explainer.readout,
        "thresholds": dataclasses.asdict(options.box_thresholds), **style_settings(options),
    }


def _finish(out: Path, explainer: DetectionExplainer, options: Any, seconds: float, ran: int,
            resumed: int) -> DetectionAuditSummary:
    run = {**run_record(explainer, seconds, ran, resumed), "thresholds": dataclasses.asdict(options.box_thresholds),
           "ap_iou": options.box_thresholds.iou}
    return write_detection_summary(out, lambda: read_box_rows(out), read_errors(out), run,
                                   options.grid_tiles if options.grids else None)
