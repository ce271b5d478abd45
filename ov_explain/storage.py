"""Writing files so that a crash never leaves half of one: temp file in the same folder, then rename."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

logger = logging.getLogger(__name__)

TEMP_SUFFIX = ".ov-explain-tmp"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one step: readers see the old file or the new one, never a part.

    Safe against the process being killed; not a guarantee against power loss (no fsync: audits
    write thousands of files and would pay for it on every one).
    """
    temp = path.with_name(f".{path.name}.{os.getpid()}{TEMP_SUFFIX}")
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


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
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        if text:
            self._handle.write(text)
            self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "JsonlLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of a JSON-lines file; stops at the first torn or invalid line (logged)."""
    if not path.exists():
        return
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.endswith("\n"):
                logger.warning("%s: line %d was cut off by an interrupted run; dropping it", path, number)
                return
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                logger.warning("%s: line %d is not valid JSON; dropping it and what follows", path, number)
                return
            yield row


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Rewrite a JSON-lines file atomically."""
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
