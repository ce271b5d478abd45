"""Drift of a detector: two deployments (FP32 vs INT8, f32 vs bf16, another device) compared box by box.

Each image is detected and explained by both; their boxes are matched across deployments (:func:`match_boxes`:
same class by IoU first, then any class), and each box gets a row and a case:

| case | the box ... |
|---|---|
| ``Box_lost`` | the reference found and the candidate did not |
| ``Box_new`` | the candidate found and the reference did not |
| ``Class_changed`` | both found at IoU >= ``match_iou``, with different classes |
| ``Attention_moved`` | both found with its class, but the maps differ (correlation or top-10 % overlap below limits) |
| ``Stable`` | both found with its class and the maps agree |

Kept boxes get the score change, both maps' correlation, top-10 % overlap and peak shift; with ground truth,
each deployment's audit case of the box (case transitions). The folder is a drift audit's (``drift.json``,
``drift.jsonl``, a side-by-side picture and both raw maps per box) on the shared row engine.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from ov_explain import render
from ov_explain.core.config import ModelConfig
from ov_explain.core.images import read_image
from ov_explain.core.storage import atomic_write_bytes, atomic_write_text, read_jsonl
from ov_explain.evaluate.drift_measures import correlation, iou_top, peak_shift
from ov_explain.explain.config import ExplainConfig
from ov_explain.runs.audit.folder import ERROR_COLUMNS, ErrorRow
from ov_explain.runs.audit.summary import write_csv
from ov_explain.runs.config import RunConfig
from ov_explain.runs.detection.audit import GroundTruth, image_truths
from ov_explain.runs.detection.cases import BoxThresholds, Found, classify_boxes
from ov_explain.runs.detection.dataset import BoxSample
from ov_explain.runs.detection.drift_folder import (
    BOX_DRIFT_CASES,
    BOX_LOST,
    BOX_NEW,
    CLASS_CHANGED,
    DEPLOYMENTS,
    NO_BOXES,
    BoxDriftRow,
    read_box_drift_rows,
)
from ov_explain.runs.drift.folder import (
    ATTENTION_MOVED,
    ERRORS,
    ERRORS_CSV,
    FORMAT_VERSION,
    PLOT,
    REPORT,
    ROWS,
    ROWS_CSV,
    SETTINGS_FILE,
    STABLE,
    SUMMARY,
)
from ov_explain.runs.drift.summary import correlation_plot
from ov_explain.runs.drift.worker import DriftThresholds, deployment_settings, side_by_side
from ov_explain.runs.engine import FolderError, FolderKind, Progress, ThreadEngine, run_rows
from ov_explain.runs.naming import file_labels, format_box_name, parse_box_name, unique_stems
from ov_explain.runs.ray_engine import RayEngine, actor_core
from ov_explain.runs.writer import npy_bytes

logger = logging.getLogger(__name__)

def match_boxes(reference: Sequence[Found], candidate: Sequence[Found],
                iou: float) -> list[tuple[int | None, int | None]]:
    """Pairs (reference position, candidate position) of the same box in both deployments: same-class pairs
    by decreasing IoU >= ``iou`` first, then pairs of any class; the rest alone (lost: (i, None), new: (None, j)).
    Reference boxes in their order, then the candidate's new ones."""
    from ov_explain.core.detection import iou as box_iou

    overlap = np.zeros((len(reference), len(candidate)))
    for i, found in enumerate(reference):
        if candidate:
            overlap[i] = box_iou(np.array(found.box, np.float32), np.array([c.box for c in candidate], np.float32))
    partner: dict[int, int] = {}
    for same_class in (True, False):
        pairs = sorted(((overlap[i, j], i, j) for i in range(len(reference)) for j in range(len(candidate))
                        if overlap[i, j] >= iou and (reference[i].class_index == candidate[j].class_index
                                                     or not same_class)), key=lambda p: (-p[0], p[1], p[2]))
        for _, i, j in pairs:
            if i not in partner and j not in partner.values():
                partner[i] = j
    return ([(i, partner.get(i)) for i in range(len(reference))]
            + [(None, j) for j in range(len(candidate)) if j not in partner.values()])


DETECTION_DRIFT_FOLDER = FolderKind(
    noun="a drift audit", settings_file=SETTINGS_FILE, rows_file=ROWS, errors_file=ERRORS,
    top_files=(SETTINGS_FILE, ROWS, ERRORS, ROWS_CSV, ERRORS_CSV, SUMMARY, PLOT, REPORT), cases=BOX_DRIFT_CASES,
    picture_folders=(), file_extensions=(".jpg", ".npy"),
    path_columns=("image_path", "reference_map_path", "candidate_map_path"),
    stem_of=lambda name: parse_box_name(name).name.stem, parse_row=BoxDriftRow.from_dict, error_type=ErrorRow)


class BoxDriftWorker:
    """One image through both deployments, in a worker thread: a row, a picture and both maps per box."""

    def __init__(self, reference: Any, candidate: Any, truths: Mapping[str, GroundTruth], boxes: BoxThresholds,
                 thresholds: DriftThresholds, out: Path, stems: dict[str, str]) -> None:
        self.reference, self.candidate, self.truths, self.boxes = reference, candidate, truths, boxes
        self.thresholds, self.out, self.stems = thresholds, out, stems
        self.file_names = file_labels(reference.detector.names)

    def __call__(self, sample: Any) -> list[BoxDriftRow]:
        started = time.perf_counter()
        pixels = read_image(sample.path)
        ground_truth = image_truths(self.truths, sample.key, pixels)
        truths = None if ground_truth is None else [t for t, _ in ground_truth]
        ref = self.reference.explain_prepared(self.reference.prepare(pixels, source=str(sample.path)))
        cand = self.candidate.explain_prepared(self.candidate.prepare(pixels, source=str(sample.path)))
        explained = time.perf_counter()
        found = [[Found(d.box, d.class_index, d.score) for d in e.detections.detections] for e in (ref, cand)]
        cases = [{c.detection: c.case for c in classify_boxes(f, truths, self.boxes) if c.detection is not None}
                 for f in found]
        bgr = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
        pairs = match_boxes(found[0], found[1], self.boxes.iou)
        rows = [self._row(sample, k, len(pairs), i, j, ref, cand, cases, bgr) for k, (i, j) in enumerate(pairs)]
        if not rows:
            rows = [dict(case=NO_BOXES, target_rank=0, reference=None, candidate=None, reference_class=None,
                         candidate_class=None, reference_score=None, candidate_score=None, score_change=None,
                         box_iou=None, correlation=None, iou_top10=None, peak_shift_cells=None,
                         peak_shift_fraction=None, reference_case=None, candidate_case=None, image_path=None)]
        timings = {"explain_ms": round((explained - started) * 1000, 3),
                   "write_ms": round((time.perf_counter() - explained) * 1000, 3)}
        return [BoxDriftRow(key=sample.key, source=str(sample.path), stem=self.stems[sample.key],
                            width=int(pixels.shape[1]), height=int(pixels.shape[0]), targets_total=len(rows),
                            timings_ms=timings, **row) for row in rows]

    def _row(self, sample: Any, k: int, total: int, i: int | None, j: int | None, ref: Any, cand: Any,
             cases: list[dict[int, str]], bgr: np.ndarray) -> dict[str, Any]:
        mine = ref.detections.detections[i] if i is not None else None
        theirs = cand.detections.detections[j] if j is not None else None
        maps = (ref.maps[i] if i is not None else None, cand.maps[j] if j is not None else None)
        measures: dict[str, Any] = dict(box_iou=None, correlation=None, iou_top10=None, peak_shift_cells=None,
                                        peak_shift_fraction=None)
        if mine is not None and theirs is not None:
            from ov_explain.core.detection import iou as box_iou

            cells, fraction = peak_shift(maps[0].raw, maps[1].raw)
            measures = dict(box_iou=round(float(box_iou(np.array(mine.box), np.array([theirs.box]))[0]), 6),
                            correlation=round(correlation(maps[0].raw, maps[1].raw), 6),
                            iou_top10=round(iou_top(maps[0].raw, maps[1].raw, 0.1), 6),
                            peak_shift_cells=round(cells, 4), peak_shift_fraction=round(fraction, 4))
            case = CLASS_CHANGED if mine.class_index != theirs.class_index else \
                self.thresholds.case(True, measures["correlation"], measures["iou_top10"])
        else:
            case = BOX_LOST if theirs is None else BOX_NEW
        shown = mine or theirs
        name = format_box_name(self.stems[sample.key], self.file_names[shown.class_index], shown.score, k)
        (self.out / case).mkdir(exist_ok=True)
        paths = {}
        for deployment, saliency in zip(DEPLOYMENTS, maps):
            if saliency is not None:
                paths[deployment] = f"{case}/{Path(name).stem}.{deployment}.npy"
                atomic_write_bytes(self.out / paths[deployment], npy_bytes(saliency.raw))
        picture = _picture(bgr, maps, (mine, theirs))
        atomic_write_bytes(self.out / case / name, render.encode_jpeg(picture, 90, bgr=True))
        score = lambda d: None if d is None else round(float(d.score), 6)  # noqa: E731
        return dict(case=case, target_rank=k, reference=i, candidate=j,
                    reference_class=None if mine is None else mine.label,
                    candidate_class=None if theirs is None else theirs.label, reference_score=score(mine),
                    candidate_score=score(theirs),
                    score_change=None if mine is None or theirs is None else round(theirs.score - mine.score, 6),
                    reference_case=None if i is None else cases[0].get(i),
                    candidate_case=None if j is None else cases[1].get(j), image_path=f"{case}/{name}",
                    reference_map_path=paths.get("reference"), candidate_map_path=paths.get("candidate"),
                    reference_box=None if mine is None else mine.box,
                    candidate_box=None if theirs is None else theirs.box,
                    reference_map_box=ref.map_box if mine is not None else None,
                    candidate_map_box=cand.map_box if theirs is not None else None, **measures)


def _picture(bgr: np.ndarray, maps: tuple[Any, Any], boxes: tuple[Any, Any]) -> np.ndarray:
    """Reference | candidate | difference for a box both found; the one overlay (and the plain image where the
    other deployment found nothing) otherwise; each box drawn on its deployment's panel."""
    width = bgr.shape[1]
    if maps[0] is not None and maps[1] is not None:
        picture = side_by_side(bgr, maps[0], maps[1])
    else:
        present = maps[0] if maps[0] is not None else maps[1]
        overlay = render.blend_levels(bgr, present.levels_on_image(as_uint8=True), weight=0.5, bgr=True)
        picture = np.hstack([overlay, bgr] if maps[0] is not None else [bgr, overlay])
    for panel, found in enumerate(boxes):
        if found is not None:
            x1, y1, x2, y2 = found.box
            picture = render.draw_box(picture, (x1 + panel * width, y1, x2 + panel * width, y2),
                                      f"{DEPLOYMENTS[panel]}: {found.label} {found.score:.2f}")
    return picture


@dataclass(frozen=True)
class DetectionDriftWork:
    """The recipe of a detector drift's per-image work, for a Ray actor."""

    reference: ModelConfig
    candidate: ModelConfig
    reference_explain: ExplainConfig
    candidate_explain: ExplainConfig
    truths: dict[str, GroundTruth]
    boxes: BoxThresholds
    thresholds: DriftThresholds
    out: str

    def build(self, threads: int, stems: dict[str, str]) -> BoxDriftWorker:
        core = actor_core(threads)
        reference = self.reference_explain.create(self.reference.load(hint="THROUGHPUT", core=core))
        candidate = self.candidate_explain.create(self.candidate.load(hint="THROUGHPUT", core=core))
        return BoxDriftWorker(reference, candidate, self.truths, self.boxes, self.thresholds, Path(self.out), stems)


# ----- summary --------------------------------------------------------------------------------------------
@dataclass
class DetectionDriftSummary:
    """What changed between the two deployments of a detector, over every image in the folder.

    ``box_agreement``: boxes both found with the same class over every box either found (1: the same boxes).
    Map measures are over the boxes both found."""

    out_dir: Path
    images: int
    rows: int
    errors: int
    resumed: int
    reference_boxes: int
    candidate_boxes: int
    kept: int
    lost: int
    new: int
    class_changed: int
    box_agreement: float | None
    score_change_median: float | None
    map_correlation_median: float | None
    map_correlation_p05: float | None
    iou_top10_median: float | None
    cases: dict[str, int]
    case_transitions: dict[str, dict[str, int]]
    reference: dict[str, Any]
    candidate: dict[str, Any]
    thresholds: dict[str, Any]
    seconds: float
    gate: list[str] = field(default_factory=list)
    task: str = "detection"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["out_dir"] = str(self.out_dir)
        return data

    def metrics(self) -> dict[str, float | None]:
        """The values a ``--fail-on`` gate can test, by name; a share of nothing (no box to lose, none kept) is
        None, "not measured", which no gate passes."""
        kept = self.kept + self.class_changed
        share = lambda part, whole: part / whole if whole else None  # noqa: E731
        return {"box-agreement": self.box_agreement, "map-correlation-median": self.map_correlation_median,
                "map-correlation-p05": self.map_correlation_p05, "iou-median": self.iou_top10_median,
                "boxes-lost": share(self.lost, self.reference_boxes),
                "boxes-new": share(self.new, self.candidate_boxes),
                "attention-moved": share(self.cases.get(ATTENTION_MOVED, 0), kept)}


def write_detection_drift_summary(out: Path, settings: dict[str, Any], resumed: int,
                                  seconds: float) -> DetectionDriftSummary:
    rows = read_box_drift_rows(out)
    errors = [ErrorRow.from_dict(e) for e in read_jsonl(out / ERRORS) if isinstance(e, dict)]
    write_csv(out / ROWS_CSV, [r.to_dict() for r in rows])
    write_csv(out / ERRORS_CSV, [e.to_dict() for e in errors], ERROR_COLUMNS)
    counts = Counter(r.case for r in rows if r.case != NO_BOXES)
    both = [r for r in rows if r.correlation is not None]
    correlations = np.array([r.correlation for r in both], np.float64)
    transitions: dict[str, Counter] = defaultdict(Counter)
    for row in rows:
        if row.case != NO_BOXES:
            transitions[row.reference_case or "(not found)"][row.candidate_case or "(not found)"] += 1
    kept = counts[ATTENTION_MOVED] + counts[STABLE]
    boxes = sum(counts.values())
    median = lambda values: round(float(np.median(values)), 4) if len(values) else None  # noqa: E731
    summary = DetectionDriftSummary(
        out_dir=out, images=len({r.key for r in rows}), rows=len(rows), errors=len(errors), resumed=resumed,
        reference_boxes=sum(r.reference is not None for r in rows),
        candidate_boxes=sum(r.candidate is not None for r in rows), kept=kept, lost=counts[BOX_LOST],
        new=counts[BOX_NEW], class_changed=counts[CLASS_CHANGED],
        box_agreement=round(kept / boxes, 4) if boxes else None,
        score_change_median=median([r.score_change for r in both]), map_correlation_median=median(correlations),
        map_correlation_p05=round(float(np.percentile(correlations, 5)), 4) if len(both) else None,
        iou_top10_median=median([r.iou_top10 for r in both]),
        cases={c: counts[c] for c in BOX_DRIFT_CASES if counts[c]},
        case_transitions={k: dict(v) for k, v in sorted(transitions.items())}, reference=settings["reference"],
        candidate=settings["candidate"], thresholds=settings["thresholds"], seconds=round(seconds, 3))
    atomic_write_text(out / SUMMARY, json.dumps(summary.to_dict(), indent=2) + "\n")
    if len(both):
        atomic_write_bytes(out / PLOT, correlation_plot(correlations, settings["thresholds"]["min_correlation"]))
    return summary


# ----- the run --------------------------------------------------------------------------------------------
def run_detection_drift(samples: Sequence[BoxSample], reference: Any, candidate: Any, out_dir: Any,
                        truths: Mapping[str, GroundTruth], *, boxes: BoxThresholds, thresholds: DriftThresholds,
                        label_map: Mapping[str, str] | None = None, run: RunConfig = RunConfig(),
                        progress: Progress | None = None, stop: threading.Event | None = None,
                        recipe: DetectionDriftWork | None = None, report: bool = True) -> DetectionDriftSummary:
    """Compare ``candidate`` with ``reference`` (two :class:`~ov_explain.explain.detection.DetectionExplainer`)
    on ``samples`` into ``out_dir``; resumes a previous run of the same settings."""
    out = Path(out_dir)
    if reference.method != candidate.method:
        raise FolderError(f"the two deployments explain with different methods ({reference.method} and "
                          f"{candidate.method}); ask for the same --method")
    stems = dict(zip((s.key for s in samples), unique_stems([s.key for s in samples], [s.path.stem for s in samples])))
    settings = {"format_version": FORMAT_VERSION, "task": "detection", "reference": deployment_settings(reference),
                "candidate": deployment_settings(candidate),
                "thresholds": {**dataclasses.asdict(thresholds), **dataclasses.asdict(boxes)},
                "label_map": json.dumps(dict(label_map or {}), sort_keys=True)}
    if run.engine == "ray":
        if recipe is None:
            raise FolderError("the Ray engine builds its work from a recipe (DetectionDriftWork): pass recipe=")
        engine: Any = RayEngine(recipe, stems, run.ray)
    else:
        threads = run.workers or reference.plan()[0] + candidate.plan()[0] - 1
        engine = ThreadEngine(BoxDriftWorker(reference, candidate, truths, boxes, thresholds, out, stems), threads)
    started = time.perf_counter()
    stats = run_rows(samples, engine, out, DETECTION_DRIFT_FOLDER, settings, set(stems.values()),
                     restart=run.restart, progress=progress, stop=stop)
    summary = write_detection_drift_summary(out, settings, stats.resumed, time.perf_counter() - started)
    if report:
        from ov_explain.runs.report import build_drift_report

        build_drift_report(out)
    return summary
