"""An audit folder's names and rows: what the audit writes and the report, exports and resumes read.

Rows are typed: :class:`AuditRow` is one image and explained class of ``manifest.jsonl``,
:class:`ErrorRow` one image that could not be audited. ``from_dict`` refuses a damaged row with a
``ValueError`` (a resumed audit drops and redoes it); ``to_dict`` gives the file's flat columns.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ov_explain.core.storage import read_jsonl
from ov_explain.runs.cases import CASES

logger = logging.getLogger(__name__)

SETTINGS_FILE, MANIFEST, ERRORS = "audit.json", "manifest.jsonl", "errors.jsonl"
MANIFEST_CSV, ERRORS_CSV, SUMMARY, CONFUSION, GRIDS, REPORT = \
    "manifest.csv", "errors.csv", "summary.json", "confusion.csv", "grids", "report.html"
FORMAT_VERSION = 1
#: Files an audit writes at the top of its folder (besides the case folders and grids/).
#: manifest.csv as far as a stopped or killed run wrote it (the next run continues it).
MANIFEST_CSV_PARTIAL = f".{MANIFEST_CSV}.partial"
TOP_FILES = (SETTINGS_FILE, MANIFEST, ERRORS, MANIFEST_CSV, MANIFEST_CSV_PARTIAL, ERRORS_CSV, SUMMARY, CONFUSION,
             REPORT)
#: Endings of the files an audit writes per explained class in a case folder.
MAP_EXTENSIONS = (".jpg", ".npy", ".rgba.png")
#: The per-image timings a row carries, in milliseconds.
TIMING_COLUMNS = ("decode_ms", "preprocess_ms", "explain_ms", "write_ms")
#: A map's box (where the model input lies on the original image) as four flat columns.
BOX_SIDES = ("left", "top", "right", "bottom")
Box = tuple[float, float, float, float]


def box_columns(prefix: str, box: Box | None) -> dict[str, float]:
    """``{prefix}_left`` .. ``{prefix}_bottom`` (nothing for no box), in original-image pixels."""
    return {} if box is None else {f"{prefix}_{side}": round(float(v), 3) for side, v in zip(BOX_SIDES, box)}


@functools.cache
def _box_names(prefix: str) -> tuple[str, ...]:
    """``{prefix}_left`` .. ``{prefix}_bottom``, made once, not for each of a million rows."""
    return tuple(f"{prefix}_{side}" for side in BOX_SIDES)


def read_box(data: dict[str, Any], prefix: str) -> Box | None:
    """The box written by :func:`box_columns`, or None when a row has none (rows of older audits)."""
    names = _box_names(prefix)
    if names[0] not in data:
        return None
    try:
        box = tuple(map(float, operator.itemgetter(*names)(data)))
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{prefix}_left..{prefix}_bottom: expected four numbers") from None
    if not (box[0] <= box[2] and box[1] <= box[3]):  # a detection clipped to the image edge may be a line
        raise ValueError(f"{prefix} box {list(box)}: expected left <= right and top <= bottom")
    return box  # type: ignore[return-value]


def flat_columns(row: Any, boxes: dict[str, str]) -> dict[str, Any]:
    """A row dataclass as a file's flat columns, in field order: ``timings_ms`` as its ``*_ms`` columns, each
    box field of ``boxes`` (field -> column prefix) as four columns (:func:`box_columns`)."""
    data: dict[str, Any] = {}
    for item in dataclasses.fields(row):
        value = getattr(row, item.name)
        if item.name == "timings_ms":
            data.update({k: value[k] for k in TIMING_COLUMNS if k in value})
        elif item.name in boxes:
            data.update(box_columns(boxes[item.name], value))
        else:
            data[item.name] = value
    return data


def from_columns(cls: type, data: Any, boxes: dict[str, str], values: dict[str, Any] | None = None) -> Any:
    """The row :func:`flat_columns` wrote (``values``: fields the caller read itself); ``ValueError`` if it is
    damaged or incomplete (a resumed run drops and redoes it)."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    values = {"timings_ms": {k: float(data[k]) for k in TIMING_COLUMNS if k in data},
              **{name: read_box(data, prefix) for name, prefix in boxes.items()}, **(values or {})}
    plain, pick = _plain_columns(cls, frozenset(values))
    if plain <= data.keys():  # every column of today's rows: one C-level pick (a resume reads a million rows)
        values.update(zip(pick.names, pick(data)))
    else:
        for name, required in _columns_of(cls):
            if name in values:
                continue
            if name in data:
                values[name] = data[name]
            elif required:
                raise ValueError(f"missing column {name!r}")
    try:
        return cls(**values)
    except TypeError as exc:
        raise ValueError(str(exc)) from None


def _top_names(rank: int) -> tuple[str, str, str]:
    return f"top{rank}_index", f"top{rank}_class", f"top{rank}_probability"


#: The top-k column names of the first ranks, made once rather than for each of a million rows.
_FIRST_TOP_COLUMNS = tuple(_top_names(r) for r in range(1, 21))


def _top_columns() -> Iterator[tuple[str, str, str]]:
    """The manifest's top-k column names, rank by rank (a row has as many as its --top-k)."""
    yield from _FIRST_TOP_COLUMNS
    for rank in itertools.count(len(_FIRST_TOP_COLUMNS) + 1):
        yield _top_names(rank)


@functools.cache
def _columns_of(cls: type) -> tuple[tuple[str, bool], ...]:
    """A row class's fields as (name, required): looked up once, not for each of a million rows."""
    return tuple((item.name, item.default is dataclasses.MISSING) for item in dataclasses.fields(cls))


class ColumnPick:
    """``operator.itemgetter`` of some columns that always returns a tuple (one C-level pick a row, even of one
    column), with their names beside."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names, getter = names, operator.itemgetter(*names)
        self._get = getter if len(names) > 1 else (lambda data: (getter(data),))

    def __call__(self, data: dict[str, Any]) -> tuple[Any, ...]:
        return self._get(data)


@functools.cache
def _plain_columns(cls: type, read_apart: frozenset[str]) -> tuple[frozenset[str], ColumnPick]:
    """The fields a row's columns hold as they are (all but ``read_apart``), as a set and a pick."""
    names = tuple(name for name, _ in _columns_of(cls) if name not in read_apart)
    return frozenset(names), ColumnPick(names)


def read_typed_rows(path: Path, parse: Callable[[Any], Any]) -> Iterator[Any]:
    """A rows file's rows through ``parse``; a damaged row raises ``ValueError`` naming its line."""
    for number, data in enumerate(read_jsonl(path), 1):
        try:
            yield parse(data)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: line {number}: {exc}") from None


@dataclass(frozen=True)
class RankedClass:
    """One of an image's top-k classes."""

    index: int
    name: str
    probability: float


@dataclass
class AuditRow:
    """One image and one explained class: what the model said, the case, the map's files, provenance."""

    key: str
    source: str
    stem: str
    width: int
    height: int
    ground_truth: str | None
    ground_truth_index: int | None
    ground_truth_class: str | None
    ground_truth_probability: float | None
    case: str
    correct: bool | None
    in_top_k: bool | None
    top: tuple[RankedClass, ...]
    method: str
    mode: str
    device: str
    precision: str
    target_layer: str | None
    inferences: int
    target_rank: int
    targets_total: int
    target_role: str
    target_index: int
    target_class: str
    target_probability: float
    overlay_path: str
    raw_path: str | None = None
    rgba_path: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    readout: str | None = None  # white-box class scores: "logit" / "probability" (None: black-box, older audits)
    map_box: Box | None = None  # where the raw map lies on the image (None: older audits)

    def __post_init__(self) -> None:
        if self.case not in CASES:
            raise ValueError(f"case: unknown {self.case!r}")
        if not 0 <= self.target_rank < self.targets_total:
            raise ValueError(f"target_rank {self.target_rank} outside 0..{self.targets_total - 1}")
        if not self.top:
            raise ValueError("top: expected at least one class")
        if not isinstance(self.key, str) or not isinstance(self.overlay_path, str):
            raise ValueError("key and overlay_path must be strings")

    @property
    def top1(self) -> RankedClass:
        return self.top[0]

    @property
    def paths(self) -> list[str]:
        """The files of this row, relative to the audit folder."""
        return [p for p in (self.overlay_path, self.raw_path, self.rgba_path) if p]

    def to_dict(self) -> dict[str, Any]:
        """The manifest's flat columns, in the order the CSV shows them."""
        data: dict[str, Any] = {}
        for name, value in flat_columns(self, {"map_box": "map"}).items():
            if name == "top":
                for rank, ranked in enumerate(value, 1):
                    data.update({f"top{rank}_index": ranked.index, f"top{rank}_class": ranked.name,
                                 f"top{rank}_probability": ranked.probability})
            else:
                data[name] = value
        return data

    @classmethod
    def from_dict(cls, data: Any) -> "AuditRow":
        """A row read back from the manifest; ``ValueError`` if it is damaged or incomplete."""
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        top = []
        for index, name_column, probability in _top_columns():
            if index not in data:
                break
            name = data[name_column]
            if not isinstance(name, str):
                raise ValueError(f"{name_column}: expected a class name, got {name!r}")
            top.append(RankedClass(int(data[index]), name, float(data[probability])))
        return from_columns(cls, data, {"map_box": "map"}, {"top": tuple(top)})


@dataclass(frozen=True)
class ErrorRow:
    """One image the audit could not explain, and why."""

    key: str
    source: str
    label: str | None
    error_type: str
    error: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_exception(cls, key: str, source: str, label: str | None, exc: Exception) -> "ErrorRow":
        """The row for an image whose work raised: our errors by type and message (naming the file),
        anything else as ``unexpected`` with its first line (the trace goes to the debug log)."""
        from ov_explain.core.errors import OvExplainError, one_line

        kind = "unexpected" if not isinstance(exc, OvExplainError) else type(exc).__name__
        message = str(exc) if isinstance(exc, OvExplainError) else f"{source}: {one_line(exc)}"
        if source not in message:
            message = f"{source}: {message}"
        if kind == "unexpected":
            logger.debug("unexpected error on %s", source, exc_info=exc)
        return cls(key, source, label, kind, message)

    @classmethod
    def from_dict(cls, data: Any) -> "ErrorRow":
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        try:
            return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})
        except KeyError as exc:
            raise ValueError(f"missing column {exc}") from None


ERROR_COLUMNS = tuple(f.name for f in dataclasses.fields(ErrorRow))


def read_rows(out: Path) -> Iterator[AuditRow]:
    """The manifest's rows; a damaged row raises ``ValueError`` naming its line."""
    return read_typed_rows(out / MANIFEST, AuditRow.from_dict)


#: What the end of a run reads of each manifest row without building the row (counts, tiles, the report).
SUMMARY_COLUMNS = ("key", "case", "target_rank", "ground_truth_class", "ground_truth_index", "correct", "in_top_k",
                   "top1_class", "top1_probability", "overlay_path")


def read_row_columns(out: Path) -> Iterator[dict[str, Any]]:
    """The manifest's rows as their columns (a million of them read in seconds, not as :class:`AuditRow`);
    a row missing a column the end of a run reads, or of an unknown case, raises ``ValueError`` naming its line."""
    path, required, cases = out / MANIFEST, frozenset(SUMMARY_COLUMNS), frozenset(CASES)
    for number, data in enumerate(read_jsonl(path), 1):
        if not isinstance(data, dict):
            raise ValueError(f"{path}: line {number}: expected a JSON object, got {type(data).__name__}")
        if not required <= data.keys() or data["case"] not in cases:  # set operations: a million rows a second
            missing = [k for k in SUMMARY_COLUMNS if k not in data]
            problem = f"missing column {missing[0]!r}" if missing else f"case: unknown {data['case']!r}"
            raise ValueError(f"{path}: line {number}: {problem}")
        yield data


def read_errors(out: Path) -> list[ErrorRow]:
    """The error rows that can be read (a damaged one is skipped with a warning)."""
    rows = []
    for data in read_jsonl(out / ERRORS):
        try:
            rows.append(ErrorRow.from_dict(data))
        except ValueError as exc:
            logger.warning("%s: skipped a damaged row (%s)", out / ERRORS, exc)
    return rows
