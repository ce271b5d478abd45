"""One image through both deployments: the rows, both raw maps and the side-by-side picture; and the
recipe that builds the same work in a Ray actor."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ov_explain import render
from ov_explain.core.config import ModelConfig
from ov_explain.core.errors import OvExplainError
from ov_explain.core.images import read_image
from ov_explain.core.storage import atomic_write_bytes
from ov_explain.evaluate.drift_measures import correlation, iou_top, peak_shift
from ov_explain.explain.config import ExplainConfig
from ov_explain.explain.explainer import Explainer
from ov_explain.runs.cases import CaseThresholds, classify_case
from ov_explain.runs.dataset import LabelResolver, Sample
from ov_explain.runs.drift.folder import ATTENTION_MOVED, DEPLOYMENTS, PREDICTION_CHANGED, STABLE, DriftRow
from ov_explain.runs.engine import FolderError
from ov_explain.runs.naming import file_labels, format_drift_name
from ov_explain.runs.ray_engine import actor_core
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

    def case(self, top1_agreement: bool, map_correlation: float, iou: float) -> str:
        if not top1_agreement:
            return PREDICTION_CHANGED
        if map_correlation < self.min_correlation or iou < self.min_iou:
            return ATTENTION_MOVED
        return STABLE


class DriftWorker:
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
            case = self.thresholds.case(ref_top.index == cand_top.index, r, iou)
            p_ref, p_cand = float(ref.prediction.probabilities[target]), float(cand.prediction.probabilities[target])
            name = format_drift_name(self.stems[sample.key], self.file_names[ref_top.index], ref_top.probability,
                                     self.file_names[cand_top.index], cand_top.probability, self.file_names[target], r,
                                     None if truth is None else self.file_names[truth],
                                     None if truth is None else float(ref.prediction.probabilities[truth]))
            (self.out / case).mkdir(exist_ok=True)
            maps = {deployment: f"{case}/{Path(name).stem}.{deployment}.npy" for deployment in DEPLOYMENTS}
            for deployment, saliency in zip(DEPLOYMENTS, (mine, theirs)):
                atomic_write_bytes(self.out / maps[deployment], npy_bytes(saliency.raw))
            atomic_write_bytes(self.out / case / name, render.encode_jpeg(side_by_side(bgr, mine, theirs), 90,
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
                case=case, image_path=f"{case}/{name}",
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


def deployment_settings(explainer: Any) -> dict[str, Any]:
    """A deployment as the settings file records it (``precision``: the one that executed)."""
    classifier = explainer.classifier
    custom = classifier.custom_fn
    preprocess = None if not classifier.preprocess_given else \
        f"custom:{getattr(custom, '__qualname__', repr(custom))}" if custom is not None else classifier.spec.to_dict()
    return {"model": str(classifier.files.model.resolve()), "model_sha256": classifier.files.digest(),
            "device": explainer.device, "precision": explainer.precision,
            "requested_precision": classifier.requested_precision, "method": explainer.method,
            "mode": explainer.mode, "target_layer": explainer.target_layer, "readout": explainer.readout,
            "preprocess": preprocess, **({"backend": explainer.backend} if explainer.backend != "native" else {})}



@dataclass(frozen=True)
class DriftWork:
    """The recipe of a drift audit's per-image work, to build it in a Ray actor: both deployments' model and
    explanation configs as the driver resolved them (model files, method, layer), not the objects."""

    reference: ModelConfig
    candidate: ModelConfig
    reference_explain: ExplainConfig
    candidate_explain: ExplainConfig
    label_map: dict[str, str] | None
    thresholds: DriftThresholds
    cases: CaseThresholds
    out: str

    def build(self, threads: int, stems: dict[str, str]) -> DriftWorker:
        """The work the local engine's threads run, both models compiled for ``threads`` CPU threads."""
        core = actor_core(threads)
        reference = self.reference_explain.create(self.reference.load(hint="THROUGHPUT", core=core))
        candidate = self.candidate_explain.create(self.candidate.load(hint="THROUGHPUT", core=core))
        classifier = reference.classifier
        resolver = LabelResolver(classifier.labels, classifier.num_classes, self.label_map)
        return DriftWorker(reference, candidate, resolver, self.thresholds, self.cases, Path(self.out), stems)
