"""Class names: a text file with one name per line, matched to the model's number of classes."""

from __future__ import annotations

import difflib
import logging
import os
from pathlib import Path
from typing import Sequence

from ov_explain.core.errors import LabelsError

logger = logging.getLogger(__name__)


def read_text(path: str | os.PathLike, what: str = "labels file") -> str:
    """A UTF-8 text file, or a :class:`LabelsError` naming the file and ``what`` it should be."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LabelsError(f"{path}: {what} not found") from None
    except UnicodeDecodeError:
        raise LabelsError(f"{path}: {what} is not UTF-8 text") from None


def read_labels(path: str | os.PathLike) -> list[str]:
    """Read a labels file: one class name per line, blank trailing lines ignored."""
    path = Path(path)
    text = read_text(path)
    names = [line.strip() for line in text.splitlines()]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise LabelsError(f"{path}: labels file is empty, expected one class name per line")
    if any(not n for n in names):
        first = names.index("") + 1
        raise LabelsError(f"{path}: line {first} is empty, expected one class name per line")
    return names


def check_labels(names: Sequence[str], num_classes: int, source: str) -> list[str]:
    """Labels must name every class the model outputs."""
    if len(names) != num_classes:
        raise LabelsError(f"{source}: {len(names)} class names for a model with {num_classes} classes")
    return list(names)


def resolve_class(target: int | str, names: Sequence[str] | None, num_classes: int) -> int:
    """A class index from an index or a name; unknown names list the closest matches."""
    if isinstance(target, (int,)) and not isinstance(target, bool):
        if not 0 <= target < num_classes:
            raise LabelsError(f"class index {target} out of range 0..{num_classes - 1}")
        return int(target)
    text = str(target)
    if text.isdigit():
        return resolve_class(int(text), names, num_classes)
    if names is None:
        raise LabelsError(f"class {text!r}: the model has no class names; use an index 0..{num_classes - 1}")
    lowered = [n.lower() for n in names]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    close = difflib.get_close_matches(text.lower(), lowered, n=5, cutoff=0.6)
    hint = f"; close matches: {', '.join(names[lowered.index(c)] for c in close)}" if close else ""
    raise LabelsError(f"unknown class {text!r}{hint}")
