"""The one engine for "read a dataset, run per-image work, write rows": audits and drift audits share it.

Images go to worker threads (``work(sample)`` returns the image's rows or an error row); rows are
appended in dataset order after the image's files are in place, which is what makes a re-run resume
exactly where a killed one stopped. The engine also owns the output folder's contract: one writer
at a time, a different run refused, restart and recovery removing only files the run wrote.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import threading
import time
from array import array
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Container, ContextManager, Iterable, Iterator, Protocol, Sequence

import numpy as np

from ov_explain.core.errors import OvExplainError
from ov_explain.core.storage import (
    LOCK_FILE,
    FolderLock,
    JsonlLog,
    atomic_write_text,
    ensure_writable_folder,
    json_line,
    read_json_line,
    read_jsonl,
    remove_temp_files,
    write_jsonl,
)
from ov_explain.render.grids import FORMER_GRID_SUFFIXES, GRID_SUFFIX
from ov_explain.runs.dataset import Sample

logger = logging.getLogger(__name__)

#: What a run's rows file held when the run ended (its length, lines and SHA-256, and what the sink built from
#: them): a resume that finds the file still begins with exactly those bytes trusts those rows as checked.
CHECKED_FILE = ".ov-explain-checked.json"
#: How often a run records its rows file as it appends (a killed run's resume checks the rows after that).
CHECKPOINT_SECONDS = 10.0

#: Progress callback: (images finished in this run, images to do in this run).
Progress = Callable[[int, int], None]


class FolderError(OvExplainError):
    """The run cannot start in this folder (it holds a different run, or someone else's files)."""


class RunInterrupted(Exception):
    """The run stopped when asked (``stop`` was set); ``saved`` of ``total`` images are recorded and a
    re-run of the same command resumes."""

    def __init__(self, out_dir: Path, saved: int, total: int) -> None:
        super().__init__(f"{saved} of {total} images saved in {out_dir}")
        self.out_dir, self.saved, self.total = out_dir, saved, total


class Row(Protocol):
    """What the engine needs of a row type."""

    key: str
    targets_total: int


@dataclass(frozen=True)
class FolderKind:
    """What one kind of run writes in its folder, so the engine knows what is its own."""

    noun: str  # "an audit", "a drift audit": for messages
    settings_file: str
    rows_file: str
    errors_file: str
    top_files: tuple[str, ...]
    cases: tuple[str, ...]  # the case folders, of per-row files
    picture_folders: tuple[str, ...]  # sub-folders of one picture per case ({case}.jpg, {case}.png before 0.3)
    file_extensions: tuple[str, ...]
    path_columns: tuple[str, ...]  # row columns that name the row's files
    stem_of: Callable[[str], str]  # a structured file name -> its dataset stem; ValueError if not one
    parse_row: Callable[[Any], Row]  # ValueError / TypeError for a damaged row
    error_type: type
    #: A settings file of an earlier version in today's names (it is rewritten so when the run resumes).
    upgrade_settings: Callable[[dict[str, Any]], dict[str, Any]] = lambda settings: settings


@dataclass(frozen=True)
class RunStats:
    ran: int
    resumed: int
    seconds: float


@dataclass(frozen=True)
class SampleResult:
    """One sample's outcome, ready to append: its rows as JSON lines, or its error row as one line.

    Made where the work ran (a worker thread, or a Ray actor on another machine), so the one process
    that appends only writes text, in dataset order.
    """

    key: str
    rows: str = ""  # JSON lines for the rows file (each ending in a newline)
    error: str = ""  # one JSON line for the errors file
    message: str = ""  # the error's one line, for the log
    columns: list[dict[str, Any]] | None = None  # the rows as written, where the work ran in this process

    def row_columns(self) -> list[dict[str, Any]]:
        """The rows as dicts: as the work made them, or (from an actor) read back from their text."""
        return self.columns if self.columns is not None else [read_json_line(line) for line in self.rows.splitlines()]


def sample_result(work: Callable[[Sample], Any], sample: Sample, kind: FolderKind) -> SampleResult:
    """``work``'s rows for one sample, or its error row (``kind.error_type.from_exception``): one bad image
    must not stop the run. Every engine runs a sample through this."""
    try:
        rows = work(sample)
    except Exception as exc:
        error = kind.error_type.from_exception(sample.key, str(sample.path), sample.label, exc)
        return SampleResult(sample.key, error=json_line(error.to_dict()), message=error.error)
    columns = [row.to_dict() for row in rows]
    return SampleResult(sample.key, rows="".join(json_line(c) for c in columns), columns=columns)


class RowEngine(Protocol):
    """Runs the per-sample work on the samples to do and yields their results **in dataset order**;
    ``close`` releases what it holds (threads, a cluster connection), whether or not it ran."""

    def results(self, todo: list[Sample], kind: FolderKind, stopping: Callable[[], bool]) -> Iterator[SampleResult]:
        ...

    def close(self) -> None:
        ...


class RowSink(Protocol):
    """What is built from the rows while they are appended (an audit's summary and CSV).

    ``building(earlier)`` is entered before the folder is recovered and ended when the run's rows are all in;
    ``earlier`` is what :meth:`record` returned when the rows file last ended where it still begins (the rows
    given first are those rows, in order), or None. ``add_rows`` sees the folder's rows as recovery reads them
    (the resumed ones: the rows file is read once for both), then each new image's rows (as their columns)
    once they are appended. ``forget`` drops every row given so far: recovery found rows to drop (a killed
    run's) and gives the kept ones again. ``record``: what the next run needs to keep what the sink has made of
    the rows given so far (JSON, or None), asked as the run goes (the rows file is recorded every
    :data:`CHECKPOINT_SECONDS`) and once ``building`` has ended, well or not."""

    def building(self, earlier: dict[str, Any] | None = None) -> ContextManager[Any]:
        ...

    def add_rows(self, rows: list[dict[str, Any]]) -> None:
        ...

    def forget(self) -> None:
        ...

    def record(self) -> dict[str, Any] | None:
        ...


class ThreadEngine:
    """The local engine: ``work`` on ``threads`` worker threads of this process, a bounded window ahead.

    On ``stopping``, images not started are dropped and those in flight finish and are yielded, so every
    image whose files are in place gets its rows and a resume redoes none of them.
    """

    def __init__(self, work: Callable[[Sample], Any], threads: int) -> None:
        self.work, self.threads = work, max(1, threads)

    def close(self) -> None:
        """Nothing outlives :meth:`results` here."""

    def results(self, todo: list[Sample], kind: FolderKind, stopping: Callable[[], bool]) -> Iterator[SampleResult]:
        with ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="ov-explain-rows") as pool:
            window: deque[Future] = deque()
            try:
                for sample in todo:
                    if stopping():
                        break
                    window.append(pool.submit(sample_result, self.work, sample, kind))
                    while len(window) >= 2 * self.threads and not stopping():
                        yield window.popleft().result()
                if stopping():
                    window = deque(f for f in window if not f.cancel())
                while window:
                    yield window.popleft().result()
            finally:
                for future in window:
                    future.cancel()


def run_rows(samples: Sequence[Sample], engine: RowEngine, out: Path, kind: FolderKind, settings: dict[str, Any],
             stems: set[str], *, restart: bool = False, progress: Progress | None = None,
             stop: threading.Event | None = None, sink: RowSink | None = None) -> RunStats:
    """Run the engine's work on every sample not already done in ``out`` and record the rows.

    Whatever the engine (threads here, or actors on a cluster), this process alone appends the rows, in
    dataset order, after each image's files are in place: that is what makes a killed run resume exactly.
    ``sink`` is fed every row of the folder, the resumed ones and then each new image's as it is appended.
    """
    try:
        ensure_writable_folder(out)
        with FolderLock(out, kind.noun.split()[-1]):
            prepare_folder(out, kind, settings, restart, stems)
            ledger = open_ledger(out, kind, sink)
            try:
                with sink.building(ledger.earlier) if sink is not None else contextlib.nullcontext():
                    done = recover(out, kind, {s.key for s in samples}, stems, sink, ledger)
                    todo = [s for s in samples if s.key not in done]
                    logger.info("%s: %d images, %d already done, %d to do", out, len(samples),
                                len(samples) - len(todo), len(todo))
                    started = time.perf_counter()
                    finished = _record(todo, engine, out, kind, progress, stop, len(samples) - len(todo), sink,
                                       ledger)
            except RunInterrupted:
                ledger.write(out)  # every row appended is whole, and what the sink wrote of them
                raise
            finally:
                remove_temp_files(out)  # a worker killed mid-write (a Ray actor) leaves its temp file
            ledger.write(out)
            return RunStats(finished, len(samples) - len(todo), time.perf_counter() - started)
    finally:
        engine.close()


def _record(todo: list[Sample], engine: RowEngine, out: Path, kind: FolderKind, progress: Progress | None,
            stop: threading.Event | None, resumed: int, sink: RowSink | None = None,
            ledger: "RowsLedger | None" = None) -> int:
    """Append each result as it comes (in dataset order), ``ledger`` following the rows file (and recording it
    every :data:`CHECKPOINT_SECONDS`, so that a killed run's resume checks only the rows after that); a stop
    ends with :class:`RunInterrupted`."""
    finished = 0
    if progress is not None:
        progress(0, len(todo))  # the total and ETA show from the start
    stopping = (lambda: stop.is_set()) if stop is not None else (lambda: False)
    with JsonlLog(out / kind.rows_file) as rows, JsonlLog(out / kind.errors_file) as errors:
        for result in engine.results(todo, kind, stopping):
            if result.error:
                logger.error("%s", result.message)
                errors.append_text(result.error)
            else:
                rows.append_text(result.rows)
                if sink is not None:
                    sink.add_rows(result.row_columns())
                if ledger is not None:
                    ledger.appended(out, result.rows)
            finished += 1
            if progress is not None:
                progress(finished, len(todo))
    if stopping() and finished < len(todo):
        raise RunInterrupted(out, resumed + finished, resumed + len(todo))
    return finished


# ----- the folder contract ----------------------------------------------------------------------------
def prepare_folder(out: Path, kind: FolderKind, settings: dict[str, Any], restart: bool, stems: set[str]) -> None:
    """Refuse a folder of another run or of someone else's files; clear ours on restart; write settings."""
    settings_path = out / kind.settings_file
    if settings_path.exists():
        try:
            stored = json.loads(settings_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            stored = {}
        previous = kind.upgrade_settings(stored) if isinstance(stored, dict) else {}
        changed = sorted(k for k in set(previous) | set(settings)
                         if k != "model" and previous.get(k) != settings.get(k))
        if changed and not restart:
            raise FolderError(f"{out}: holds {kind.noun} with different settings ({', '.join(changed)}); "
                              "use another output folder, or restart it to start over (--restart)")
        if restart:
            _refuse_other_task(out, kind, previous, settings)
            clear(out, kind, stems)
        elif previous != stored:
            atomic_write_text(settings_path, json.dumps(previous, indent=2) + "\n")
    elif any(p.name != LOCK_FILE for p in out.iterdir()):
        # --restart replaces a run; it never empties a folder of someone else's files.
        raise FolderError(f"{out}: folder is not empty and holds no {kind.noun.split(' ', 1)[1]}; choose an "
                          "empty or new folder")
    if not settings_path.exists():
        atomic_write_text(settings_path, json.dumps(settings, indent=2) + "\n")


def _refuse_other_task(out: Path, kind: FolderKind, previous: dict[str, Any], settings: dict[str, Any]) -> None:
    """A restart clears by this kind's case folders and files; the other task's run would be left half
    removed (its case folders, its tables), so a restart across tasks is refused instead."""
    before, now = previous.get("task", "classification"), settings.get("task", "classification")
    if before != now:
        raise FolderError(f"{out}: holds a {before} run, and restart only replaces a {now} run; "
                          "delete that run or choose another output folder")


def _is_ours(kind: FolderKind, case: str, path: Path, listed: Container[str], stems: set[str]) -> bool:
    """Listed in the rows, or (a killed run's file whose row never made it) a structured name of one of
    the dataset's stems. Anything else is the user's and is left alone."""
    if f"{case}/{path.name}" in listed:
        return True
    if not path.is_file() or not path.name.endswith(kind.file_extensions):
        return False
    try:
        return kind.stem_of(path.name) in stems
    except ValueError:
        return False


def _remove_ours(out: Path, kind: FolderKind, keep: Container[str], listed: set[str],
                 stems: set[str]) -> tuple[int, list[str]]:
    """Delete the run's files in case folders except ``keep``; returns (removed, foreign files)."""
    removed, foreign = 0, []
    for case in kind.cases:
        folder = out / case
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            relative = f"{case}/{path.name}"
            if relative in keep:
                continue
            if _is_ours(kind, case, path, listed, stems):
                path.unlink()
                removed += 1
            else:
                foreign.append(relative)
    return removed, foreign


def listed_files(kind: FolderKind, rows: Iterable[Any]) -> set[str]:
    """The files (relative paths) that rows name (read as dicts: a damaged row's files are still ours)."""
    return {row[k] for row in rows if isinstance(row, dict) for k in kind.path_columns if isinstance(row.get(k), str)}


def _mention_foreign(out: Path, kind: FolderKind, foreign: list[str]) -> None:
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        logger.warning("%s: left %d file(s) that are not the %s's alone: %s", out, len(foreign),
                       kind.noun.split(" ", 1)[1], shown)


def clear(out: Path, kind: FolderKind, stems: set[str]) -> None:
    """Remove what the run in ``out`` wrote, and only that: the folder may hold the user's files."""
    remove_temp_files(out)
    _, foreign = _remove_ours(out, kind, set(), listed_files(kind, read_jsonl(out / kind.rows_file)), stems)
    for pictures in kind.picture_folders:
        for case, suffix in itertools.product(kind.cases, (GRID_SUFFIX, *FORMER_GRID_SUFFIXES)):
            (out / pictures / f"{case}{suffix}").unlink(missing_ok=True)
        if (out / pictures).is_dir():
            foreign += sorted(f"{pictures}/{p.name}" for p in (out / pictures).iterdir())
    for folder in [out / c for c in kind.cases] + [out / p for p in kind.picture_folders]:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    for name in (*kind.top_files, CHECKED_FILE):
        (out / name).unlink(missing_ok=True)
    _mention_foreign(out, kind, foreign)
    logger.info("%s: previous %s removed (restart)", out, kind.noun.split(" ", 1)[1])


def recover(out: Path, kind: FolderKind, selected: set[str], stems: set[str], sink: RowSink | None = None,
            ledger: "RowsLedger | None" = None) -> set[str]:
    """Keys already done; repairs what a killed run left: torn rows, half-written files, temp files.

    Errors of selected images are dropped so they are tried again. Files in the folder that the
    run did not write are left alone. The rows are streamed, not held: one pass counts each image's rows,
    hashes the files they name and gives each row that reads to ``sink``; a second, only when some rows are
    dropped (an image's rows half recorded, a damaged row, a torn or unreadable line and what follows it),
    rewrites the file without them (and gives ``sink`` the kept ones again). Memory holds the keys (as the
    dataset's listing does) and 16 bytes per named file. The first ``ledger.trusted_lines`` rows (an earlier
    run's, unchanged since it checked them) are counted without being checked again; ``ledger.rows`` follows
    a rewrite.
    """
    removed = remove_temp_files(out)
    rows_path, errors_path = out / kind.rows_file, out / kind.errors_file
    tally, unreadable = _RowTally(kind), []  # unreadable: the line a read stopped at (torn, not JSON)
    trusted = ledger.trusted_lines if ledger is not None else 0
    for number, row in enumerate(read_jsonl(rows_path, unreadable.append), 1):
        if tally.add(row, trusted=number <= trusted) and sink is not None:
            sink.add_rows([row])
    complete = tally.complete()
    dropped: set[str] = set()  # the files named by the rows dropped (a damaged row's files are ours too)
    if rows_path.exists() and (tally.kept_lines != tally.lines or unreadable):
        if sink is not None:
            sink.forget()

        def kept() -> Iterator[dict[str, Any]]:
            for number, row in enumerate(read_jsonl(rows_path), 1):
                if (row["key"] if number <= trusted else tally.key_of(row)) in complete:
                    if sink is not None:
                        sink.add_rows([row])
                    yield row
                else:
                    dropped.update(listed_files(kind, [row]))

        write_jsonl(rows_path, kept())
        logger.warning("%s: repaired the rows of an interrupted run", rows_path)
        if ledger is not None:
            ledger.rows = RowsDigest.of_file(rows_path)
    orphans, foreign = _remove_ours(out, kind, tally.kept_files(), dropped, stems)
    _mention_foreign(out, kind, foreign)
    unreadable_errors: list[int] = []
    errors = list(read_jsonl(errors_path, unreadable_errors.append))
    kept_errors = [e for e in errors if isinstance(e, dict) and e.get("key") not in selected
                   and e.get("key") not in complete]
    if len(kept_errors) != len(errors) or unreadable_errors:
        write_jsonl(errors_path, kept_errors)
    if removed or orphans:
        logger.info("%s: removed %d temp and %d unlisted files of an interrupted run", out, removed, orphans)
    return complete


class _RowTally:
    """Each image's rows counted as a rows file streams by (an image is complete when it has its
    ``targets_total`` rows, no more, no fewer), and the files its rows name as 64-bit hashes beside its number."""

    def __init__(self, kind: FolderKind) -> None:
        self.kind = kind
        self.images: dict[str, list[int]] = {}  # key -> [number, rows expected, rows seen]
        self._hashes, self._owners = array("q"), array("q")
        self.lines = 0

    def parsed(self, row: Any) -> Row | None:
        """The row read, or None for a damaged row (dropped, and its image redone)."""
        try:
            return self.kind.parse_row(row)
        except (ValueError, TypeError):
            return None

    def key_of(self, row: Any) -> str | None:
        parsed = self.parsed(row)
        return None if parsed is None else parsed.key

    def add(self, row: Any, trusted: bool = False) -> bool:
        """Count the row; False for a damaged one. ``trusted``: as a run of this version left it (only its key
        and row count are read)."""
        self.lines += 1
        if trusted:
            key, expected = row["key"], row["targets_total"]
        else:
            parsed = self.parsed(row)
            if parsed is None:
                return False
            key, expected = parsed.key, parsed.targets_total
        image = self.images.get(key)
        if image is None:
            image = self.images[key] = [len(self.images), expected, 0]
        image[2] += 1
        for name in listed_files(self.kind, [row]):
            self._hashes.append(hash(name))
            self._owners.append(image[0])
        return True

    def complete(self) -> set[str]:
        return {key for key, (_, expected, seen) in self.images.items() if seen == expected}

    @property
    def kept_lines(self) -> int:
        return sum(seen for _, expected, seen in self.images.values() if seen == expected)

    def kept_files(self) -> "FileHashes":
        done = np.zeros(len(self.images), bool)
        for number, expected, seen in self.images.values():
            done[number] = seen == expected
        hashes = np.frombuffer(self._hashes, np.int64) if len(self._hashes) else np.zeros(0, np.int64)
        owners = np.frombuffer(self._owners, np.int64) if len(self._owners) else np.zeros(0, np.int64)
        return FileHashes(hashes[done[owners]])


class FileHashes:
    """A set of relative file names held as their sorted 64-bit hashes (8 bytes a name where a set of strings
    takes ~120). Only ever asked which files to keep: a collision can keep a stray file, never remove one."""

    def __init__(self, hashes: np.ndarray) -> None:
        self._sorted = np.unique(hashes)

    def __contains__(self, name: object) -> bool:
        value = hash(name)
        at = int(np.searchsorted(self._sorted, value))
        return at < len(self._sorted) and int(self._sorted[at]) == value


class RowsDigest:
    """A rows file's length, lines and SHA-256, kept up as lines are appended (what :data:`CHECKED_FILE` records)."""

    def __init__(self) -> None:
        self._hash, self.bytes, self.lines = hashlib.sha256(), 0, 0
        self.at_limit: tuple[int, int, str] | None = None

    def add(self, data: bytes) -> None:
        self._hash.update(data)
        self.bytes += len(data)
        self.lines += data.count(b"\n")

    def add_from(self, handle: BinaryIO, limit: int | None = None) -> None:
        """The next ``limit`` bytes of ``handle`` (all that is left: None), read in blocks."""
        while limit is None or self.bytes < limit:
            block = handle.read(1 << 20 if limit is None else min(1 << 20, limit - self.bytes))
            if not block:
                return
            self.add(block)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    @classmethod
    def of_file(cls, path: Path, limit: int | None = None) -> "RowsDigest":
        """The whole file's digest, in one read; ``limit``: also note (bytes, lines, SHA-256) of its first
        ``limit`` bytes, as :attr:`at_limit`."""
        digest = cls()
        if path.exists():
            with open(path, "rb") as handle:
                if limit is not None:
                    digest.add_from(handle, limit)
                    digest.at_limit = (digest.bytes, digest.lines, digest.sha256)
                digest.add_from(handle)
        return digest


@dataclass
class RowsLedger:
    """What a run knows of its rows file: how many of its first lines an earlier run checked (the file still
    begins with the bytes that run recorded in :data:`CHECKED_FILE`), what the sink recorded with them, and
    the digest of the whole file, kept up as the run appends and recorded as it goes and when it ends."""

    kind: FolderKind
    rows: RowsDigest
    sink: RowSink | None = None
    trusted_lines: int = 0
    earlier: dict[str, Any] | None = None  # what the sink recorded with those lines
    _written: float = field(default_factory=time.monotonic)

    def appended(self, out: Path, text: str) -> None:
        """Lines the run appended (whole ones); recorded when the last record is old enough."""
        self.rows.add(text.encode("utf-8"))
        if time.monotonic() - self._written >= CHECKPOINT_SECONDS:
            self.write(out)

    def write(self, out: Path) -> None:
        """Record the rows file as it is, and what the sink has made of its rows (:meth:`RowSink.record`)."""
        record = {"version": _version(), "rows_file": self.kind.rows_file, "bytes": self.rows.bytes,
                  "lines": self.rows.lines, "sha256": self.rows.sha256,
                  "sink": self.sink.record() if self.sink is not None else None}
        atomic_write_text(out / CHECKED_FILE, json.dumps(record) + "\n")
        self._written = time.monotonic()


def open_ledger(out: Path, kind: FolderKind, sink: RowSink | None = None) -> RowsLedger:
    """The ledger of ``out``'s rows file: one read of its bytes, which says whether it still begins with what
    the last run to end recorded (a run killed later may have appended to it, or someone edited it)."""
    rows_path = out / kind.rows_file
    record = _read_checked(out / CHECKED_FILE, kind)
    if record is None or not rows_path.exists():
        return RowsLedger(kind, RowsDigest.of_file(rows_path), sink)
    digest = RowsDigest.of_file(rows_path, record["bytes"])
    if digest.at_limit != (record["bytes"], record["lines"], record["sha256"]):
        logger.info("%s: not as the last run left it; every row is checked", rows_path)
        return RowsLedger(kind, digest, sink)
    return RowsLedger(kind, digest, sink, record["lines"], record["sink"])


def _read_checked(path: Path, kind: FolderKind) -> dict[str, Any] | None:
    """The record :meth:`RowsLedger.write` left, or None (none, unreadable, not of this kind's rows, or of
    another version: its checks of a row may differ from this one's)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    fields = {"rows_file": str, "bytes": int, "lines": int, "sha256": str}
    if not isinstance(record, dict) or record.get("version") != _version() \
            or any(not isinstance(record.get(k), t) for k, t in fields.items()) \
            or record["rows_file"] != kind.rows_file or not isinstance(record.get("sink"), (dict, type(None))):
        return None
    return record


def _version() -> str:
    """This package's version (imported when asked: the package imports this module)."""
    from ov_explain import __version__

    return __version__
