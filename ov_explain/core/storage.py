"""Writing files so that a crash never leaves half of one: temp file in the same folder, then rename."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TextIO

import orjson

from ov_explain.core.errors import OvExplainError

logger = logging.getLogger(__name__)

TEMP_SUFFIX = ".ov-explain-tmp"
LOCK_FILE = ".ov-explain.lock"


class FolderBusyError(OvExplainError):
    """Another run holds the output folder's lock."""


class OutputFolderError(OvExplainError):
    """An output folder cannot be created or written (read-only, immutable, a file, no permission)."""


def ensure_writable_folder(folder: Path) -> None:
    """Create ``folder`` if needed and prove a file can be written in it, before any work is done."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"{folder}: exists and is not a folder")
    probe = folder / f".write-check.{os.getpid()}{TEMP_SUFFIX}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputFolderError(f"{folder}: cannot write there ({exc.strerror or exc})") from None


class FolderLock:
    """An exclusive lock on an output folder for one run: a second writer is refused, not interleaved.

    ``flock`` locks die with their process, so a lock file left by a killed run is no obstacle; the
    file holds the holder's PID so the refusal can name it. The file stays (removing it would let a
    third run lock a new file while the second still waits on the old one).
    """

    def __init__(self, folder: Path, what: str = "audit") -> None:
        self.folder, self.what = Path(folder), what
        self._handle: Any = None

    def __enter__(self) -> "FolderLock":
        path = self.folder / LOCK_FILE
        handle = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN, errno.EWOULDBLOCK):
                handle.close()
                raise
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise FolderBusyError(f"{self.folder}: another ov-explain {self.what} (PID {holder}) is writing "
                                  "there; wait for it to finish or choose another output folder") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.close()  # closing releases the lock
            self._handle = None


def temp_path(path: Path) -> Path:
    """Where ``path`` is written before it is put in place: hidden, this process's, and removed by
    :func:`remove_temp_files` if a killed run left it."""
    return path.with_name(f".{path.name}.{os.getpid()}{TEMP_SUFFIX}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one step: readers see the old file or the new one, never a part.

    Safe against the process being killed; not a guarantee against power loss (no fsync: audits
    write thousands of files and would pay for it on every one).
    """
    temp = temp_path(path)
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_text_file(path: Path) -> Iterator[TextIO]:
    """A text file written as it goes and put in place at the end in one step (as :func:`atomic_write_bytes`):
    for files too large to hold in memory first."""
    temp = temp_path(path)
    try:
        with open(temp, "w", encoding="utf-8", newline="") as handle:
            yield handle
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def remove_temp_files(root: Path) -> int:
    """Delete temp files a killed run left behind; returns how many."""
    removed = 0
    for temp in root.rglob(f"*{TEMP_SUFFIX}"):
        temp.unlink(missing_ok=True)
        removed += 1
    return removed


class JsonlLog:
    """An append-only JSON-lines file where each :meth:`append` is one write of whole lines.

    :func:`read_jsonl` drops a torn last line, so a run killed mid-write loses at most that line.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle = open(path, "a", encoding="utf-8")

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        self.append_text("".join(json_line(row) for row in rows))

    def append_text(self, text: str) -> None:
        """Append whole lines already made by :func:`json_line` (e.g. in a worker process)."""
        if text:
            self._handle.write(text)
            self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "JsonlLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def json_line(row: dict[str, Any]) -> str:
    """One JSON-lines line of ``row`` (the one format every log here writes)."""
    return json.dumps(row, ensure_ascii=False) + "\n"


def read_json_line(line: bytes | str) -> Any:
    """One line :func:`json_line` wrote, decoded by orjson (3x the standard library's speed: a resume reads every
    row of a manifest, the Ray driver every actor's); what orjson refuses and :func:`json_line` writes (NaN,
    infinities) by the standard library. ``ValueError`` if neither reads it. (orjson reads an integer beyond
    64 bits as a float; no row of ours holds one.)"""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line.decode("utf-8") if isinstance(line, bytes) else line)


def read_jsonl(path: Path, stopped: Callable[[int], None] | None = None) -> Iterator[dict[str, Any]]:
    """Rows of a JSON-lines file (:func:`read_json_line`); stops at the first torn or invalid line (logged), and
    calls ``stopped`` with its number (so that a recovery rewrites the file without it and what follows)."""
    if not path.exists():
        return
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.endswith(b"\n"):
                logger.warning("%s: line %d was cut off by an interrupted run; dropping it", path, number)
                if stopped is not None:
                    stopped(number)
                return
            try:
                row = read_json_line(line)
            except ValueError:  # not JSON, or not UTF-8
                logger.warning("%s: line %d is not valid JSON; dropping it and what follows", path, number)
                if stopped is not None:
                    stopped(number)
                return
            yield row


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Rewrite a JSON-lines file atomically, a row at a time (``rows`` may stream from the file itself: the
    old file stays readable until the new one replaces it)."""
    with atomic_text_file(path) as handle:
        for row in rows:
            handle.write(json_line(row))
