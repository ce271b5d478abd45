"""Drift audit: did a deployment change what the model looks at?

Two deployments (model + device + precision) of the same classifier predict and explain every
image of a dataset for **the same classes** (the reference's top-1, its runner-up where the case
needs it, the ground truth when known). Each image and class gets a row with the top-1 agreement,
the probability change, both cases and how much the map moved (:mod:`ov_explain.evaluate.drift_measures`),
a case folder (Stable, Attention_moved, Prediction_changed) and a side-by-side picture: reference
map | candidate map | their difference.

It runs on the audit's engine (:mod:`ov_explain.runs.engine`): resumable, one writer per folder,
nothing of the user's touched.

Output folder::

    drift.json                  settings of the run (a different pair of deployments is refused)
    <Category>/<drift name>.jpg side by side per image and class
    <Category>/<drift name>.reference.npy, .candidate.npy   both raw maps (what exports read)
    drift.jsonl, drift.csv      one row per image and class
    errors.jsonl, errors.csv    images that could not be compared, and why
    summary.json                agreement, case transitions, map correlation median / 5th percentile,
                                worst classes, cases
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ov_explain.core.config import ModelConfig, apply_shortcuts, model_config
from ov_explain.explain.config import ExplainConfig
from ov_explain.explain.explainer import Explainer
from ov_explain.runs.audit.folder import ErrorRow
from ov_explain.runs.cases import CaseThresholds
from ov_explain.runs.config import DatasetConfig, RunConfig
from ov_explain.runs.dataset import LabelResolver, Sample
from ov_explain.runs.detection.cases import BoxThresholds
from ov_explain.runs.drift.folder import (
    ATTENTION_MOVED,
    CASES,
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
)
from ov_explain.runs.drift.gate import GATE_METRICS, Limit, check_gate, parse_gate
from ov_explain.runs.drift.summary import DriftSummary, correlation_plot, write_drift_summary
from ov_explain.runs.drift.worker import DriftThresholds, DriftWork, DriftWorker, deployment_settings, side_by_side
from ov_explain.runs.engine import FolderError, FolderKind, Progress, ThreadEngine, run_rows
from ov_explain.runs.naming import parse_drift_name, unique_stems
from ov_explain.runs.ray_engine import RayEngine, import_ray
from ov_explain.runs.report import build_drift_report

logger = logging.getLogger(__name__)

__all__ = ["ATTENTION_MOVED", "GATE_METRICS", "PREDICTION_CHANGED", "STABLE", "DriftOptions", "DriftSummary",
           "DriftThresholds", "DriftWork", "Limit", "check_gate", "correlation_plot", "drift", "parse_gate",
           "run_drift", "side_by_side"]


def upgrade_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """A drift.json written before the preprocessing and backend were choices: the model's own preprocessing
    (``preprocess: null``), on the native backend."""
    upgraded = dict(settings)
    for role in ("reference", "candidate"):
        if isinstance(upgraded.get(role), dict) and "preprocess" not in upgraded[role]:
            upgraded[role] = {**upgraded[role], "preprocess": None}
    return upgraded


DRIFT_FOLDER = FolderKind(
    noun="a drift audit", settings_file=SETTINGS_FILE, rows_file=ROWS, errors_file=ERRORS,
    top_files=(SETTINGS_FILE, ROWS, ERRORS, ROWS_CSV, ERRORS_CSV, SUMMARY, PLOT, REPORT), cases=CASES,
    picture_folders=(), file_extensions=(".jpg", ".npy"),
    path_columns=("image_path", "reference_map_path", "candidate_map_path"),
    stem_of=lambda name: parse_drift_name(name).reference.stem, parse_row=DriftRow.from_dict, error_type=ErrorRow,
    upgrade_settings=upgrade_settings)


@dataclass(frozen=True)
class DriftOptions:
    """How a drift audit decides and what it writes: when attention moved, the audit case thresholds that
    choose the classes compared, and whether report.html is built."""

    thresholds: DriftThresholds = DriftThresholds()
    cases: CaseThresholds = CaseThresholds()
    report: bool = True
    #: Detectors: how boxes match across deployments and the ground truth (its confidence: ``cases``').
    boxes: BoxThresholds = BoxThresholds()


# ----- the drift audit -------------------------------------------------------------------------------
def run_drift(samples: Sequence[Sample], reference: Explainer, candidate: Explainer, out_dir: str | os.PathLike,
              *, resolver: LabelResolver | None = None, options: DriftOptions = DriftOptions(),
              run: RunConfig = RunConfig(), progress: Progress | None = None, stop: threading.Event | None = None,
              recipe: DriftWork | None = None) -> DriftSummary:
    """Compare ``candidate`` with ``reference`` on ``samples`` into ``out_dir``; resumes a previous run.

    ``run.engine == "ray"``: the per-image work runs on Ray actors built from ``recipe`` (see :func:`drift`).
    """
    out = Path(out_dir)
    if reference.method != candidate.method:
        raise FolderError(f"the two deployments explain with different methods ({reference.method} and "
                          f"{candidate.method}); ask for the same --method")
    classifier = reference.classifier
    resolver = resolver or LabelResolver(classifier.labels, classifier.num_classes)
    stems = dict(zip((s.key for s in samples), unique_stems([s.key for s in samples], [s.path.stem for s in samples])))
    settings = {"format_version": FORMAT_VERSION, "reference": deployment_settings(reference),
                "candidate": deployment_settings(candidate), "thresholds": dataclasses.asdict(options.thresholds),
                "cases": options.cases.to_dict(), "label_map": json.dumps(resolver.label_map, sort_keys=True)}
    if run.engine == "ray":
        if recipe is None:
            raise FolderError("the Ray engine builds its work from a recipe (DriftWork): pass recipe=")
        engine: Any = RayEngine(recipe, stems, run.ray)
    else:
        # Each image runs its two deployments one after the other: one inference in flight per image, so
        # --workers images at once; by default both deployments' requests busy, plus one thread decoding or
        # writing (as the audit does).
        threads = run.workers or reference.parallel_requests + candidate.parallel_requests + 1
        engine = ThreadEngine(DriftWorker(reference, candidate, resolver, options.thresholds, options.cases, out,
                                          stems), threads)
    started = time.perf_counter()
    stats = run_rows(samples, engine, out, DRIFT_FOLDER, settings, set(stems.values()), restart=run.restart,
                     progress=progress, stop=stop)
    summary = write_drift_summary(out, settings, stats.resumed, time.perf_counter() - started)
    if options.report:
        build_drift_report(out)
    return summary


def drift(dataset: str | os.PathLike, out_dir: str | os.PathLike = "ov-explain-drift", *,
          reference: ModelConfig | str | os.PathLike | None = None,
          candidate: ModelConfig | Mapping[str, Any] | str | os.PathLike | None = None,
          explain: ExplainConfig | None = None, data: DatasetConfig | None = None, run: RunConfig | None = None,
          options: DriftOptions | None = None, progress: Progress | None = None,
          stop: threading.Event | None = None, **shortcuts: Any) -> DriftSummary:
    """A drift audit in one call (the Python face of ``ov-explain drift``).

    A deployment is a model config (model, device, precision, preprocessing): the candidate's fields
    default to the reference's — ``candidate`` may be a full :class:`ModelConfig`, another model path, or a
    dict of the fields that differ — so ``candidate={"precision": "device"}`` alone compares the same IR as
    the device runs it (bf16 on an AMX Xeon) against f32. Keyword shortcuts: ``reference_<field>`` and
    ``candidate_<field>`` for one deployment (``reference_device="CPU"``), a model field alone for both,
    and any field of the other configs (``limit=10``, ``method="reciprocam"``, ``engine="ray"``).
    """
    mine = {k: v for k, v in shortcuts.items() if k.startswith("candidate_")}
    configs = apply_shortcuts({"reference": model_config(reference), "explain": explain or ExplainConfig(),
                               "data": data or DatasetConfig(), "run": run or RunConfig(),
                               "options": options or DriftOptions()},
                              {k: v for k, v in shortcuts.items() if k not in mine},
                              prefixes={"reference": ["reference"]})
    ref_config, explain, data, run, options = (configs[k] for k in ("reference", "explain", "data", "run", "options"))
    if isinstance(candidate, ModelConfig):
        cand_config = candidate
    elif isinstance(candidate, Mapping):
        cand_config = dataclasses.replace(ref_config, **candidate)
    else:
        cand_config = ref_config if candidate is None else dataclasses.replace(ref_config, path=Path(candidate))
    cand_config = apply_shortcuts({"candidate": cand_config}, mine, prefixes={"candidate": ["candidate"]})["candidate"]
    if cand_config == ref_config:
        raise FolderError("the candidate deployment is the reference: give --candidate, --candidate-precision "
                          "or --candidate-device")
    if run.engine == "ray":
        import_ray(private_cluster=run.ray.address is None)
    reference_model = ref_config.load(hint="THROUGHPUT")
    with reference_model:  # closed however the rest ends (a dataset that cannot be read included)
        if cand_config.path is None:  # the reference's file, as found
            cand_config = dataclasses.replace(cand_config, path=reference_model.files.model)
        if getattr(reference_model, "output_format", None) is not None:  # a detector: compared box by box
            return _detection_drift(dataset, out_dir, reference_model, ref_config, cand_config, explain, data, run,
                                    options, progress, stop)
        return _classifier_drift(dataset, out_dir, reference_model, ref_config, cand_config, explain, data, run,
                                 options, progress, stop)


def _classifier_drift(dataset: Any, out_dir: Any, ref_classifier: Any, ref_config: ModelConfig,
                      cand_config: ModelConfig, explain: ExplainConfig, data: DatasetConfig, run: RunConfig,
                      options: DriftOptions, progress: Progress | None, stop: threading.Event | None) -> DriftSummary:
    """Two deployments of a classifier, image by image."""
    _, samples = data.read(dataset, exclude=out_dir)
    if not samples:
        raise FolderError(f"{dataset}: no image to compare")
    purpose = "the candidate of a classifier's drift audit"
    with cand_config.load_classifier(hint="THROUGHPUT", purpose=purpose) as cand_classifier:
        if cand_classifier.num_classes != ref_classifier.num_classes:
            raise FolderError(f"the deployments have {ref_classifier.num_classes} and {cand_classifier.num_classes} "
                              "classes: they are not the same classifier")
        resolver = data.resolver(ref_classifier, samples)
        # The candidate explains with the reference's method; its layer is its own graph's (an INT8 IR's nodes
        # have other names), unless one was asked for.
        with explain.create(ref_classifier) as ref_explainer, \
                dataclasses.replace(explain, method=ref_explainer.method).create(cand_classifier) as cand_explainer:
            recipe = None
            if run.engine == "ray":
                recipe = DriftWork(ref_config.resolved(ref_classifier), cand_config.resolved(cand_classifier),
                                   explain.resolved(ref_explainer), explain.resolved(cand_explainer),
                                   resolver.label_map, options.thresholds, options.cases,
                                   str(Path(out_dir).resolve()))
            return run_drift(samples, ref_explainer, cand_explainer, out_dir, resolver=resolver, options=options,
                             run=run, progress=progress, stop=stop, recipe=recipe)


def _detection_drift(dataset: Any, out_dir: Any, reference: Any, ref_config: ModelConfig, cand_config: ModelConfig,
                     explain: ExplainConfig, data: DatasetConfig, run: RunConfig, options: DriftOptions,
                     progress: Progress | None, stop: threading.Event | None) -> Any:
    """Two deployments of a detector, box by box (see :mod:`ov_explain.runs.detection.drift`)."""
    from ov_explain.runs.detection.audit import resolve_truths
    from ov_explain.runs.detection.drift import DetectionDriftWork, run_detection_drift

    _, samples = data.read_boxes(dataset, exclude=out_dir)
    if not samples:
        raise FolderError(f"{dataset}: no image to compare")
    candidate = cand_config.load(hint="THROUGHPUT")
    with candidate:
        if getattr(candidate, "output_format", None) is None or candidate.num_classes != reference.num_classes:
            raise FolderError(f"{candidate.files.model}: not a detector of the reference's {reference.num_classes} "
                              "classes")
        resolver = data.resolver(reference, samples)
        truths = resolve_truths(dataset, samples, resolver)
        boxes = dataclasses.replace(options.boxes, high_confidence=options.cases.high_confidence)
        with explain.create(reference) as ref_explainer, \
                dataclasses.replace(explain, method=ref_explainer.method).create(candidate) as cand_explainer:
            recipe = None
            if run.engine == "ray":
                recipe = DetectionDriftWork(ref_config.resolved(reference), cand_config.resolved(candidate),
                                            explain.resolved(ref_explainer), explain.resolved(cand_explainer), truths,
                                            boxes, options.thresholds, str(Path(out_dir).resolve()))
            return run_detection_drift(samples, ref_explainer, cand_explainer, out_dir, truths, boxes=boxes,
                                       thresholds=options.thresholds, label_map=resolver.label_map, run=run,
                                       progress=progress, stop=stop, recipe=recipe, report=options.report)
