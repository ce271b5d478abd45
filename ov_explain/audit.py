"""Dataset audit: predict and explain every image, sort the maps into case folders, never lose work.

Output folder::

    audit.json                  settings of the run (a different model/method/threshold is refused)
    <Case_name>/<structured name>.jpg   overlay per explained class (+ .npy raw map, .rgba.png)
    manifest.jsonl, manifest.csv        one row per image and explained class
    errors.jsonl, errors.csv            one row per image that could not be audited, and why
    summary.json, confusion.csv         counts per case and class, confusion table
    grids/<Case_name>.png               picture grid per case
    report.html                         self-contained gallery with filters (ov_explain.report)

Images are decoded, inferred and written by worker threads (each with its own infer request), so
the device stays busy; rows are appended to the manifest in dataset order after the image's files
are in place, which is what makes a re-run resume exactly where a killed one stopped.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import threading
import time
from collections import Counter, defaultdict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import cv2
import numpy as np

from . import render
from .cases import CASES, CaseDecision, CaseThresholds, classify_case
from .dataset import LabelResolver, Sample, read_dataset, select
from .devices import DEFAULT_PRECISION
from .errors import OvExplainError, one_line
from .explain.base import Explanation
from .explain.explainer import Explainer
from .grids import Tile, grid_png, thumbnail
from .images import read_image
from .naming import file_labels, format_name, unique_stems
from .naming import parse_name
from .storage import LOCK_FILE, FolderLock, JsonlLog, atomic_write_bytes, atomic_write_text, ensure_writable_folder, \
    read_jsonl, remove_temp_files, write_jsonl

logger = logging.getLogger(__name__)

SETTINGS_FILE, MANIFEST, ERRORS = "audit.json", "manifest.jsonl", "errors.jsonl"
MANIFEST_CSV, ERRORS_CSV, SUMMARY, CONFUSION, GRIDS, REPORT = \
    "manifest.csv", "errors.csv", "summary.json", "confusion.csv", "grids", "report.html"
FORMAT_VERSION = 1

#: Progress callback: (images finished in this run, images to do in this run).
Progress = Callable[[int, int], None]


class AuditError(OvExplainError):
    """The audit cannot start (e.g. the output folder holds a different audit)."""


class AuditInterrupted(Exception):
    """The audit stopped when asked (``stop`` was set); ``saved`` of ``total`` images are recorded and a
    re-run of the same audit resumes."""

    def __init__(self, out_dir: Path, saved: int, total: int) -> None:
        super().__init__(f"{saved} of {total} images saved in {out_dir}")
        self.out_dir, self.saved, self.total = out_dir, saved, total


@dataclass(frozen=True)
class AuditOptions:
    """What an audit writes and how it decides cases."""

    thresholds: CaseThresholds = CaseThresholds()
    top_k: int = 5
    save_raw: bool = False
    save_rgba: bool = False
    colormap: str = "jet"
    overlay_weight: float = 0.5
    jpeg_quality: int = 90
    grids: bool = True
    grid_tiles: int = 24
    report: bool = True  # report.html (see ov_explain.report)
    workers: int | None = None  # None: the device's optimal number of requests + 1

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise AuditError(f"top_k: expected >= 1, got {self.top_k}")
        if self.colormap not in render.COLORMAPS:
            raise AuditError(f"colormap: unknown {self.colormap!r}; known: {', '.join(render.COLORMAPS)}")
        if not 0.0 <= self.overlay_weight <= 1.0:
            raise AuditError(f"overlay_weight: expected 0..1, got {self.overlay_weight}")
        if not 1 <= self.jpeg_quality <= 100:
            raise AuditError(f"jpeg_quality: expected 1..100, got {self.jpeg_quality}")
        if self.workers is not None and self.workers < 1:
            raise AuditError(f"workers: expected >= 1, got {self.workers}")


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

    def __post_init__(self) -> None:
        if set(self.cases) - set(CASES):
            raise ValueError(f"cases: unknown case names {sorted(set(self.cases) - set(CASES))}")
        if sum(self.cases.values()) != self.images:
            raise ValueError(f"cases: counts add up to {sum(self.cases.values())}, not {self.images} images")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["out_dir"] = str(self.out_dir)
        return data


# ----- the audit ----------------------------------------------------------------------------------------
def run_audit(samples: Sequence[Sample], explainer: Explainer, out_dir: str | os.PathLike, *,
              resolver: LabelResolver | None = None, options: AuditOptions = AuditOptions(),
              restart: bool = False, progress: Progress | None = None,
              all_samples: Sequence[Sample] | None = None, extra_settings: dict[str, Any] | None = None,
              stop: threading.Event | None = None) -> AuditSummary:
    """Audit ``samples`` into ``out_dir``; resumes a previous run of the same settings.

    Setting ``stop`` (from a signal handler or another thread) ends the run between images: the
    images in flight are finished and recorded, then :class:`AuditInterrupted` says how many are saved.

    ``all_samples`` is the whole dataset when ``samples`` is a selection of it: file names are made
    unique over the whole dataset so a later, larger run names files the same way.
    """
    out = Path(out_dir)
    classifier = explainer.classifier
    if resolver is None:
        resolver = LabelResolver(classifier.labels, classifier.num_classes)
    settings = _settings(explainer, options, resolver, extra_settings or {})
    universe = list(all_samples) if all_samples is not None else list(samples)
    stems = dict(zip((s.key for s in universe), unique_stems([s.key for s in universe],
                                                             [s.path.stem for s in universe])))
    ensure_writable_folder(out)
    with FolderLock(out, "audit"):
        return _run_locked(samples, explainer, out, settings, stems, resolver, options, restart, progress, stop)


def _run_locked(samples: Sequence[Sample], explainer: Explainer, out: Path, settings: dict[str, Any],
                stems: dict[str, str], resolver: LabelResolver, options: AuditOptions, restart: bool,
                progress: Progress | None, stop: threading.Event | None) -> AuditSummary:
    """The audit proper, while this process holds the output folder's lock."""
    _prepare_out_dir(out, settings, restart, set(stems.values()))
    done = _recover(out, {s.key for s in samples}, set(stems.values()))
    todo = [s for s in samples if s.key not in done]
    logger.info("audit: %d images, %d already done, %d to do", len(samples), len(samples) - len(todo), len(todo))
    worker = _ImageWorker(explainer, resolver, options, out, stems)
    started = time.perf_counter()
    workers = options.workers or _default_workers(explainer)
    finished = 0
    if progress is not None:
        progress(0, len(todo))  # the total and ETA show from the start
    with JsonlLog(out / MANIFEST) as manifest, JsonlLog(out / ERRORS) as errors, \
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ov-explain-audit") as pool:
        window: deque[Future] = deque()

        def record_oldest() -> None:
            nonlocal finished
            finished = _record(window[0].result(), manifest, errors, finished, len(todo), progress)
            window.popleft()

        try:
            for sample in todo:
                if stop is not None and stop.is_set():
                    break
                window.append(pool.submit(worker, sample))
                while len(window) >= 2 * workers and not (stop is not None and stop.is_set()):
                    record_oldest()
            if stop is not None and stop.is_set():
                # Images not started are dropped; those in flight finish and are recorded, so every
                # image whose files are in place has its rows and a resume redoes none of them.
                window = deque(f for f in window if not f.cancel())
                while window:
                    record_oldest()
                raise AuditInterrupted(out, len(samples) - len(todo) + finished, len(samples))
            while window:
                record_oldest()
        except BaseException:
            for future in window:
                future.cancel()
            raise
    seconds = time.perf_counter() - started
    summary = _finish(out, explainer, options, seconds, len(todo), len(samples) - len(todo))
    if options.report:
        from .report import build_report

        build_report(out)
    logger.info("audit: %d images in %.1f s (%.1f images/s), %d errors", len(todo), seconds,
                summary.images_per_second, summary.errors)
    return summary


def audit(dataset: str | os.PathLike, out_dir: str | os.PathLike = "ov-explain-audit", *,
          model: str | os.PathLike | None = None, device: str = "AUTO", mode: str = "auto",
          method: str | None = None, target_layer: str | None = None, preset: str = "balance", seed: int = 0,
          preprocess: Any = None, labels: Any = None, label_map: str | os.PathLike | dict | None = None,
          kind: str = "auto", classes: Iterable[str] | None = None, limit: int | None = None,
          sample: int | None = None, sample_seed: int = 0, high_confidence: float = 0.5,
          two_predictions: float = 0.2, top_k: int = 5, save_raw: bool = False, save_rgba: bool = False,
          grids: bool = True, report: bool = True, restart: bool = False, workers: int | None = None,
          output: str = "auto", progress: Progress | None = None,
          cache_dir: str | None = "default", precision: str = DEFAULT_PRECISION,
          stop: threading.Event | None = None) -> AuditSummary:
    """Audit a dataset in one call (the Python face of ``ov-explain audit``; same options).

    ``precision`` defaults to f32 so that the same audit gives the same cases on every CPU; ``device``
    audits the model as the device runs it by default (bf16 on an AMX Xeon, f16 on GPU / NPU).
    """
    from .dataset import default_label_map, read_label_map
    from .model import Classifier

    options = AuditOptions(CaseThresholds(high_confidence, two_predictions), top_k=top_k, save_raw=save_raw,
                           save_rgba=save_rgba, grids=grids, report=report, workers=workers)
    everything = read_dataset(dataset, kind=kind, exclude=out_dir)  # never audit our own overlays
    chosen = select(everything, classes=classes, limit=limit, sample=sample, seed=sample_seed)
    if not chosen:
        known = sorted({s.label for s in everything if s.label is not None})
        raise AuditError(f"{dataset}: no image is left after --classes/--limit/--sample (dataset labels: "
                         f"{', '.join(known[:10]) or 'none'}{', ...' if len(known) > 10 else ''})")
    classifier = Classifier(model, device=device, preprocess=preprocess, labels=labels, output=output,
                            hint="THROUGHPUT", cache_dir=cache_dir, precision=precision)
    if label_map is None and any(s.label is not None for s in chosen):
        label_map = default_label_map(classifier.files.model)
    mapping = label_map if isinstance(label_map, dict) or label_map is None else read_label_map(label_map)
    resolver = LabelResolver(classifier.labels, classifier.num_classes, mapping)
    _check_labels(dataset, chosen, resolver)
    with classifier, Explainer(classifier, mode=mode, method=method, target_layer=target_layer, preset=preset,
                               seed=seed) as explainer:
        return run_audit(chosen, explainer, out_dir, resolver=resolver, options=options, restart=restart,
                         progress=progress, all_samples=everything, stop=stop)


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


def _record(result: dict[str, Any], manifest: JsonlLog, errors: JsonlLog, finished: int, total: int,
            progress: Progress | None) -> int:
    if "error" in result:
        logger.error("%s", result["error"])
        errors.append([result])
    else:
        manifest.append(result["rows"])
    finished += 1
    if progress is not None:
        progress(finished, total)
    return finished


def _default_workers(explainer: Explainer) -> int:
    # One more thread than the device takes requests: someone is always decoding or writing.
    return explainer.parallel_requests + 1


# ----- one image ------------------------------------------------------------------------------------
class _ImageWorker:
    """Everything done for one image, in a worker thread: returns manifest rows or an error row."""

    def __init__(self, explainer: Explainer, resolver: LabelResolver, options: AuditOptions, out: Path,
                 stems: dict[str, str]) -> None:
        self.explainer, self.resolver, self.options, self.out, self.stems = explainer, resolver, options, out, stems
        classifier = explainer.classifier
        names = classifier.labels or [str(i) for i in range(classifier.num_classes)]
        self.names, self.file_names = names, file_labels(names)

    def __call__(self, sample: Sample) -> dict[str, Any]:
        try:
            return {"rows": self._audit(sample)}
        except Exception as exc:  # one bad image must not stop the audit: it becomes an error row
            kind = "unexpected" if not isinstance(exc, OvExplainError) else type(exc).__name__
            message = str(exc) if isinstance(exc, OvExplainError) else f"{sample.path}: {one_line(exc)}"
            if str(sample.path) not in message:
                message = f"{sample.path}: {message}"
            if kind == "unexpected":
                logger.debug("unexpected error on %s", sample.path, exc_info=True)
            return {"error": message, "key": sample.key, "source": str(sample.path), "label": sample.label,
                    "error_type": kind}

    def _audit(self, sample: Sample) -> list[dict[str, Any]]:
        options = self.options
        truth = self.resolver(sample.label) if sample.label is not None else None
        started = time.perf_counter()
        pixels = read_image(sample.path)
        decoded = time.perf_counter()
        tensor, geometry, _ = self.explainer.classifier.prepare(pixels)
        prep_ms = (time.perf_counter() - decoded) * 1000

        decisions: list[CaseDecision] = []  # the case is decided once, inside the explanation

        def choose(prediction: Any) -> list[int]:
            decisions.append(classify_case(prediction.probabilities, truth, options.thresholds))
            return [c for c, _ in decisions[0].targets]

        explanation = self.explainer.explain_prepared(tensor, geometry, str(sample.path), choose,
                                                      top_k=options.top_k, preprocess_ms=prep_ms)
        explained = time.perf_counter()
        decision = decisions[0]
        rows = self._write(sample, pixels, explanation, truth, decision)
        written = time.perf_counter()
        timings = {"decode_ms": (decoded - started) * 1000, "preprocess_ms": prep_ms,
                   "explain_ms": (explained - decoded) * 1000 - prep_ms, "write_ms": (written - explained) * 1000}
        for row in rows:
            row.update({k: round(v, 3) for k, v in timings.items()})
        return rows

    def _write(self, sample: Sample, pixels: np.ndarray, explanation: Explanation, truth: int | None,
               decision: CaseDecision) -> list[dict[str, Any]]:
        options = self.options
        probabilities = explanation.prediction.probabilities
        folder = self.out / decision.case
        folder.mkdir(exist_ok=True)
        stem = self.stems[sample.key]
        top = [score.index for score in explanation.prediction.top[:options.top_k]]  # already ranked
        base = {
            "key": sample.key, "source": str(sample.path), "stem": stem, "width": int(pixels.shape[1]),
            "height": int(pixels.shape[0]), "ground_truth": sample.label,
            "ground_truth_index": truth, "ground_truth_class": None if truth is None else self.names[truth],
            "ground_truth_probability": None if truth is None else round(float(probabilities[truth]), 6),
            "case": decision.case, "correct": None if truth is None else top[0] == truth,
            "in_top_k": None if truth is None else bool(truth in top),
        }
        for rank, index in enumerate(top, 1):
            base[f"top{rank}_index"] = index
            base[f"top{rank}_class"] = self.names[index]
            base[f"top{rank}_probability"] = round(float(probabilities[index]), 6)
        base.update({"method": explanation.method, "mode": explanation.mode, "device": explanation.device,
                     "precision": explanation.precision, "target_layer": explanation.target_layer,
                     "inferences": explanation.inferences})
        rows = []
        roles = dict(decision.targets)
        bgr = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)  # once per image: colour maps and JPEG are BGR
        maps = {m.target: m for m in explanation.maps}
        for rank, (index, role) in enumerate(decision.targets):
            saliency = maps.get(index) or explanation.maps[0]  # class-agnostic methods give one map
            name = format_name(stem, self.file_names[index], float(probabilities[index]),
                               None if truth is None else self.file_names[truth],
                               None if truth is None else float(probabilities[truth]), extension="")
            levels = saliency.levels_on_image(as_uint8=True)
            overlay = render.blend_levels(bgr, levels, weight=options.overlay_weight, colormap=options.colormap,
                                          bgr=True)
            paths = {"overlay_path": f"{decision.case}/{name}.jpg", "raw_path": None, "rgba_path": None}
            atomic_write_bytes(self.out / paths["overlay_path"],
                               render.encode_jpeg(overlay, options.jpeg_quality, bgr=True))
            if options.save_raw:
                paths["raw_path"] = f"{decision.case}/{name}.npy"
                buffer = io.BytesIO()
                np.save(buffer, saliency.raw.astype(np.float32))
                atomic_write_bytes(self.out / paths["raw_path"], buffer.getvalue())
            if options.save_rgba:
                paths["rgba_path"] = f"{decision.case}/{name}.rgba.png"
                rgba = render.colorize_rgba(levels.astype(np.float32) / 255.0, colormap=options.colormap)
                atomic_write_bytes(self.out / paths["rgba_path"], render.encode_png(rgba))
            rows.append({**base, "target_rank": rank, "targets_total": len(decision.targets),
                         "target_role": roles[index], "target_index": int(index), "target_class": self.names[index],
                         "target_probability": round(float(probabilities[index]), 6), **paths})
        return rows


# ----- output folder: settings, recovery, final files ------------------------------------------------
def _settings(explainer: Explainer, options: AuditOptions, resolver: LabelResolver,
              extra: dict[str, Any]) -> dict[str, Any]:
    classifier = explainer.classifier
    return {
        "format_version": FORMAT_VERSION,
        "model": str(classifier.files.model.resolve()),
        "model_sha256": _model_digest(classifier.files.model),
        "preprocess": (f"custom:{getattr(classifier.custom_fn, '__qualname__', repr(classifier.custom_fn))}"
                       if classifier.custom_fn is not None else classifier.spec.to_dict()),
        "labels_sha256": _digest(json.dumps(classifier.labels)),
        "label_map_sha256": _digest(json.dumps(resolver.label_map, sort_keys=True)),
        "mode": explainer.mode, "method": explainer.method, "target_layer": explainer.target_layer,
        # Asked for and executed: resuming on a machine whose 'device' precision differs would mix results.
        "precision": classifier.requested_precision, "executed_precision": explainer.precision,
        "preset": explainer.preset if explainer.mode == "blackbox" else None,
        "seed": explainer.seed if explainer.mode == "blackbox" else None,
        "method_options": {k: repr(v) for k, v in sorted(explainer.options.items())},
        "thresholds": options.thresholds.to_dict(), "top_k": options.top_k, "save_raw": options.save_raw,
        "save_rgba": options.save_rgba, "colormap": options.colormap, "overlay_weight": options.overlay_weight,
        "jpeg_quality": options.jpeg_quality, **extra,
    }


def _model_digest(path: Path) -> str:
    digest = hashlib.sha256()
    for part in (path, path.with_suffix(".bin")):
        if part.is_file():
            with open(part, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


#: Files an audit writes at the top of its folder (besides the case folders and grids/).
_TOP_FILES = (SETTINGS_FILE, MANIFEST, ERRORS, MANIFEST_CSV, ERRORS_CSV, SUMMARY, CONFUSION, REPORT)
_MAP_EXTENSIONS = (".jpg", ".npy", ".rgba.png")


def _prepare_out_dir(out: Path, settings: dict[str, Any], restart: bool, stems: set[str]) -> None:
    settings_path = out / SETTINGS_FILE
    if settings_path.exists():
        try:
            previous = json.loads(settings_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            previous = {}
        changed = sorted(k for k in set(previous) | set(settings)
                         if k != "model" and previous.get(k) != settings.get(k))
        if changed and not restart:
            raise AuditError(f"{out}: holds an audit with different settings ({', '.join(changed)}); "
                             "use another output folder, or restart to start over")
        if restart:
            _clear(out, stems)
    elif any(p.name != LOCK_FILE for p in out.iterdir()):
        # --restart replaces an audit; it never empties a folder of someone else's files.
        raise AuditError(f"{out}: folder is not empty and holds no audit; choose an empty or new folder")
    if not (out / SETTINGS_FILE).exists():
        atomic_write_text(out / SETTINGS_FILE, json.dumps(settings, indent=2) + "\n")


def _is_ours(case: str, path: Path, listed: set[str], stems: set[str]) -> bool:
    """Whether a file in a case folder was written by an audit of this dataset.

    Listed in the manifest, or (a killed run's file whose row never made it) a structured map name
    of one of the dataset's stems. Anything else is the user's and is left alone.
    """
    if f"{case}/{path.name}" in listed:
        return True
    if not path.is_file() or not path.name.endswith(_MAP_EXTENSIONS):
        return False
    try:
        return parse_name(path.name).stem in stems
    except ValueError:
        return False


def _remove_ours(out: Path, keep: set[str], listed: set[str], stems: set[str]) -> tuple[int, list[str]]:
    """Delete the audit's map files in case folders except ``keep``; returns (removed, foreign files)."""
    removed, foreign = 0, []
    for case in CASES:
        folder = out / case
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            relative = f"{case}/{path.name}"
            if relative in keep:
                continue
            if _is_ours(case, path, listed, stems):
                path.unlink()
                removed += 1
            else:
                foreign.append(relative)
    return removed, foreign


def _listed(rows: Iterable[dict[str, Any]]) -> set[str]:
    """The map files (relative paths) that manifest rows name."""
    return {row[k] for row in rows for k in ("overlay_path", "raw_path", "rgba_path") if row.get(k)}


def _mention_foreign(out: Path, foreign: list[str]) -> None:
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        logger.warning("%s: left %d file(s) that are not the audit's alone: %s", out, len(foreign), shown)


def _clear(out: Path, stems: set[str]) -> None:
    """Remove what the audit in ``out`` wrote, and only that: the folder may hold the user's files."""
    remove_temp_files(out)
    _, foreign = _remove_ours(out, set(), _listed(read_jsonl(out / MANIFEST)), stems)
    for case in CASES:
        (out / GRIDS / f"{case}.png").unlink(missing_ok=True)
    if (out / GRIDS).is_dir():
        foreign += sorted(f"{GRIDS}/{p.name}" for p in (out / GRIDS).iterdir())
    for folder in [out / case for case in CASES] + [out / GRIDS]:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    for name in _TOP_FILES:
        (out / name).unlink(missing_ok=True)
    _mention_foreign(out, foreign)
    logger.info("%s: previous audit removed (restart)", out)


def _recover(out: Path, selected: set[str], stems: set[str]) -> set[str]:
    """Keys already done; repairs what a killed run left: torn rows, half-written images, temp files.

    Errors of selected images are dropped so they are tried again. Files in the folder that the
    audit did not write are left alone.
    """
    removed = remove_temp_files(out)
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    lines = 0
    for row in read_jsonl(out / MANIFEST):
        lines += 1
        if isinstance(row, dict) and isinstance(row.get("key"), str):  # a damaged row is dropped, and redone
            by_key[row["key"]].append(row)
    complete = {k: rows for k, rows in by_key.items() if len(rows) == rows[0].get("targets_total")}
    kept_lines = sum(len(rows) for rows in complete.values())
    if (out / MANIFEST).exists() and (kept_lines != lines or _has_torn_tail(out / MANIFEST)):
        write_jsonl(out / MANIFEST, (row for rows in complete.values() for row in rows))
        logger.warning("%s: repaired the manifest of an interrupted run", out / MANIFEST)
    orphans, foreign = _remove_ours(out, _listed(r for rows in complete.values() for r in rows),
                                    _listed(r for rows in by_key.values() for r in rows), stems)
    _mention_foreign(out, foreign)
    errors = list(read_jsonl(out / ERRORS))
    kept_errors = [e for e in errors if e.get("key") not in selected and e.get("key") not in complete]
    if len(kept_errors) != len(errors) or _has_torn_tail(out / ERRORS):
        write_jsonl(out / ERRORS, kept_errors)
    if removed or orphans:
        logger.info("%s: removed %d temp and %d unlisted files of an interrupted run", out, removed, orphans)
    return set(complete)


def _has_torn_tail(path: Path) -> bool:
    if not path.exists() or path.stat().st_size == 0:
        return False
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) != b"\n"


def _finish(out: Path, explainer: Explainer, options: AuditOptions, seconds: float, ran: int,
            resumed: int) -> AuditSummary:
    rows = list(read_jsonl(out / MANIFEST))
    errors = list(read_jsonl(out / ERRORS))
    _write_csv(out / MANIFEST_CSV, rows)
    _write_csv(out / ERRORS_CSV, errors, ["key", "source", "label", "error_type", "error"])
    images = [r for r in rows if r["target_rank"] == 0]
    cases = Counter(r["case"] for r in images)
    per_class: dict[str, Counter] = defaultdict(Counter)
    confusion: dict[str, Counter] = defaultdict(Counter)
    for row in images:
        truth = row["ground_truth_class"] or "(no ground truth)"
        per_class[truth]["images"] += 1
        per_class[truth][row["case"]] += 1
        if row["correct"]:
            per_class[truth]["correct"] += 1
        confusion[truth][row["top1_class"]] += 1
    labelled = [r for r in images if r["ground_truth_index"] is not None]
    grids = _write_grids(out, rows, options) if options.grids else {}
    summary = AuditSummary(
        out_dir=out, images=len(images), errors=len(errors), resumed=resumed,
        cases={c: cases[c] for c in CASES if cases[c]},
        per_class={k: dict(v) for k, v in sorted(per_class.items())},
        confusion={k: dict(v.most_common()) for k, v in sorted(confusion.items())},
        top1_accuracy=round(sum(bool(r["correct"]) for r in labelled) / len(labelled), 4) if labelled else None,
        top5_accuracy=round(sum(bool(r["in_top_k"]) for r in labelled) / len(labelled), 4) if labelled else None,
        model=str(explainer.classifier.files.model), method=explainer.method, mode=explainer.mode,
        device=explainer.device, precision=explainer.precision, target_layer=explainer.target_layer,
        thresholds=options.thresholds.to_dict(), seconds=round(seconds, 3),
        images_per_second=round(ran / seconds, 3) if seconds > 0 else 0.0, grids=grids)
    atomic_write_text(out / SUMMARY, json.dumps(summary.to_dict(), indent=2) + "\n")
    _write_csv(out / CONFUSION, [{"ground_truth": t, "predicted": p, "images": n}
                                 for t, row in summary.confusion.items() for p, n in row.items()],
               ["ground_truth", "predicted", "images"])
    return summary


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: Sequence[str] | None = None) -> None:
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def _write_grids(out: Path, rows: list[dict[str, Any]], options: AuditOptions) -> dict[str, str]:
    (out / GRIDS).mkdir(exist_ok=True)
    written = {}
    by_case: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_case[row["case"]].append(row)
    for case in CASES:
        stale = out / GRIDS / f"{case}.png"
        if case not in by_case:
            stale.unlink(missing_ok=True)
            continue
        # Most confident images first; an image's maps stay together.
        chosen = sorted(by_case[case], key=lambda r: (-r["top1_probability"], r["key"], r["target_rank"]))
        tiles = []
        for row in chosen[:options.grid_tiles]:
            picture = cv2.imread(str(out / row["overlay_path"]), cv2.IMREAD_COLOR)
            if picture is None:
                continue
            tiles.append(Tile(thumbnail(cv2.cvtColor(picture, cv2.COLOR_BGR2RGB)), _tile_title(row)))
        if not tiles:
            continue
        images = len({r["key"] for r in by_case[case]})
        shown = f"{len(tiles)} of {len(by_case[case])} maps, {images} images"
        atomic_write_bytes(stale, grid_png(tiles, f"{case.replace('_', ' ')} ({shown})"))
        written[case] = f"{GRIDS}/{case}.png"
    return written


def _tile_title(row: dict[str, Any]) -> str:
    lines = [row["stem"]]
    if row["ground_truth_class"] is not None:
        lines.append(f"gt: {row['ground_truth_class']} {row['ground_truth_probability']:.2f}")
    lines.append(f"pr: {row['top1_class']} {row['top1_probability']:.2f}")
    lines.append(f"map: {row['target_class']} ({row['target_role'].replace('_', ' ')})")
    return "\n".join(lines)
