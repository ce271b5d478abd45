"""Structured file names for saliency outputs: made safe, formatted and parsed in one place.

The pattern is the one the seed notebook used::

    {stem}_gt_{ground_truth}_{gt_conf:.2f}_pr_{class}_{conf:.2f}.jpg

``pr`` names the class the map explains (the prediction, or the ground truth when the model was
wrong) and its probability. Without ground truth the ``gt`` part is left out. Every component is
made safe first, and safe components never contain the ``_gt_`` / ``_pr_`` markers, so
:func:`parse_name` recovers exactly what :func:`format_name` was given.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")
_MARKERS = ("gt", "pr")
_CONFIDENCE = r"(?:0\.\d\d|1\.00)"
_NAME = re.compile(
    rf"^(?P<stem>.+?)(?:_gt_(?P<gt>.+)_(?P<gt_conf>{_CONFIDENCE}))?_pr_(?P<pr>.+)_(?P<pr_conf>{_CONFIDENCE})"
    r"(?P<ext>(?:\.[A-Za-z0-9]+)*)$")


def safe_component(text: str, *, max_length: int = 80, empty: str = "unnamed") -> str:
    """One path component from any label: no separators, no ``..``, no control characters.

    Unicode is folded to ASCII where possible; spaces and anything unsafe become ``_``; leading dots
    and dashes are dropped so nothing hides, climbs directories or reads as an option; a word that is
    exactly ``gt`` or ``pr`` is upper-cased so a label is never mistaken for a name's markers.
    """
    folded = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii")
    joined = "_".join(w for w in _UNSAFE.sub("_", folded).split("_") if w)
    cleaned = re.sub(r"\.{2,}", ".", joined).lstrip("._-")[:max_length].rstrip("._")
    return "_".join(w.upper() if w in _MARKERS else w for w in cleaned.split("_")) or empty


def format_confidence(probability: float) -> str:
    """``0.00`` .. ``1.00``; probabilities slightly outside [0, 1] from float error are clipped."""
    return f"{min(max(float(probability), 0.0), 1.0):.2f}"


@dataclass(frozen=True)
class NameParts:
    """What a structured file name says."""

    stem: str
    target: str
    target_confidence: float
    ground_truth: str | None = None
    ground_truth_confidence: float | None = None
    extension: str = ""


def format_name(stem: str, target: str, target_confidence: float, ground_truth: str | None = None,
                ground_truth_confidence: float | None = None, extension: str = ".jpg") -> str:
    """The structured file name; every text part is passed through :func:`safe_component`."""
    parts = [safe_component(stem)]
    if ground_truth is not None:
        if ground_truth_confidence is None:
            raise ValueError("ground_truth_confidence is required when ground_truth is given")
        parts += ["gt", safe_component(ground_truth, max_length=60), format_confidence(ground_truth_confidence)]
    parts += ["pr", safe_component(target, max_length=60), format_confidence(target_confidence)]
    return "_".join(parts) + extension


def parse_name(name: str) -> NameParts:
    """Recover stem, labels and confidences from a name made by :func:`format_name`."""
    match = _NAME.match(name)
    if match is None:
        raise ValueError(f"{name!r}: not a structured name "
                         "({stem}_gt_{label}_{conf}_pr_{label}_{conf}.ext or {stem}_pr_{label}_{conf}.ext)")
    gt = match["gt"]
    return NameParts(match["stem"], match["pr"], float(match["pr_conf"]), gt,
                     float(match["gt_conf"]) if gt is not None else None, match["ext"] or "")


def unique_stems(keys: Sequence[str], stems: Sequence[str]) -> list[str]:
    """Safe stems for dataset items; items sharing a stem get a short hash of their key added.

    ``keys`` identify items (e.g. their path inside the dataset) and must be distinct. The result
    depends only on the set of items, so a resumed run names every file as the first run did.
    """
    safe = [safe_component(s) for s in stems]
    counts = Counter(s.lower() for s in safe)  # case-insensitive filesystems count "A" and "a" as one
    return [f"{s}-{_short_hash(k)}" if counts[s.lower()] > 1 else s for s, k in zip(safe, keys)]


def file_labels(names: Iterable[str]) -> list[str]:
    """Class names for file names; a name two classes share (ImageNet has two "crane") gets its index."""
    names = list(names)
    counts = Counter(safe_component(n, max_length=60).lower() for n in names)
    return [n if counts[safe_component(n, max_length=60).lower()] == 1 else f"{n}-{i}" for i, n in enumerate(names)]


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]


# ----- drift audits: both deployments' predictions and the map similarity in one name ----------------
_DRIFT = re.compile(rf"^(?P<base>.+)__cand_(?P<cand>.+)_(?P<cand_conf>{_CONFIDENCE})__map_(?P<map>.+)"
                    r"_r_(?P<r>[+-]\d\.\d\d)(?P<ext>(?:\.[A-Za-z0-9]+)*)$")


@dataclass(frozen=True)
class DriftNameParts:
    """What a drift file name says: the reference's part (as :class:`NameParts`), the candidate's top
    class and confidence, the class the maps explain and their correlation."""

    reference: NameParts
    candidate: str
    candidate_confidence: float
    target: str
    correlation: float
    extension: str = ""


def format_drift_name(stem: str, reference: str, reference_confidence: float, candidate: str,
                      candidate_confidence: float, target: str, map_correlation: float,
                      ground_truth: str | None = None, ground_truth_confidence: float | None = None,
                      extension: str = ".jpg") -> str:
    """``{audit name of the reference}__cand_{class}_{conf}__map_{class}_r_{+0.93}.jpg``.

    Safe components never contain ``__``, so the parts split unambiguously.
    """
    base = format_name(stem, reference, reference_confidence, ground_truth, ground_truth_confidence, extension="")
    r = min(max(float(map_correlation), -1.0), 1.0)
    return (f"{base}__cand_{safe_component(candidate, max_length=60)}_{format_confidence(candidate_confidence)}"
            f"__map_{safe_component(target, max_length=60)}_r_{r:+.2f}{extension}")


def parse_drift_name(name: str) -> DriftNameParts:
    """Recover the parts of a name made by :func:`format_drift_name`."""
    match = _DRIFT.match(name)
    if match is None:
        raise ValueError(f"{name!r}: not a drift file name ({{audit name}}__cand_{{label}}_{{conf}}"
                         "__map_{label}_r_{corr}.ext)")
    return DriftNameParts(parse_name(match["base"]), match["cand"], float(match["cand_conf"]), match["map"],
                          float(match["r"]), match["ext"] or "")


# ----- detection audits: one file per box ------------------------------------------------------------
_BOX = re.compile(r"^(?P<base>.+)_box(?P<box>\d+)(?P<ext>(?:\.[A-Za-z0-9]+)*)$")


@dataclass(frozen=True)
class BoxNameParts:
    """What a detection audit's file name says: the audit name's parts (``ground_truth_confidence`` holds the
    IoU of the detection with its ground-truth box, ``target_confidence`` the explained box's score) and the
    box's number in the image."""

    name: NameParts
    box: int
    extension: str = ""


def format_box_name(stem: str, target: str, score: float, box: int, ground_truth: str | None = None,
                    iou: float | None = None, extension: str = ".jpg") -> str:
    """``{stem}_gt_{class}_{iou}_pr_{class}_{score}_box{k}.jpg`` (without ground truth: ``{stem}_pr_..._box{k}``);
    a missed ground-truth box is ``gt_{class}_0.00_pr_{class}_{its score there}``."""
    if box < 0:
        raise ValueError(f"box: expected a number >= 0, got {box}")
    base = format_name(stem, target, score, ground_truth, iou if ground_truth is not None else None, extension="")
    return f"{base}_box{int(box)}{extension}"


def parse_box_name(name: str) -> BoxNameParts:
    """Recover the parts of a name made by :func:`format_box_name`."""
    match = _BOX.match(name)
    if match is None:
        raise ValueError(f"{name!r}: not a detection file name ({{audit name}}_box{{k}}.ext)")
    return BoxNameParts(parse_name(match["base"]), int(match["box"]), match["ext"] or "")
