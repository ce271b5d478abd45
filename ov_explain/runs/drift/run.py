"""Drift audit: did a deployment change what the model looks at?

Two deployments (model + device + precision) of the same classifier predict and explain every
image of a dataset for **the same classes** (the reference's top-1, its runner-up where the case
needs it, the ground truth when known). Each image and class gets a row with the top-1 agreement,
the probability change, both cases and how much the map moved (:mod:`ov_explain.evaluate.drift_measures`),
a category folder and a side-by-side picture: reference map | candidate map | their difference.

It runs on the audit's engine (:mod:`ov_explain.runs.engine`): resumable, one writer per folder,
nothing of the user's touched.

Output folder::

    drift.json                  settings of the run (a different pair of deployments is refused)
    <Category>/<drift name>.jpg side by side per image and class
    <Category>/<drift name>.reference.npy, .candidate.npy   both raw maps (what exports read)
    drift.jsonl, drift.csv      one row per image and class
    errors.jsonl, errors.csv    images that could not be compared, and why
    summary.json                agreement, case transitions, map correlation median / 5th percentile,
                                worst classes, categories
    correlation.png             the distribution of map correlations
    report.html                 a self-contained gallery, most drifted first
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from ov_explain import render
from ov_explain.core.errors import OvExplainError
from ov_explain.core.images import read_image
from ov_explain.core.storage import atomic_write_bytes, atomic_write_text, read_jsonl
from ov_explain.evaluate.drift_measures import correlation, iou_top, peak_shift
from ov_explain.explain.explainer import Explainer
from ov_explain.runs.audit.folder import ERROR_COLUMNS, ErrorRow
from ov_explain.runs.audit.summary import write_csv
from ov_explain.runs.cases import CaseThresholds, classify_case
from ov_explain.runs.dataset import LabelResolver, Sample
from ov_explain.runs.drift.folder import (
    ATTENTION_MOVED,
    CATEGORIES,
    DEPLOYMENTS,
    ERRORS,
    ERRORS_CSV,
    FORMAT_VERSION,
    PLOT,
    PREDICTION_CHANGED,
    REPORT,
    ROWS,
    ROWS_CSV,
    SETTINGS_FILE,
    STABLE,
    SUMMARY,
    DriftRow,
    read_drift_rows,
)
from ov_explain.runs.engine import FolderError, FolderKind, Progress, ThreadEngine, run_rows
from ov_explain.runs.naming import file_labels, format_drift_name, parse_drift_name, unique_stems
from ov_explain.runs.report import build_drift_report
from ov_explain.runs.writer import npy_bytes

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class DriftThresholds:
    """When a kept prediction counts as "attention moved": the map correlation below
    ``min_correlation`` or the top-10 % overlap below ``min_iou``."""

    min_correlation: float = 0.8
    min_iou: float = 0.3

    def __post_init__(self) -> None:
        if not -1.0 <= self.min_correlation <= 1.0 or not 0.0 <= self.min_iou <= 1.0:
            raise FolderError(f"drift thresholds: correlation in -1..1 and IoU in 0..1, got "
                              f"{self.min_correlation}, {self.min_iou}")

    def category(self, top1_agreement: bool, map_correlation: float, iou: float) -> str:
        if not top1_agreement:
            return PREDICTION_CHANGED
        if map_correlation < self.min_correlation or iou < self.min_iou:
            return ATTENTION_MOVED
        return STABLE


DRIFT_FOLDER = FolderKind(
    noun="a drift audit", settings_file=SETTINGS_FILE, rows_file=ROWS, errors_file=ERRORS,
    top_files=(SETTINGS_FILE, ROWS, ERRORS, ROWS_CSV, ERRORS_CSV, SUMMARY, PLOT, REPORT), categories=CATEGORIES,
    picture_folders=(), file_extensions=(".jpg", ".npy"),
    path_columns=("image_path", "reference_map_path", "candidate_map_path"),
    stem_of=lambda name: parse_drift_name(name).reference.stem, parse_row=DriftRow.from_dict, error_type=ErrorRow)


@dataclass
class DriftSummary:
    """What changed between the two deployments, over every image in the folder."""

    out_dir: Path
    images: int
    rows: int
    errors: int
    resumed: int
    top1_agreement: float | None
    categories: dict[str, int]
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
                "prediction-changed": self.categories.get(PREDICTION_CHANGED, 0) / images,
                "attention-moved": self.categories.get(ATTENTION_MOVED, 0) / images}


# ----- the drift audit -------------------------------------------------------------------------------
def run_drift(samples: Sequence[Sample], reference: Explainer, candidate: Explainer, out_dir: str | os.PathLike,
              *, resolver: LabelResolver | None = None, thresholds: DriftThresholds = DriftThresholds(),
              cases: CaseThresholds = CaseThresholds(), restart: bool = False, progress: Progress | None = None,
              workers: int | None = None, report: bool = True, stop: threading.Event | None = None,
              extra_settings: dict[str, Any] | None = None) -> DriftSummary:
    """Compare ``candidate`` with ``reference`` on ``samples`` into ``out_dir``; resumes a previous run."""
    out = Path(out_dir)
    if reference.method != candidate.method:
        raise FolderError(f"the two deployments explain with different methods ({reference.method} and "
                          f"{candidate.method}); ask for the same --method")
    classifier = reference.classifier
    resolver = resolver or LabelResolver(classifier.labels, classifier.num_classes)
    stems = dict(zip((s.key for s in samples), unique_stems([s.key for s in samples], [s.path.stem for s in samples])))
    settings = {"format_version": FORMAT_VERSION, "reference": _deployment(reference),
                "candidate": _deployment(candidate),
                "thresholds": dataclasses.asdict(thresholds), "cases": cases.to_dict(),
                "label_map": json.dumps(resolver.label_map, sort_keys=True), **(extra_settings or {})}
    # Both deployments' requests busy, plus one thread decoding or writing (as the audit does).
    threads = workers or reference.parallel_requests + candidate.parallel_requests + 1
    worker = _DriftWorker(reference, candidate, resolver, thresholds, cases, out, stems)
    started = time.perf_counter()
    stats = run_rows(samples, ThreadEngine(worker, threads), out, DRIFT_FOLDER, settings, set(stems.values()),
                     restart=restart, progress=progress, stop=stop)
    summary = write_drift_summary(out, settings, stats.resumed, time.perf_counter() - started)
    if report:
        build_drift_report(out)
    return summary


def _deployment(explainer: Explainer) -> dict[str, Any]:
    classifier = explainer.classifier
    return {"model": str(classifier.files.model.resolve()), "model_sha256": classifier.files.digest(),
            "device": explainer.device, "precision": explainer.precision,
            "requested_precision": classifier.requested_precision, "method": explainer.method,
            "mode": explainer.mode, "target_layer": explainer.target_layer, "readout": explainer.readout}


class _DriftWorker:
    """One image through both deployments, in a worker thread: rows and the side-by-side pictures."""

    def __init__(self, reference: Explainer, candidate: Explainer, resolver: LabelResolver,
                 thresholds: DriftThresholds, cases: CaseThresholds, out: Path, stems: dict[str, str]) -> None:
        self.reference, self.candidate, self.resolver = reference, candidate, resolver
        self.thresholds, self.cases, self.out, self.stems = thresholds, cases, out, stems
        classifier = reference.classifier
        self.names = classifier.labels or [str(i) for i in range(classifier.num_classes)]
        self.file_names = file_labels(self.names)

    def __call__(self, sample: Sample) -> list[DriftRow]:
        """One sample's rows (an exception becomes its error row in :func:`~ov_explain.runs.engine.run_rows`)."""
        started = time.perf_counter()
        truth = self.resolver(sample.label) if sample.label is not None else None
        pixels = read_image(sample.path)
        decisions = []

        def choose(prediction: Any) -> list[int]:
            """The reference's case decides the classes: top-1 (and runner-up), plus the ground truth."""
            decisions.append(classify_case(prediction.probabilities, truth, self.cases))
            chosen = [c for c, _ in decisions[0].targets]
            return chosen + ([truth] if truth is not None and truth not in chosen else [])

        ref = self.reference.explain_prepared(self.reference.prepare(pixels, source=str(sample.path)), choose)
        targets = [m.target for m in ref.maps] if ref.maps[0].target is not None else choose(ref.prediction)
        cand = self.candidate.explain_prepared(self.candidate.prepare(pixels, source=str(sample.path)),
                                               lambda _: targets)
        candidate_case = classify_case(cand.prediction.probabilities, truth, self.cases).case
        roles = dict(decisions[0].targets)
        explained = time.perf_counter()
        rows = []
        bgr = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
        ref_top, cand_top = ref.prediction.top[0], cand.prediction.top[0]
        for rank, target in enumerate(targets):
            mine, theirs = _map_for(ref, target), _map_for(cand, target)
            r, iou = correlation(mine.raw, theirs.raw), iou_top(mine.raw, theirs.raw, 0.1)
            cells, fraction = peak_shift(mine.raw, theirs.raw)
            category = self.thresholds.category(ref_top.index == cand_top.index, r, iou)
            p_ref, p_cand = float(ref.prediction.probabilities[target]), float(cand.prediction.probabilities[target])
            name = format_drift_name(self.stems[sample.key], self.file_names[ref_top.index], ref_top.probability,
                                     self.file_names[cand_top.index], cand_top.probability, self.file_names[target], r,
                                     None if truth is None else self.file_names[truth],
                                     None if truth is None else float(ref.prediction.probabilities[truth]))
            (self.out / category).mkdir(exist_ok=True)
            maps = {deployment: f"{category}/{Path(name).stem}.{deployment}.npy" for deployment in DEPLOYMENTS}
            for deployment, saliency in zip(DEPLOYMENTS, (mine, theirs)):
                atomic_write_bytes(self.out / maps[deployment], npy_bytes(saliency.raw))
            atomic_write_bytes(self.out / category / name, render.encode_jpeg(side_by_side(bgr, mine, theirs), 90,
                                                                              bgr=True))
            rows.append(DriftRow(
                key=sample.key, source=str(sample.path), stem=self.stems[sample.key], ground_truth=sample.label,
                ground_truth_index=truth, target_rank=rank, targets_total=len(targets), target_index=int(target),
                target_class=self.names[target], target_role=roles.get(target, "ground_truth"),
                reference_top1_index=ref_top.index, reference_top1_class=self.names[ref_top.index],
                reference_top1_probability=round(ref_top.probability, 6), candidate_top1_index=cand_top.index,
                candidate_top1_class=self.names[cand_top.index],
                candidate_top1_probability=round(cand_top.probability, 6),
                top1_agreement=ref_top.index == cand_top.index, reference_probability=round(p_ref, 6),
                candidate_probability=round(p_cand, 6), probability_change=round(p_cand - p_ref, 6),
                reference_case=decisions[0].case, candidate_case=candidate_case, correlation=round(r, 6),
                iou_top10=round(iou, 6), peak_shift_cells=round(cells, 4), peak_shift_fraction=round(fraction, 4),
                category=category, image_path=f"{category}/{name}",
                timings_ms={"explain_ms": round((explained - started) * 1000, 3),
                            "write_ms": round((time.perf_counter() - explained) * 1000, 3)},
                width=int(pixels.shape[1]), height=int(pixels.shape[0]), reference_map_path=maps["reference"],
                candidate_map_path=maps["candidate"], reference_map_box=ref.map_box, candidate_map_box=cand.map_box))
        return rows


def _map_for(explanation: Any, target: int) -> Any:
    for saliency in explanation.maps:
        if saliency.target == target or saliency.target is None:  # class-agnostic: one map
            return saliency
    raise OvExplainError(f"{explanation.source}: no map for class {target}")


def side_by_side(bgr: np.ndarray, reference: Any, candidate: Any, *, weight: float = 0.5) -> np.ndarray:
    """Reference overlay | candidate overlay | |difference| of the normalised maps, one BGR picture."""
    first = reference.levels_on_image(as_uint8=True)
    second = candidate.levels_on_image(as_uint8=True)
    difference = cv2.absdiff(first, second)
    panels = [render.blend_levels(bgr, first, weight=weight, bgr=True),
              render.blend_levels(bgr, second, weight=weight, bgr=True),
              render.blend_levels(bgr, difference, weight=0.7, colormap="inferno", bgr=True)]
    return np.hstack(panels)


# ----- the closing files -----------------------------------------------------------------------------
def write_drift_summary(out: Path, settings: dict[str, Any], resumed: int, seconds: float) -> DriftSummary:
    """summary.json, the CSVs and the correlation plot, from the folder's rows."""
    rows = read_drift_rows(out)
    errors = [ErrorRow.from_dict(e) for e in read_jsonl(out / ERRORS) if isinstance(e, dict)]
    write_csv(out / ROWS_CSV, [r.to_dict() for r in rows])
    write_csv(out / ERRORS_CSV, [e.to_dict() for e in errors], ERROR_COLUMNS)
    images = [r for r in rows if r.target_rank == 0]
    per_image: dict[str, str] = {}  # an image counts in its most drifted row's category
    for row in rows:
        current = per_image.get(row.key, STABLE)
        per_image[row.key] = min(current, row.category, key=CATEGORIES.index)
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
        categories={c: n for c in CATEGORIES if (n := sum(category == c for category in per_image.values()))},
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


# ----- the deployment gate -----------------------------------------------------------------------------
GATE_METRICS = ("top1-agreement", "map-correlation-median", "map-correlation-p05", "iou-median",
                "prediction-changed", "attention-moved")


@dataclass(frozen=True)
class Limit:
    """``metric<value`` or ``metric>value``: crossed when the metric is on the wrong side."""

    metric: str
    operator: str
    value: float

    def crossed(self, metrics: dict[str, float | None]) -> bool:
        actual = metrics[self.metric]
        if actual is None:
            return True  # nothing measured cannot pass a gate
        return actual < self.value if self.operator == "<" else actual > self.value

    def __str__(self) -> str:
        return f"{self.metric}{self.operator}{self.value:g}"


def parse_gate(text: str) -> list[Limit]:
    """``top1-agreement<0.99,map-correlation-p05<0.8``: a comma-separated list of limits."""
    import re

    limits = []
    for part in (p.strip() for p in text.split(",")):
        match = re.fullmatch(r"([a-z0-9-]+)\s*([<>])\s*([-+]?\d*\.?\d+)", part)
        if match is None or match[1] not in GATE_METRICS:
            raise FolderError(f"--fail-on: {part!r} is not METRIC<VALUE or METRIC>VALUE with a metric of "
                              f"{', '.join(GATE_METRICS)}")
        limits.append(Limit(match[1], match[2], float(match[3])))
    return limits


def check_gate(summary: DriftSummary, limits: Sequence[Limit]) -> list[str]:
    """The limits the summary crosses, each with the measured value (empty: the gate passes)."""
    metrics = summary.metrics()
    return [f"{limit} (measured {metrics[limit.metric]})" for limit in limits if limit.crossed(metrics)]


def drift(dataset: str | os.PathLike, out_dir: str | os.PathLike = "ov-explain-drift", *,
          reference: str | os.PathLike | None = None, candidate: str | os.PathLike | None = None,
          reference_device: str = "AUTO", candidate_device: str | None = None, reference_precision: str = "f32",
          candidate_precision: str | None = None, method: str | None = None, preset: str = "balance",
          seed: int = 0, labels: Any = None, label_map: str | os.PathLike | dict | None = None, kind: str = "auto",
          limit: int | None = None, thresholds: DriftThresholds = DriftThresholds(),
          cases: CaseThresholds = CaseThresholds(), restart: bool = False, workers: int | None = None,
          report: bool = True, progress: Progress | None = None, cache_dir: str | None = "default",
          stop: threading.Event | None = None) -> DriftSummary:
    """A drift audit in one call (the Python face of ``ov-explain drift``).

    A deployment is a model, a device and a precision: the candidate's default to the reference's
    (compare an INT8 IR with its FP32 original on the same device), so ``candidate_precision="device"``
    alone compares the same IR as the device runs it (bf16 on an AMX Xeon) against f32.
    """
    from ov_explain.core.model import Classifier
    from ov_explain.runs.dataset import default_label_map, read_dataset, read_label_map, select

    if reference is None and candidate is None and candidate_precision in (None, reference_precision) \
            and candidate_device in (None, reference_device):
        raise FolderError("the candidate deployment is the reference: give --candidate, --candidate-precision "
                          "or --candidate-device")
    samples = select(read_dataset(dataset, kind=kind, exclude=out_dir), limit=limit)
    if not samples:
        raise FolderError(f"{dataset}: no image to compare")
    ref_classifier = Classifier(reference, device=reference_device, labels=labels, hint="THROUGHPUT",
                                cache_dir=cache_dir, precision=reference_precision)
    cand_classifier = Classifier(candidate if candidate is not None else ref_classifier.files.model,
                                 device=candidate_device or reference_device, labels=labels, hint="THROUGHPUT",
                                 cache_dir=cache_dir, precision=candidate_precision or reference_precision)
    if cand_classifier.num_classes != ref_classifier.num_classes:
        raise FolderError(f"the deployments have {ref_classifier.num_classes} and {cand_classifier.num_classes} "
                          "classes: they are not the same classifier")
    if label_map is None and any(s.label is not None for s in samples):
        label_map = default_label_map(ref_classifier.files.model)
    mapping = label_map if isinstance(label_map, dict) or label_map is None else read_label_map(label_map)
    resolver = LabelResolver(ref_classifier.labels, ref_classifier.num_classes, mapping)
    with ref_classifier, cand_classifier, \
            Explainer(ref_classifier, method=method, preset=preset, seed=seed) as ref_explainer, \
            Explainer(cand_classifier, method=ref_explainer.method, preset=preset, seed=seed) as cand_explainer:
        return run_drift(samples, ref_explainer, cand_explainer, out_dir, resolver=resolver, thresholds=thresholds,
                         cases=cases, restart=restart, progress=progress, workers=workers, report=report, stop=stop)
