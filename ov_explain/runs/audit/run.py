"""Dataset audit: predict and explain every image, sort the maps into case folders, never lose work.

Output folder::

    audit.json                  settings of the run (a different model/method/threshold is refused)
    <Case_name>/<structured name>.jpg   overlay per explained class (+ .npy raw map, .rgba.png)
    manifest.jsonl, manifest.csv        one row per image and explained class
    errors.jsonl, errors.csv            one row per image that could not be audited, and why
    summary.json, confusion.csv         counts per case and class, confusion table
    grids/<Case_name>.jpg               picture grid per case
    report.html                         self-contained gallery with filters (ov_explain.runs.report)

Images are decoded, inferred and written by worker threads (each with its own infer request), so
the device stays busy; rows are appended to the manifest in dataset order after the image's files
are in place, which is what makes a re-run resume exactly where a killed one stopped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ov_explain.core.config import ModelConfig, apply_shortcuts, model_config
from ov_explain.core.errors import OvExplainError
from ov_explain.core.images import read_image
from ov_explain.explain.base import Explanation
from ov_explain.explain.config import ExplainConfig
from ov_explain.explain.explainer import Explainer
from ov_explain.runs.audit.folder import (
    ERRORS,
    FORMAT_VERSION,
    GRIDS,
    MANIFEST,
    MAP_EXTENSIONS,
    SETTINGS_FILE,
    TOP_FILES,
    AuditRow,
    ErrorRow,
    RankedClass,
    read_errors,
)
from ov_explain.runs.audit.summary import AuditSummary, SummaryBuilder
from ov_explain.runs.cases import CASES, CaseDecision, CaseThresholds, classify_case
from ov_explain.runs.config import DatasetConfig, RunConfig
from ov_explain.runs.dataset import LabelResolver, Sample
from ov_explain.runs.detection.cases import BoxThresholds
from ov_explain.runs.engine import FolderError, FolderKind, Progress, ThreadEngine, run_rows
from ov_explain.runs.naming import file_labels, format_name, parse_name, unique_stems
from ov_explain.runs.ray_engine import RayEngine, actor_core, import_ray
from ov_explain.runs.report import REPORT_ITEMS, ImageGallery, ReportPictures
from ov_explain.runs.settings import digest, method_settings, model_settings, run_record, style_settings
from ov_explain.runs.writer import MapStyle, to_bgr, write_map_files

logger = logging.getLogger(__name__)

__all__ = ["AuditError", "AuditOptions", "AuditSummary", "AuditWork", "audit", "run_audit"]

#: The audit cannot start (e.g. the output folder holds a different audit).
AuditError = FolderError


def upgrade_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """An audit.json written by an earlier version, in today's names: ``precision`` was the requested one."""
    if "precision" in settings and "requested_precision" not in settings:
        settings = {("requested_precision" if k == "precision" else k): v for k, v in settings.items()}
    return settings


#: What an audit writes in its folder, for the shared engine's folder contract.
AUDIT_FOLDER = FolderKind(
    noun="an audit", settings_file=SETTINGS_FILE, rows_file=MANIFEST, errors_file=ERRORS, top_files=TOP_FILES,
    cases=CASES, picture_folders=(GRIDS,), file_extensions=MAP_EXTENSIONS,
    path_columns=("overlay_path", "raw_path", "rgba_path"), stem_of=lambda name: parse_name(name).stem,
    parse_row=AuditRow.from_dict, error_type=ErrorRow, upgrade_settings=upgrade_settings)


@dataclass(frozen=True)
class AuditOptions:
    """What an audit writes and how it decides cases."""

    thresholds: CaseThresholds = CaseThresholds()
    top_k: int = 5
    #: The maps themselves (.npy): what exports and re-rendering read. None: kept, unless the audit being
    #: resumed was made without them.
    save_raw: bool | None = None
    save_rgba: bool = False
    colormap: str = "jet"
    overlay_weight: float = 0.5
    jpeg_quality: int = 90
    grids: bool = True
    grid_tiles: int = 24
    report: bool = True  # report.html (see ov_explain.runs.report)
    #: Detectors: the IoU at which a detection matches a ground-truth box, and the lowest of a mislocalised one.
    match_iou: float = 0.5
    mislocalized_iou: float = 0.1

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise AuditError(f"top_k: expected >= 1, got {self.top_k}")
        try:
            _ = self.style  # colormap, overlay weight and JPEG quality are the writer's to check
            _ = self.box_thresholds
        except (ValueError, OvExplainError) as exc:
            raise AuditError(str(exc)) from None

    @property
    def box_thresholds(self) -> BoxThresholds:
        """A detection audit's case thresholds (the confidence one is the classifiers')."""
        return BoxThresholds(self.match_iou, self.mislocalized_iou, self.thresholds.high_confidence)

    @property
    def style(self) -> MapStyle:
        return MapStyle(self.colormap, self.overlay_weight, self.jpeg_quality, self.save_raw is not False,
                        self.save_rgba)


# ----- the audit ----------------------------------------------------------------------------------------
def run_audit(samples: Sequence[Sample], explainer: Explainer, out_dir: str | os.PathLike, *,
              resolver: LabelResolver | None = None, options: AuditOptions = AuditOptions(),
              run: RunConfig = RunConfig(), progress: Progress | None = None,
              all_samples: Sequence[Sample] | None = None, stop: threading.Event | None = None,
              recipe: "AuditWork | None" = None) -> AuditSummary:
    """Audit ``samples`` into ``out_dir``; resumes a previous run of the same settings.

    ``run.engine == "ray"``: the per-image work runs on Ray actors built from ``recipe`` (see :func:`audit`)
    instead of this process's threads; the folder, rows and resume are the same.

    Setting ``stop`` (from a signal handler or another thread) ends the run between images: the
    images in flight are finished and recorded, then :class:`~ov_explain.runs.engine.RunInterrupted`
    says how many are saved.

    ``all_samples`` is the whole dataset when ``samples`` is a selection of it: file names are made
    unique over the whole dataset so a later, larger run names files the same way.
    """
    out = Path(out_dir)
    classifier = explainer.classifier
    if resolver is None:
        resolver = LabelResolver(classifier.labels, classifier.num_classes)
    if options.save_raw is None:
        options = dataclasses.replace(options, save_raw=True)
    settings = _settings(explainer, options, resolver)
    universe = list(all_samples) if all_samples is not None else list(samples)
    stems = dict(zip((s.key for s in universe), unique_stems([s.key for s in universe],
                                                             [s.path.stem for s in universe])))
    if run.engine == "ray":
        if recipe is None:
            raise AuditError("the Ray engine builds its work from a recipe (AuditWork): pass recipe=")
        engine: Any = RayEngine(recipe, stems, run.ray)
    else:  # one budget of inferences in flight for the whole audit, shared by the images at once
        threads, per_image = explainer.plan(run.workers)
        engine = ThreadEngine(_ImageWorker(explainer, resolver, options, out, stems, per_image), threads)
    chosen = ImageGallery(REPORT_ITEMS) if options.report else None  # the report's images, chosen alike
    # The summary, the CSV, the grids' and the report's choices built as the rows are appended.
    builder = SummaryBuilder(out, options.grid_tiles if options.grids else None, chosen)
    stats = run_rows(samples, engine, out, AUDIT_FOLDER, settings, set(stems.values()), restart=run.restart,
                     progress=progress, stop=stop, sink=builder)
    run_summary = {**run_record(explainer, stats.seconds, stats.ran, stats.resumed),
                   "thresholds": options.thresholds.to_dict()}
    # The end's pictures on one pool: the report's thumbnails are made while the grids are drawn and
    # summary.json written (the page itself is rendered once the summary is in place).
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        pictures = None if chosen is None else ReportPictures(out, chosen.finish(), pool=pool)
        summary = builder.finish(read_errors(out), run_summary, pool=pool)
        if pictures is not None:
            pictures.write()
    logger.info("audit: %d images in %.1f s (%.1f images/s), %d errors", stats.ran, stats.seconds,
                summary.images_per_second, summary.errors)
    return summary


def audit(dataset: str | os.PathLike, out_dir: str | os.PathLike = "ov-explain-audit", *,
          model: ModelConfig | str | os.PathLike | None = None, explain: ExplainConfig | None = None,
          data: DatasetConfig | None = None, run: RunConfig | None = None, options: AuditOptions | None = None,
          progress: Progress | None = None, stop: threading.Event | None = None, **shortcuts: Any) -> AuditSummary:
    """Audit a dataset in one call (the Python face of ``ov-explain audit``; same options).

    The options are the fields of the configs: ``model`` (a :class:`ModelConfig` or a model path),
    ``explain``, ``data`` (which images), ``run`` (engine, workers, restart) and ``options`` (what is
    written, the case thresholds). Any field can also be given by name as a keyword shortcut:
    ``audit(dataset, out, device="CPU", method="reciprocam", limit=100, high_confidence=0.6)``.

    ``run.engine``: ``local`` (this process's threads) or ``ray`` (Ray Data actors, ``run.ray`` says where
    and how many; the ``distributed`` extra). Both write the same folder, rows and files, and resume each other.

    The model's ``precision`` defaults to f32 so that the same audit gives the same cases on every CPU;
    ``device`` audits the model as the device runs it (bf16 on an AMX Xeon, f16 on GPU / NPU).
    """
    configs = apply_shortcuts({"model": model_config(model), "explain": explain or ExplainConfig(),
                               "data": data or DatasetConfig(), "run": run or RunConfig(),
                               "options": options or AuditOptions()}, shortcuts)
    model, explain, data, run, options = (configs[k] for k in ("model", "explain", "data", "run", "options"))
    if run.engine == "ray":
        import_ray(private_cluster=run.ray.address is None)  # a missing extra: said before anything
    if options.save_raw is None:  # keep raw maps, unless resuming an audit made without them
        saved = _previous_setting(Path(out_dir), "save_raw", True) if not run.restart else True
        options = dataclasses.replace(options, save_raw=saved)
    with model.load(hint="THROUGHPUT") as loaded:
        work = _detection_audit if getattr(loaded, "output_format", None) is not None else _classifier_audit
        return work(dataset, out_dir, loaded, model, explain, data, run, options, progress, stop)


def _classifier_audit(dataset: Any, out_dir: Any, classifier: Any, model: ModelConfig, explain: ExplainConfig,
                      data: DatasetConfig, run: RunConfig, options: AuditOptions, progress: Progress | None,
                      stop: threading.Event | None) -> AuditSummary:
    everything, chosen = data.read(dataset, exclude=out_dir)  # never audit our own overlays
    if not chosen:
        known = sorted({s.label for s in everything if s.label is not None})
        raise AuditError(f"{dataset}: no image is left after --classes/--limit/--sample (dataset labels: "
                         f"{', '.join(known[:10]) or 'none'}{', ...' if len(known) > 10 else ''})")
    resolver = data.resolver(classifier, chosen)
    _check_labels(dataset, chosen, resolver)
    with explain.create(classifier) as explainer:
        recipe = None
        if run.engine == "ray":  # actors rebuild what this process built, as it was resolved here
            recipe = AuditWork(model.resolved(classifier), explain.resolved(explainer), resolver.label_map,
                               options, run.workers, str(Path(out_dir).resolve()))
        return run_audit(chosen, explainer, out_dir, resolver=resolver, options=options, run=run,
                         progress=progress, all_samples=everything, stop=stop, recipe=recipe)


def _detection_audit(dataset: Any, out_dir: Any, detector: Any, model: ModelConfig, explain: ExplainConfig,
                     data: DatasetConfig, run: RunConfig, options: AuditOptions, progress: Progress | None,
                     stop: threading.Event | None) -> Any:
    """A detector's audit: its boxes matched to the dataset's (see :mod:`ov_explain.runs.detection.audit`)."""
    from ov_explain.runs.detection.audit import DetectionAuditWork, resolve_truths, run_detection_audit

    everything, chosen = data.read_boxes(dataset, exclude=out_dir)
    if not chosen:
        raise AuditError(f"{dataset}: no image is left after --classes/--limit/--sample")
    resolver = data.resolver(detector, chosen)
    truths = resolve_truths(dataset, chosen, resolver)
    with explain.create(detector) as explainer:
        recipe = None
        if run.engine == "ray":
            recipe = DetectionAuditWork(model.resolved(detector), explain.resolved(explainer), truths, options,
                                        run.workers, str(Path(out_dir).resolve()))
        return run_detection_audit(chosen, explainer, out_dir, truths, options=options,
                                   label_map=resolver.label_map, run=run, progress=progress,
                                   all_samples=everything, stop=stop, recipe=recipe)


@dataclass(frozen=True)
class AuditWork:
    """The recipe of an audit's per-image work, to build it in another process (a Ray actor): the
    configs as the driver resolved them (model file, method, layer), not the objects."""

    model: ModelConfig
    explain: ExplainConfig
    label_map: dict[str, str] | None
    options: AuditOptions
    workers: int | None
    out: str

    def build(self, threads: int, stems: dict[str, str]) -> "_ImageWorker":
        """The work the local engine's threads run, on a model compiled for ``threads`` CPU threads."""
        classifier = self.model.load(hint="THROUGHPUT", core=actor_core(threads))
        explainer = self.explain.create(classifier)
        resolver = LabelResolver(classifier.labels, classifier.num_classes, self.label_map)
        _, per_image = explainer.plan(self.workers)
        return _ImageWorker(explainer, resolver, self.options, Path(self.out), stems, per_image)


def _previous_setting(out: Path, name: str, default: Any) -> Any:
    """A setting of the audit already in ``out`` (for defaults that changed: resuming keeps the folder's)."""
    try:
        return json.loads((out / SETTINGS_FILE).read_text(encoding="utf-8")).get(name, default)
    except (OSError, ValueError, AttributeError):
        return default


def _check_labels(dataset: Any, samples: Sequence[Sample], resolver: LabelResolver) -> None:
    """Refuse before any image when no dataset label names a class of the model (some bad labels
    only become error rows): typically id folders (n01440764) without a label map."""
    labels = sorted({s.label for s in samples if s.label is not None})
    failures = []
    for label in labels:
        try:
            resolver(label)
        except OvExplainError as exc:
            failures.append(str(exc))
        else:
            return
    if failures:
        raise AuditError(f"{dataset}: none of its {len(labels)} labels is a class of the model ({failures[0]}); "
                         "if the labels are ids (such as WordNet synsets), pass --label-map FILE")


# ----- one image ------------------------------------------------------------------------------------
class _ImageWorker:
    """Everything done for one image, in a worker thread: returns its manifest rows."""

    def __init__(self, explainer: Explainer, resolver: LabelResolver, options: AuditOptions, out: Path,
                 stems: dict[str, str], parallel: int) -> None:
        self.explainer, self.resolver, self.options, self.out, self.stems = explainer, resolver, options, out, stems
        self.parallel, self.style = parallel, options.style
        classifier = explainer.classifier
        names = classifier.labels or [str(i) for i in range(classifier.num_classes)]
        self.names, self.file_names = names, file_labels(names)

    def __call__(self, sample: Sample) -> list[AuditRow]:
        """One sample's rows (an exception becomes its error row in :func:`~ov_explain.runs.engine.run_rows`)."""
        options = self.options
        truth = self.resolver(sample.label) if sample.label is not None else None
        started = time.perf_counter()
        pixels = read_image(sample.path)
        decoded = time.perf_counter()
        prepared = self.explainer.prepare(pixels, source=str(sample.path))
        prep_ms = (time.perf_counter() - decoded) * 1000

        decisions: list[CaseDecision] = []  # the case is decided once, inside the explanation

        def choose(prediction: Any) -> list[int]:
            decisions.append(classify_case(prediction.probabilities, truth, options.thresholds))
            return [c for c, _ in decisions[0].targets]

        explanation = self.explainer.explain_prepared(prepared, choose, top_k=options.top_k, preprocess_ms=prep_ms,
                                                      parallel=self.parallel)
        explained = time.perf_counter()
        timings = {"decode_ms": (decoded - started) * 1000, "preprocess_ms": prep_ms,
                   "explain_ms": (explained - decoded) * 1000 - prep_ms}
        return self._write(sample, pixels, explanation, truth, decisions[0], timings, explained)

    def _write(self, sample: Sample, pixels: np.ndarray, explanation: Explanation, truth: int | None,
               decision: CaseDecision, timings: dict[str, float], explained: float) -> list[AuditRow]:
        probabilities = explanation.prediction.probabilities
        (self.out / decision.case).mkdir(exist_ok=True)
        stem = self.stems[sample.key]
        top = [score.index for score in explanation.prediction.top[:self.options.top_k]]  # already ranked
        bgr = to_bgr(pixels)
        maps = {m.target: m for m in explanation.maps}
        written, readouts = [], []
        for index, _ in decision.targets:
            saliency = maps.get(index) or explanation.maps[0]  # class-agnostic methods give one map
            readouts.append(saliency.readout or explanation.readout)  # a map may have fallen back to logits
            name = format_name(stem, self.file_names[index], float(probabilities[index]),
                               None if truth is None else self.file_names[truth],
                               None if truth is None else float(probabilities[truth]), extension="")
            written.append(write_map_files(self.out, f"{decision.case}/{name}", bgr, saliency, self.style))
        timings["write_ms"] = (time.perf_counter() - explained) * 1000
        rounded = {k: round(v, 3) for k, v in timings.items()}
        ranked = tuple(RankedClass(i, self.names[i], round(float(probabilities[i]), 6)) for i in top)
        return [AuditRow(
            key=sample.key, source=str(sample.path), stem=stem, width=int(pixels.shape[1]),
            height=int(pixels.shape[0]), ground_truth=sample.label, ground_truth_index=truth,
            ground_truth_class=None if truth is None else self.names[truth],
            ground_truth_probability=None if truth is None else round(float(probabilities[truth]), 6),
            case=decision.case, correct=None if truth is None else top[0] == truth,
            in_top_k=None if truth is None else bool(truth in top), top=ranked, method=explanation.method,
            mode=explanation.mode, device=explanation.device, precision=explanation.precision,
            target_layer=explanation.target_layer, inferences=explanation.inferences, target_rank=rank,
            targets_total=len(decision.targets), target_role=role, target_index=int(index),
            target_class=self.names[index], target_probability=round(float(probabilities[index]), 6),
            overlay_path=files.overlay, raw_path=files.raw, rgba_path=files.rgba, timings_ms=rounded,
            readout=readout, map_box=explanation.map_box)
            for rank, ((index, role), files, readout) in enumerate(zip(decision.targets, written, readouts))]


# ----- output folder: settings, recovery, final files ------------------------------------------------
def _settings(explainer: Explainer, options: AuditOptions, resolver: LabelResolver) -> dict[str, Any]:
    classifier = explainer.classifier
    return {
        "format_version": FORMAT_VERSION, **model_settings(classifier),
        "labels_sha256": digest(json.dumps(classifier.labels)),
        "label_map_sha256": digest(json.dumps(resolver.label_map, sort_keys=True)),
        **method_settings(explainer), "thresholds": options.thresholds.to_dict(), "top_k": options.top_k,
        **style_settings(options),
        # Recorded only when not the native engine, so audits written before backends existed resume.
        **({"backend": explainer.backend} if explainer.backend != "native" else {}),
        # Likewise the read-out: recorded unless it is what audits of this model read before it was a choice.
        **({"readout": explainer.readout} if explainer.readout not in (None, legacy_readout(classifier)) else {}),
    }


def legacy_readout(classifier: Any) -> str:
    """What white-box maps read before the read-out was a choice: the classification output as it is —
    probabilities where the graph (or the user) says so, logits otherwise."""
    return "probability" if classifier.output_kind == "probabilities" else "logit"
