"""Datasets to audit: class folders, CSV / JSONL lists, or a plain folder; labels mapped to classes.

A dataset is a list of :class:`Sample` (where the image is, its label text, a key naming it inside
the dataset). Labels are turned into class indices by :class:`LabelResolver`, which understands
class names, indices and ids such as WordNet synsets through a label map.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import random
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from ov_explain.core.errors import LabelsError, OvExplainError
from ov_explain.core.images import IMAGE_SUFFIXES, is_image_file
from ov_explain.core.labels import read_text, resolve_class

logger = logging.getLogger(__name__)

DATASET_KINDS = ("auto", "folders", "csv", "jsonl", "unlabeled")


class DatasetError(OvExplainError):
    """The dataset cannot be read at all (as opposed to one bad image or label)."""


@dataclass(frozen=True)
class Sample:
    """One image of a dataset: its path, its label as written (None if unlabeled) and a unique key."""

    path: Path
    label: str | None
    key: str

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels ``--classes`` selects by."""
        return () if self.label is None else (self.label,)


def read_dataset(source: str | os.PathLike, *, kind: str = "auto",
                 exclude: str | os.PathLike | None = None) -> list[Sample]:
    """Every sample of a dataset, in a stable order.

    ``kind``: ``folders`` (``ROOT/<label>/<image>``), ``csv`` (columns ``path,label``), ``jsonl``
    (objects with ``path`` and ``label``), ``unlabeled`` (every image under the folder) or ``auto``:
    a .csv / .jsonl file by its suffix; a folder with images directly inside is unlabeled, a folder
    of sub-folders is class folders. A folder walk skips ``exclude`` (an audit's output folder inside
    the dataset: its overlays are not the dataset's images, nor is it a class).
    """
    source = Path(source)
    skip = Path(exclude).resolve() if exclude is not None else None
    if kind not in DATASET_KINDS:
        raise DatasetError(f"dataset kind must be one of {list(DATASET_KINDS)}, got {kind!r}")
    if not source.exists():
        raise DatasetError(f"{source}: dataset not found")
    if kind == "auto":
        kind = _detect_kind(source)
    if kind in ("csv", "jsonl"):
        if not source.is_file():
            raise DatasetError(f"{source}: expected a {kind.upper()} file")
        samples = _read_csv(source) if kind == "csv" else _read_jsonl(source)
    else:
        if not source.is_dir():
            raise DatasetError(f"{source}: expected a folder")
        samples = _read_folders(source, skip) if kind == "folders" else _read_unlabeled(source, skip)
    if not samples:
        raise DatasetError(f"{source}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    check_utf8_names(samples)
    logger.info("%s: %d images (%s)", source, len(samples), kind)
    return samples


def check_utf8_names(samples: Iterable[Any]) -> None:
    """Refuse a path that is not UTF-8 (Linux hands a name's non-UTF-8 bytes to Python as surrogate escapes;
    a list can hold an escaped lone surrogate): a run's rows, CSVs and report are UTF-8 text and could not name
    it, so the whole dataset is refused before any image rather than failing mid-run."""
    for sample in samples:
        text = str(sample.path)
        if text.isascii():
            continue
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            try:  # the name's own bytes, as \xe9 where they are not UTF-8
                shown = os.fsencode(text).decode("utf-8", "backslashreplace")
            except UnicodeError:  # a surrogate no file name decodes to (from a list's text)
                shown = text.encode("utf-8", "backslashreplace").decode("utf-8")
            raise DatasetError(f"{shown}: path is not UTF-8; rename the file or folder (a run's rows, CSVs and "
                               "report are UTF-8 text)") from None


def select(samples: Sequence[Any], *, classes: Iterable[str] | None = None, limit: int | None = None,
           sample: int | None = None, seed: int = 0) -> list[Any]:
    """Filter by label (any of an image's: a detection dataset's images have several), then draw a
    reproducible random ``sample`` and/or keep the first ``limit``."""
    chosen = list(samples)
    if classes:
        wanted = {_fold(c) for c in classes}
        chosen = [s for s in chosen if any(_fold(label) in wanted for label in s.labels)]
    if sample is not None:
        if sample < 1:
            raise DatasetError(f"sample: expected a positive number of images, got {sample}")
        picked = sorted(random.Random(seed).sample(range(len(chosen)), min(sample, len(chosen))))
        chosen = [chosen[i] for i in picked]
    if limit is not None:
        if limit < 1:
            raise DatasetError(f"limit: expected a positive number of images, got {limit}")
        chosen = chosen[:limit]
    return chosen


class LabelResolver:
    """Dataset label text -> model class index.

    Tried in order: the label map (folder id -> class name or index), the class name itself
    (case-insensitive, ``_`` and space alike), a bare class index. Unknown labels raise
    :class:`LabelsError` with the closest class names.
    """

    def __init__(self, class_names: Sequence[str] | None, num_classes: int,
                 label_map: dict[str, str] | None = None) -> None:
        self.class_names = list(class_names) if class_names is not None else None
        self.num_classes = num_classes
        self.label_map = dict(label_map or {})
        self._by_name = {_fold(n): i for i, n in reversed(list(enumerate(self.class_names or [])))}
        self._cache: dict[str, int] = {}

    def __call__(self, label: str) -> int:
        if label not in self._cache:
            self._cache[label] = self._resolve(label)
        return self._cache[label]

    def _resolve(self, label: str) -> int:
        target = self.label_map.get(label, label)
        index = self._by_name.get(_fold(target))
        if index is not None:
            return index
        try:
            return resolve_class(target, self.class_names, self.num_classes)
        except LabelsError as exc:
            mapped = f" (mapped from {label!r})" if target != label else ""
            raise LabelsError(f"label {label!r}{mapped}: {exc}") from None


def read_label_map(path: str | os.PathLike) -> dict[str, str]:
    """A label map file: ``id,class`` / ``id<TAB>class`` / ``id class name`` per line, or one id per
    line in class-index order (like ``imagenet_synsets.txt``). A ``.json`` object also works."""
    path = Path(path)
    text = read_text(path, "label map")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LabelsError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(data, dict):
            raise LabelsError(f"{path}: expected a JSON object {{id: class}}")
        return {str(k): str(v) for k, v in data.items()}
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not lines:
        raise LabelsError(f"{path}: label map is empty")
    if all(len(re.split(r"[,\t ]", line, maxsplit=1)) == 1 for line in lines):
        return {line: str(index) for index, line in enumerate(lines)}  # ids in class order
    mapping: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        parts = re.split(r"\s*[,\t]\s*", line, maxsplit=1) if re.search(r"[,\t]", line) else line.split(None, 1)
        if len(parts) != 2 or not parts[1]:
            raise LabelsError(f"{path}: line {number}: expected 'id,class', got {line!r}")
        mapping[parts[0]] = parts[1].strip().strip('"')
    return mapping


def default_label_map(model_path: Path) -> Path | None:
    """A label map shipped beside the model (``<stem>.synsets.txt`` or ``imagenet_synsets.txt``)."""
    stem = model_path.name[: -len(model_path.suffix)]
    for name in (f"{stem}.synsets.txt", "synsets.txt", "imagenet_synsets.txt"):
        if (model_path.parent / name).is_file():
            return model_path.parent / name
    return None


# ----- readers ----------------------------------------------------------------------------------------
def _detect_kind(source: Path) -> str:
    if source.is_file():
        suffix = source.suffix.lower()
        if suffix == ".csv":
            return "csv"
        if suffix in (".jsonl", ".ndjson"):
            return "jsonl"
        raise DatasetError(f"{source}: expected a folder, a .csv or a .jsonl list")
    if any(is_image_file(p) for p in source.iterdir() if p.is_file()):
        return "unlabeled"
    return "folders"


def _outside(path: Path, skip: Path | None) -> bool:
    return skip is None or not path.resolve().is_relative_to(skip)


def _read_folders(root: Path, skip: Path | None = None) -> list[Sample]:
    samples = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                         and _outside(p, skip)):
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p) and _outside(p, skip)):
            samples.append(Sample(path, folder.name, path.relative_to(root).as_posix()))
    return samples


def _read_unlabeled(root: Path, skip: Path | None = None) -> list[Sample]:
    return [Sample(p, None, p.relative_to(root).as_posix())
            for p in sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p) and _outside(p, skip))]


def _entry(base: Path, path_text: str, label: object, where: str) -> Sample:
    if not path_text:
        raise DatasetError(f"{where}: empty path")
    path = Path(path_text)
    resolved = path if path.is_absolute() else base / path
    text = None if label is None or str(label).strip() == "" else str(label).strip()
    return Sample(resolved, text, path.as_posix())


def _read_csv(path: Path) -> list[Sample]:
    with _utf8(path), open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields = [f.strip().lower() for f in reader.fieldnames or []]
        if "path" not in fields:
            raise DatasetError(f"{path}: expected a header with columns 'path' and 'label', got {fields}")
        reader.fieldnames = fields
        samples = [_entry(path.parent, (row.get("path") or "").strip(), row.get("label"), f"{path}:{n}")
                   for n, row in enumerate(reader, 2)]
    return _check_unique(samples, path)


def _read_jsonl(path: Path) -> list[Sample]:
    samples = []
    with _utf8(path), open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict) or "path" not in row:
                raise DatasetError(f"{path}:{number}: expected an object with 'path' and 'label'")
            samples.append(_entry(path.parent, str(row["path"]).strip(), row.get("label"), f"{path}:{number}"))
    return _check_unique(samples, path)


@contextmanager
def _utf8(path: Path) -> Iterator[None]:
    """Turn a decoding error while reading ``path`` into one line naming the file and the byte."""
    try:
        yield
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                           "save the list as UTF-8") from None


def _check_unique(samples: list[Sample], path: Path) -> list[Sample]:
    """Keep the first row of a path listed twice: one duplicate must not stop an audit."""
    unique: dict[str, Sample] = {}
    for sample in samples:
        if sample.key in unique:
            logger.warning("%s: %s is listed more than once; keeping the first row", path, sample.key)
            continue
        unique[sample.key] = sample
    return list(unique.values())


def _fold(text: str) -> str:
    return " ".join(str(text).replace("_", " ").split()).lower()
