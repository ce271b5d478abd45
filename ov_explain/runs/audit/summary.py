"""An audit's closing files, rebuilt from its manifest: summary.json, the CSVs, the confusion table, grids."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import shutil
from collections import Counter, defaultdict
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

import cv2

from ov_explain.core.images import read_bgr_at_least
from ov_explain.core.storage import atomic_text_file, atomic_write_bytes, atomic_write_text, temp_path
from ov_explain.render.grids import CELL, FORMER_GRID_SUFFIXES, GRID_SUFFIX, Tile, grid_jpeg
from ov_explain.runs.audit.folder import (
    CONFUSION,
    ERROR_COLUMNS,
    ERRORS_CSV,
    GRIDS,
    MANIFEST_CSV,
    SUMMARY,
    AuditRow,
    ColumnPick,
    ErrorRow,
    read_row_columns,
)
from ov_explain.runs.cases import CASES
from ov_explain.runs.gallery import Gallery

logger = logging.getLogger(__name__)


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
    readout: str | None = None  # white-box class scores read as "logit" / "probability" (None: black-box)

    def __post_init__(self) -> None:
        if set(self.cases) - set(CASES):
            raise ValueError(f"cases: unknown case names {sorted(set(self.cases) - set(CASES))}")
        if sum(self.cases.values()) != self.images:
            raise ValueError(f"cases: counts add up to {sum(self.cases.values())}, not {self.images} images")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["out_dir"] = str(self.out_dir)
        return data


class RowCollector(Protocol):
    """Something else chosen from the rows in the summary's pass (the report's images)."""

    def add(self, row: dict[str, Any]) -> None:
        ...

    def forget(self) -> None:
        ...


def write_summary(out: Path, errors: list[ErrorRow], run: dict[str, Any], grid_tiles: int | None,
                  also: RowCollector | None = None) -> AuditSummary:
    """Write manifest.csv, errors.csv, summary.json, confusion.csv and (``grid_tiles`` not None) the case grids
    in one pass over the folder's manifest (see :class:`SummaryBuilder`, which an audit feeds as it appends)."""
    builder = SummaryBuilder(out, grid_tiles, also)
    with builder.building(resumable=False):
        builder.add_rows(read_row_columns(out))
    return builder.finish(errors, run)


class SummaryBuilder:
    """An audit's closing files built while its rows are appended: the rows already in the folder (a resumed
    run's, as the recovery reads them) and then each new image's rows as the run appends them (:meth:`add_rows`),
    so the end of the run writes counts it holds instead of reading every row again. Memory holds the counts
    and each case's grid tiles (and whatever ``also`` keeps), not the rows.

    manifest.csv is written as rows come and put in place when :meth:`building` ends without an error (the
    columns of the first row; an older folder whose rows differ is written again with every column). A resume
    continues what the last run wrote of it (its partial file, or the finished file, copied) when that is as
    the run recorded it and the rows given first are that run's (``earlier``, what :meth:`record` returned
    then), instead of writing those rows again."""

    def __init__(self, out: Path, grid_tiles: int | None, also: RowCollector | None = None):
        self.out, self.grid_tiles, self.also = out, grid_tiles, also
        self._csv: CsvStream | None = None
        self._complete = False  # every column written (False: written again at the end)
        self._built = False  # building() ended without an error
        self._start()

    def _start(self) -> None:
        self.tally = _Tally()
        self.gallery = Gallery(self.grid_tiles or 0,
                               key=lambda row: (-row["top1_probability"], row["key"], row["target_rank"]))

    @contextlib.contextmanager
    def building(self, earlier: dict[str, Any] | None = None, *, resumable: bool = True) -> Iterator["SummaryBuilder"]:
        """Rows are added inside; manifest.csv is in place once it ends without an error. ``earlier``: what
        :meth:`record` returned when the rows given first were last all the rows (None: not known).
        ``resumable``: a run's building, which leaves its partial CSV when it fails (not a rebuild's)."""
        path = self.out / MANIFEST_CSV
        self._csv = CsvStream.resuming(path, (earlier or {}).get(MANIFEST_CSV)) if resumable else CsvStream(path)
        self._built = False
        try:
            yield self
        except BaseException:
            self._csv.abandon()
            raise
        self._complete, self._built = self._csv.close(), True

    def add_rows(self, rows: Iterable[dict[str, Any]]) -> None:
        """Rows as dicts of their columns: a resumed run's as read, an image's as the work made them (not
        decoded again)."""
        for row in rows:
            self.add(row)

    def forget(self) -> None:
        """Drop every row added (the recovery gives the kept ones again)."""
        assert self._csv is not None, "rows are forgotten inside building()"
        self._csv.abandon()
        self._csv = CsvStream(self.out / MANIFEST_CSV, resumable=self._csv.resumable)
        self._start()
        if self.also is not None:
            self.also.forget()

    def record(self) -> dict[str, Any] | None:
        """What the next run needs to keep manifest.csv as far as it is written, any time (None: nothing, or it
        is written again at the end)."""
        if self._csv is None or (self._built and not self._complete):
            return None
        written = self._csv.record()
        return None if written is None else {MANIFEST_CSV: written}

    def add(self, row: dict[str, Any]) -> None:
        assert self._csv is not None, "rows are added inside building()"
        self._csv.add(row)
        self.tally.add(row)
        if row["overlay_path"] is not None:
            self.gallery.add(row["case"], row)
        if self.also is not None:
            self.also.add(row)

    def finish(self, errors: list[ErrorRow], run: dict[str, Any], *, pool: Executor | None = None) -> AuditSummary:
        """errors.csv, the grids, summary.json and confusion.csv from what was counted.

        ``run`` holds what the rows do not: model, method, mode, device, precision, target_layer,
        thresholds, seconds, images_per_second, resumed. ``pool``: where the grids are drawn (one of the
        run's end, shared with the report's thumbnails); by default a pool of their own."""
        out, tally = self.out, self.tally
        if not self._complete:
            write_csv_stream(out / MANIFEST_CSV, lambda: read_row_columns(out))
        write_csv(out / ERRORS_CSV, [e.to_dict() for e in errors], ERROR_COLUMNS)
        grids = {}
        if self.grid_tiles is not None:
            kept = [AuditRow.from_dict(row) for case in CASES for row in self.gallery.members(case)]
            grids = write_grids(out, kept, self.grid_tiles,
                                totals={c: (self.gallery.counts[c], tally.cases[c]) for c in CASES}, pool=pool)
        summary = tally.summary(out, len(errors), grids, run)
        atomic_write_text(out / SUMMARY, json.dumps(summary.to_dict(), indent=2) + "\n")
        write_csv(out / CONFUSION, [{"ground_truth": t, "predicted": p, "images": n}
                                    for t, row in summary.confusion.items() for p, n in row.items()],
                  ["ground_truth", "predicted", "images"])
        return summary


class CsvStream:
    """A CSV written a row at a time into a hidden partial file beside ``path`` (``.manifest.csv.partial``) and
    put in place in one step (:meth:`close`), or removed (:meth:`abandon`). Its columns are the first row's:
    the common case (every row has them) is one C-level pick per row. The partial file is made at the first
    row written.

    ``resumable`` (a run's stream): a stop or a failure leaves the partial file, and :meth:`record` says how
    much of it is whole, any time. The next run's stream (:meth:`resuming`), given those rows first, passes
    over them and continues the file; likewise it keeps a finished file that holds them (copied and extended
    only when more rows come)."""

    def __init__(self, path: Path, *, resumable: bool = False) -> None:
        self.path, self.resumable = path, resumable
        # a run's partial file outlives it; another stream's is a temp file (a killed one's removed next run)
        self.partial = path.with_name(f".{path.name}.partial") if resumable else temp_path(path)
        self.rows = self.kept = 0  # rows given; of them, rows the files already held (passed over)
        self._kept_in: Path | None = None  # where those are: the finished file or the partial one
        self._file: Any = None
        self._writer: Any = None
        self._closed = False
        self._whole: tuple[int, int] | None = None  # (bytes, rows) of the partial file when last flushed
        self.columns: list[str] | None = None
        self._seen: dict[str, None] = {}
        self._values: Callable[[dict[str, Any]], Any] = lambda row: ()  # the first row's columns, picked

    @classmethod
    def resuming(cls, path: Path, earlier: Any) -> "CsvStream":
        """A run's stream that keeps what :meth:`record` described (``earlier``) if its file is still as it was
        then: a finished file of the same length and modification time, or a partial file at least as long
        (cut back to the rows it recorded). Otherwise a new one."""
        stream = cls(path, resumable=True)
        try:
            if earlier and "partial" in earlier:
                part = earlier["partial"]
                if stream.partial.stat().st_size >= part["bytes"] and part["rows"] > 0:
                    stream._keep(stream.partial, int(part["rows"]), part["columns"])
                    os.truncate(stream.partial, part["bytes"])  # what a killed run wrote after its record
            elif earlier and "finished" in earlier:
                done, status = earlier["finished"], os.stat(path)
                if (status.st_size, status.st_mtime_ns) == (done["bytes"], done["mtime_ns"]) and done["rows"] > 0:
                    stream._keep(path, int(done["rows"]), done["columns"])
        except (OSError, KeyError, TypeError, ValueError):
            return cls(path, resumable=True)
        return stream

    def _keep(self, where: Path, rows: int, columns: Any) -> None:
        self._use_columns([str(c) for c in columns])
        self.kept, self._kept_in = rows, where

    def _use_columns(self, columns: list[str]) -> None:
        self.columns = columns
        self._seen = dict.fromkeys(columns)
        self._values = ColumnPick(tuple(columns))

    def _open(self) -> None:
        if self._kept_in == self.partial:  # continued where the last run's rows end
            handle = open(self.partial, "a", encoding="utf-8", newline="")
        else:
            handle = open(self.partial, "w", encoding="utf-8", newline="")
            if self._kept_in is not None:  # the finished file's rows, copied as they are
                with open(self._kept_in, encoding="utf-8", newline="") as kept:
                    shutil.copyfileobj(kept, handle)
        self._file, self._writer = handle, csv.writer(handle, lineterminator="\n")

    def add(self, row: dict[str, Any]) -> None:
        self.rows += 1
        if self.rows <= self.kept:
            return
        if self._file is None:
            self._open()
        if self.columns is None:
            self._use_columns(list(row))
            self._writer.writerow(self.columns)
        if row.keys() == self._seen.keys():
            self._writer.writerow(self._values(row))
        else:
            self._seen.update(dict.fromkeys(row))
            self._writer.writerow([row.get(k) for k in self.columns])

    def close(self) -> bool:
        """Put the file in place; False when some row had columns the first one lacked, or fewer rows came than
        the files held (write it again)."""
        if self.rows < self.kept:  # the run has fewer rows than the files (the end writes it again)
            self.abandon()
            if self._kept_in == self.partial:
                self.partial.unlink(missing_ok=True)
            return False
        if self._kept_in != self.path or self._file is not None:  # else the finished file holds every row
            if self._file is None:
                self._open()
                if self.columns is None:
                    self._writer.writerow([])
            self._file.close()
            os.replace(self.partial, self.path)
        self._file, self._closed = None, True
        return self.columns is None or len(self._seen) == len(self.columns)

    def record(self) -> dict[str, Any] | None:
        """What :meth:`resuming` needs to keep the rows given so far (None: nothing to keep)."""
        if self._closed:
            return self._finished(self.rows)
        if len(self._seen) != len(self.columns or ()):  # a row had more columns: the end writes it again
            return None
        self._flush()
        if self._whole is not None:
            return {"partial": {"bytes": self._whole[0], "rows": self._whole[1], "columns": self.columns}}
        if self._kept_in == self.partial:
            return {"partial": {"bytes": self.partial.stat().st_size, "rows": self.kept, "columns": self.columns}}
        if self._kept_in == self.path:
            return self._finished(self.kept)
        return None

    def _finished(self, rows: int) -> dict[str, Any]:
        status = os.stat(self.path)
        return {"finished": {"bytes": status.st_size, "mtime_ns": status.st_mtime_ns, "rows": rows,
                             "columns": self.columns or []}}

    def _flush(self) -> None:
        """Make what is written whole on disk, and note how much it is (bytes, rows)."""
        if self._file is not None:
            self._file.flush()
            self._whole = os.fstat(self._file.fileno()).st_size, self.rows

    def abandon(self) -> None:
        """Stop writing: a resumable stream leaves its partial file whole to the last row (:meth:`record`),
        another removes it."""
        if self._file is None:
            return
        self._flush()
        self._file.close()
        self._file = None
        if not self.resumable:
            self.partial.unlink(missing_ok=True)

    @property
    def every_column(self) -> list[str]:
        return list(self._seen)


def write_csv_stream(path: Path, rows: Callable[[], Iterable[Any]], each: Callable[[Any], None] | None = None,
                     as_columns: Callable[[Any], dict[str, Any]] | None = None) -> None:
    """A CSV of ``rows()`` (dicts, or what ``as_columns`` makes of each) written as they come and put in place in
    one step, ``each`` called on every row of that first pass. Its columns are the first row's; when a later row
    has others (a folder resumed from an earlier version), the file is written once more with every column in
    the order they first appeared, as :func:`write_csv`."""
    columns_of = as_columns or (lambda row: row)
    stream = CsvStream(path)
    try:
        for row in rows():
            stream.add(columns_of(row))
            if each is not None:
                each(row)
    except BaseException:
        stream.abandon()
        raise
    if not stream.close():
        with atomic_text_file(path) as handle:
            writer = csv.writer(handle, lineterminator="\n")
            columns = stream.every_column
            writer.writerow(columns)
            writer.writerows([data.get(k) for k in columns] for data in map(columns_of, rows()))


class _Tally:
    """The audit's counts, one image (its first row) at a time."""

    def __init__(self) -> None:
        self.cases: Counter[str] = Counter()
        self.per_class: dict[str, Counter] = defaultdict(Counter)
        self.confusion: dict[str, Counter] = defaultdict(Counter)
        self.labelled = self.correct = self.in_top_k = 0

    def add(self, row: dict[str, Any]) -> None:
        if row["target_rank"] != 0:
            return
        truth = row["ground_truth_class"] or "(no ground truth)"
        self.cases[row["case"]] += 1
        counts = self.per_class[truth]
        counts["images"] += 1
        counts[row["case"]] += 1
        if row["correct"]:
            counts["correct"] += 1
        self.confusion[truth][row["top1_class"]] += 1
        if row["ground_truth_index"] is not None:
            self.labelled += 1
            self.correct += bool(row["correct"])
            self.in_top_k += bool(row["in_top_k"])

    def summary(self, out: Path, errors: int, grids: dict[str, str], run: dict[str, Any]) -> AuditSummary:
        share = lambda count: round(count / self.labelled, 4) if self.labelled else None  # noqa: E731
        return AuditSummary(
            out_dir=out, images=sum(self.cases.values()), errors=errors,
            cases={c: self.cases[c] for c in CASES if self.cases[c]},
            per_class={k: dict(v) for k, v in sorted(self.per_class.items())},
            confusion={k: dict(v.most_common()) for k, v in sorted(self.confusion.items())},
            top1_accuracy=share(self.correct), top5_accuracy=share(self.in_top_k), grids=grids, **run)


def write_csv(path: Path, rows: list[dict[str, Any]], columns: Sequence[str] | None = None) -> None:
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def write_grids(out: Path, rows: Sequence[Any], tiles_per_grid: int, *, cases: Sequence[str] = CASES,
                order: Callable[[Any], Any] | None = None, title: Callable[[Any], str] | None = None,
                totals: dict[str, tuple[int, int]] | None = None, pool: Executor | None = None) -> dict[str, str]:
    """One picture grid per case of the rows' overlays, in ``order`` (default: most confident images first,
    an image's maps together), titled by ``title``; returns case -> relative path. Detection audits pass
    their own cases, order and titles. ``totals``: each case's (maps, images) when ``rows`` are only the ones
    to show (chosen while streaming); by default counted from ``rows``. The cases are drawn on ``pool``
    (decoding, drawing and encoding release the GIL), by default one of their own with a thread per core."""
    order = order or (lambda r: (-r.top1.probability, r.key, r.target_rank))
    title = title or tile_title
    (out / GRIDS).mkdir(exist_ok=True)
    by_case: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        if row.overlay_path is not None:
            by_case[row.case].append(row)
    def draw(case: str) -> str | None:
        """The case's grid written."""
        path = out / GRIDS / f"{case}{GRID_SUFFIX}"
        for former in FORMER_GRID_SUFFIXES:  # an earlier version's grid of the case, replaced
            (out / GRIDS / f"{case}{former}").unlink(missing_ok=True)
        if case not in by_case:
            path.unlink(missing_ok=True)
            return None
        chosen = sorted(by_case[case], key=order)[:tiles_per_grid]
        tiles = []
        for row in chosen:  # the grid fits each picture in its cell
            picture = read_bgr_at_least(out / row.overlay_path, CELL, (row.height, row.width))
            if picture is not None:
                tiles.append(Tile(cv2.cvtColor(picture, cv2.COLOR_BGR2RGB), title(row)))
        if not tiles:
            return None
        maps, images = totals[case] if totals is not None else (len(by_case[case]), len({r.key for r in by_case[case]}))
        shown = f"{len(tiles)} of {maps} maps, {images} images"
        atomic_write_bytes(path, grid_jpeg(tiles, f"{case.replace('_', ' ')} ({shown})"))
        return f"{GRIDS}/{case}{GRID_SUFFIX}"

    if pool is None:
        with ThreadPoolExecutor(os.cpu_count() or 1) as own:
            drawn = list(own.map(draw, cases))
    else:
        drawn = list(pool.map(draw, cases))
    return {case: relative for case, relative in zip(cases, drawn) if relative is not None}


def tile_title(row: AuditRow) -> str:
    lines = [row.stem]
    if row.ground_truth_class is not None:
        lines.append(f"gt: {row.ground_truth_class} {row.ground_truth_probability:.2f}")
    lines.append(f"pr: {row.top1.name} {row.top1.probability:.2f}")
    lines.append(f"map: {row.target_class} ({row.target_role.replace('_', ' ')})")
    return "\n".join(lines)
