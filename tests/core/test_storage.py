"""Files a crash never leaves half-written, JSON-lines logs that lose at most a torn last line, one writer
per folder."""

from __future__ import annotations

import json
import multiprocessing

import pytest

from ov_explain.core.storage import (
    LOCK_FILE,
    TEMP_SUFFIX,
    FolderBusyError,
    FolderLock,
    JsonlLog,
    OutputFolderError,
    atomic_write_text,
    ensure_writable_folder,
    read_jsonl,
    remove_temp_files,
    write_jsonl,
)


def test_atomic_writes_replace_whole_files_and_leave_no_temp_file(tmp_path):
    path = tmp_path / "a.json"
    atomic_write_text(path, "first\n")
    atomic_write_text(path, "second\n")
    assert path.read_text() == "second\n" and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / f"x.jpg{TEMP_SUFFIX}").write_bytes(b"half")
    assert remove_temp_files(tmp_path) == 1 and not any((tmp_path / "sub").iterdir())


def test_a_log_reads_back_every_whole_line_and_drops_a_torn_tail(tmp_path):
    path = tmp_path / "rows.jsonl"
    with JsonlLog(path) as log:
        log.append([{"key": "a", "n": 1}, {"key": "b", "text": "é"}])
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"key": "c", "n"')  # a run killed mid-line
    assert [row["key"] for row in read_jsonl(path)] == ["a", "b"]
    write_jsonl(path, read_jsonl(path))
    assert path.read_text(encoding="utf-8").splitlines() == [json.dumps({"key": "a", "n": 1}),
                                                            json.dumps({"key": "b", "text": "é"}, ensure_ascii=False)]
    assert list(read_jsonl(tmp_path / "missing.jsonl")) == []


def test_every_row_a_log_writes_reads_back_the_same_even_where_orjson_refuses_it(tmp_path, caplog):
    """orjson decodes the lines; NaN and infinities (which the standard library writes and orjson refuses) are
    decoded by the standard library instead."""
    rows = [{"key": "plain", "p": 0.25, "ok": True, "none": None, "text": "café ☕", "n": 2**63 - 1},
            {"key": "nan", "p": float("nan"), "q": float("inf"), "r": float("-inf")}]
    path = tmp_path / "rows.jsonl"
    with JsonlLog(path) as log:
        log.append(rows)
    read = list(read_jsonl(path))
    assert [r["key"] for r in read] == ["plain", "nan"] and not caplog.records
    assert read[0] == rows[0] and type(read[0]["n"]) is int
    assert read[1]["p"] != read[1]["p"] and (read[1]["q"], read[1]["r"]) == (float("inf"), float("-inf"))


def test_a_read_stops_at_a_torn_or_unreadable_line_and_says_where(tmp_path, caplog):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"key": "a"}\n{"key": "caf\xe9"}\n{"key": "after"}\n')  # line 2 is not UTF-8
    stopped = []
    assert [r["key"] for r in read_jsonl(path, stopped.append)] == ["a"] and stopped == [2]
    assert "line 2 is not valid JSON; dropping it and what follows" in caplog.text
    path.write_bytes(b'{"key": "a"}\n{"key": "b"')  # torn by a kill
    stopped = []
    assert [r["key"] for r in read_jsonl(path, stopped.append)] == ["a"] and stopped == [2]
    path.write_bytes(b'{"key": "a"}\n')
    stopped = []
    assert [r["key"] for r in read_jsonl(path, stopped.append)] == ["a"] and stopped == []


def _hold(folder, ready, release):
    with FolderLock(folder):
        ready.set()
        release.wait(30)


def test_a_second_writer_is_refused_with_the_holders_pid_and_the_lock_dies_with_its_process(tmp_path):
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(tmp_path, ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(FolderBusyError, match=str(holder.pid)):
            with FolderLock(tmp_path):
                pass
    finally:
        release.set()
        holder.join(30)
    with FolderLock(tmp_path):  # free again once its holder is gone
        assert (tmp_path / LOCK_FILE).exists()


def test_an_unwritable_output_folder_is_one_error_before_any_work(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputFolderError, match="exists and is not a folder"):
        ensure_writable_folder(tmp_path / "file")
    ensure_writable_folder(tmp_path / "new" / "deep")
    assert (tmp_path / "new" / "deep").is_dir() and not any((tmp_path / "new" / "deep").iterdir())
