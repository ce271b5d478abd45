"""The row engine on its own (no model: the per-sample work is a function here): rows in dataset order
whatever finishes first, a failing sample as its error row, a stop that resumes exactly, another run's
folder refused, restart and recovery that remove only the run's files."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from ov_explain.core.errors import ImageReadError
from ov_explain.runs.audit.folder import ErrorRow
from ov_explain.runs.dataset import Sample
from ov_explain.runs.engine import (
    CHECKED_FILE,
    FolderError,
    FolderKind,
    RunInterrupted,
    ThreadEngine,
    recover,
    run_rows,
)


@dataclass(frozen=True)
class Row:
    key: str
    targets_total: int
    target_rank: int
    file: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Row":
        return cls(**data)


KIND = FolderKind(noun="a test run", settings_file="run.json", rows_file="rows.jsonl", errors_file="errors.jsonl",
                  top_files=("run.json", "rows.jsonl", "errors.jsonl"), cases=("Even", "Odd"), picture_folders=(),
                  file_extensions=(".txt",), path_columns=("file",), stem_of=lambda name: name.split(".")[0],
                  parse_row=Row.from_dict, error_type=ErrorRow,
                  upgrade_settings=lambda s: {("size" if k == "old_size" else k): v for k, v in s.items()})


def samples(count: int) -> list[Sample]:
    return [Sample(Path(f"img{i}.png"), None, f"img{i}") for i in range(count)]


def work_in(out: Path, slow: set[int] = frozenset(), broken: set[int] = frozenset()):
    """Two rows (and two files) per sample; ``slow`` samples finish late, ``broken`` ones raise."""
    def work(sample: Sample) -> list[Row]:
        number = int(sample.key[3:])
        if number in broken:
            raise ImageReadError(f"{sample.path}: cannot decode")
        if number in slow:
            time.sleep(0.2)
        case = "Even" if number % 2 == 0 else "Odd"
        (out / case).mkdir(exist_ok=True)
        rows = []
        for rank in range(2):
            name = f"{case}/{sample.key}.{rank}.txt"
            (out / name).write_text(sample.key)
            rows.append(Row(sample.key, 2, rank, name))
        return rows
    return work


def keys(out: Path) -> list[str]:
    return [json.loads(line)["key"] for line in (out / "rows.jsonl").read_text().splitlines()]


def test_rows_are_appended_in_dataset_order_and_a_failing_sample_is_an_error_row(tmp_path):
    out = tmp_path / "run"
    stats = run_rows(samples(6), ThreadEngine(work_in(out, slow={0, 3}, broken={4}), 3), out, KIND, {"size": 6},
                     {f"img{i}" for i in range(6)})
    assert (stats.ran, stats.resumed) == (6, 0)
    assert keys(out) == [k for k in ("img0", "img1", "img2", "img3", "img5") for _ in range(2)]
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [(e["key"], e["error_type"], e["error"]) for e in errors] == \
        [("img4", "ImageReadError", "img4.png: cannot decode")]
    again = run_rows(samples(6), ThreadEngine(work_in(out), 2), out, KIND, {"size": 6}, set())
    assert (again.ran, again.resumed) == (1, 5)  # the failed image is tried again, the rest resumed
    assert not (out / "errors.jsonl").read_text() and sorted(set(keys(out))) == [f"img{i}" for i in range(6)]


def test_a_stop_records_what_is_in_flight_and_a_rerun_resumes_exactly(tmp_path):
    out, stop = tmp_path / "run", threading.Event()
    with pytest.raises(RunInterrupted) as stopped:
        run_rows(samples(8), ThreadEngine(work_in(out), 1), out, KIND, {"size": 8}, set(),
                 progress=lambda done, total: stop.set() if done >= 3 else None, stop=stop)
    saved = stopped.value.saved
    assert 3 <= saved < 8 and len(set(keys(out))) == saved
    stats = run_rows(samples(8), ThreadEngine(work_in(out), 2), out, KIND, {"size": 8}, set())
    assert (stats.ran, stats.resumed) == (8 - saved, saved) and len(keys(out)) == 16


class RecordingSink:
    """A sink that notes what it is given and when; ``kept`` is what it holds (the rows given since a forget)."""

    def __init__(self, out: Path) -> None:
        self.out, self.events, self.kept = out, [], []
        self.running = False  # the run has started appending (after the recovery)

    @contextlib.contextmanager
    def building(self, earlier=None):
        self.events.append(("start", earlier))
        try:
            yield self
        except BaseException as exc:
            self.events.append(("failed", type(exc).__name__))
            raise
        self.events.append(("end", keys(self.out)))

    def add_rows(self, rows: list[dict]) -> None:
        added = [row["key"] for row in rows]
        if self.running:
            assert keys(self.out)[-len(added):] == added  # fed after the rows are in the file
        self.events.append(("rows", added))
        self.kept += added

    def forget(self) -> None:
        self.events.append(("forget",))
        self.kept = []

    def record(self) -> dict:
        return {"rows_given": len(self.kept)}


def test_a_sink_sees_the_folder_recovered_then_each_images_rows_as_appended(tmp_path):
    out, stop = tmp_path / "run", threading.Event()
    first = RecordingSink(out)
    first.running = True  # nothing to recover: every row given is appended first
    with pytest.raises(RunInterrupted):
        run_rows(samples(6), ThreadEngine(work_in(out, broken={1}), 1), out, KIND, {"size": 6}, set(), sink=first,
                 progress=lambda done, total: stop.set() if done >= 3 else None, stop=stop)
    assert first.events[0] == ("start", None) and first.events[-1] == ("failed", "RunInterrupted")
    assert first.kept == keys(out) and "img1" not in first.kept  # an error row is not a row
    fed = first.kept
    second = RecordingSink(out)
    resumed = len(fed)

    def progress(done: int, total: int) -> None:
        second.running = True

    run_rows(samples(6), ThreadEngine(work_in(out), 2), out, KIND, {"size": 6}, set(), sink=second,
             progress=progress)
    assert second.kept[:resumed] == fed and ("forget",) not in second.events  # recovered in its one pass
    assert second.kept == keys(out) == second.events[-1][1] and sorted(set(keys(out))) == [f"img{i}" for i in range(6)]


def test_a_sink_is_given_the_kept_rows_again_when_the_recovery_drops_some(tmp_path):
    out = tmp_path / "run"
    run_rows(samples(3), ThreadEngine(work_in(out), 1), out, KIND, {"size": 2}, {"img0", "img1", "img2"})
    whole = keys(out)
    with open(out / "rows.jsonl", "a") as handle:  # a killed run's: half an image, then a torn line
        handle.write('{"key": "img3", "targets_total": 2, "target_rank": 0, "file": "Odd/img3.0.txt"}\n{"key": "im')
    sink = RecordingSink(out)
    with sink.building():
        done = recover(out, KIND, {f"img{i}" for i in range(4)}, {f"img{i}" for i in range(4)}, sink)
    assert done == {"img0", "img1", "img2"} and keys(out) == whole
    forgot = sink.events.index(("forget",))
    given_first = [k for event in sink.events[:forgot] if event[0] == "rows" for k in event[1]]
    assert given_first == whole + ["img3"] and sink.kept == whole  # img3's row forgotten, the kept given again


def test_a_resume_checks_only_the_rows_the_last_run_to_end_did_not_leave(tmp_path):
    """A run records its rows file when it ends (stopped too): its length, lines and SHA-256. The next run reads
    the file's bytes once, and the lines that still match are counted without being checked again; lines a
    killed run appended after them are checked, and a file changed within them is checked whole."""
    out, stop, checked = tmp_path / "run", threading.Event(), []
    kind = dataclasses.replace(KIND, parse_row=lambda data: checked.append(data["key"]) or Row.from_dict(data))
    with pytest.raises(RunInterrupted) as stopped:
        run_rows(samples(6), ThreadEngine(work_in(out), 1), out, kind, {"size": 6}, set(),
                 progress=lambda done, total: stop.set() if done >= 2 else None, stop=stop)
    saved = stopped.value.saved
    assert json.loads((out / CHECKED_FILE).read_text())["lines"] == 2 * saved
    checked.clear()
    sink = RecordingSink(out)
    run_rows(samples(4), ThreadEngine(work_in(out), 1), out, kind, {"size": 6}, set(), sink=sink)
    assert checked == [] and sink.events[0] == ("start", None)  # the stopped run's sink recorded nothing
    assert json.loads((out / CHECKED_FILE).read_text())["sink"] == {"rows_given": 8}
    with open(out / "rows.jsonl", "a") as handle:  # a killed run's whole image, after the recorded rows
        handle.write('{"key": "img4", "targets_total": 1, "target_rank": 0, "file": "Even/img4.0.txt"}\n')
    (out / "Even" / "img4.0.txt").write_text("img4")
    sink = RecordingSink(out)
    stats = run_rows(samples(5), ThreadEngine(work_in(out), 1), out, kind, {"size": 6}, set(), sink=sink)
    assert (stats.ran, stats.resumed, checked) == (0, 5, ["img4"])  # only the appended line was checked
    assert sink.events[0] == ("start", {"rows_given": 8})  # what the sink recorded with the rows still there
    data = (out / "rows.jsonl").read_text()
    (out / "rows.jsonl").write_text(data.replace('"target_rank"', '"target_runk"', 1))  # same length
    checked.clear()
    sink = RecordingSink(out)
    stats = run_rows(samples(5), ThreadEngine(work_in(out), 1), out, kind, {"size": 6}, set(), sink=sink)
    assert len(checked) >= 9 and sink.events[0] == ("start", None)  # every line checked: the damage found
    assert (stats.ran, stats.resumed) == (1, 4) and sorted(set(keys(out))) == [f"img{i}" for i in range(5)]
    record = json.loads((out / CHECKED_FILE).read_text())
    (out / CHECKED_FILE).write_text(json.dumps({**record, "version": "0.0.1"}))  # another version's record
    checked.clear()
    run_rows(samples(5), ThreadEngine(work_in(out), 1), out, kind, {"size": 6}, set())
    assert checked == keys(out)  # its checks of a row may differ from this version's: every row checked
    run_rows(samples(1), ThreadEngine(work_in(out), 1), out, kind, {"size": 1}, set(), restart=True)
    assert json.loads((out / CHECKED_FILE).read_text())["lines"] == 2  # a restart's record: its rows only


def test_a_repair_keeps_the_trusted_rows_it_counted(tmp_path):
    """A torn line makes the recovery rewrite the rows file: the rows it trusted (and counted as done) are kept
    as they are, not checked again in the rewrite (where a stricter check would drop a done image's rows)."""
    out = tmp_path / "run"
    run_rows(samples(3), ThreadEngine(work_in(out), 1), out, KIND, {"size": 3}, set())
    whole = (out / "rows.jsonl").read_text()
    with open(out / "rows.jsonl", "a") as handle:
        handle.write('{"key": "img3", "targ')  # torn by a kill

    def stricter(data: dict) -> Row:
        if data["key"] == "img1":
            raise ValueError("refused by a stricter check")
        return Row.from_dict(data)

    stats = run_rows(samples(3), ThreadEngine(work_in(out), 1), out, dataclasses.replace(KIND, parse_row=stricter),
                     {"size": 3}, set())
    assert (stats.ran, stats.resumed) == (0, 3) and (out / "rows.jsonl").read_text() == whole


class Killed(BaseException):
    """The process dying mid-run: nothing of the run's own ending happens."""


@pytest.mark.parametrize("checkpoint", [0.0, 1e9])
def test_a_killed_runs_resume_checks_only_the_rows_after_its_last_checkpoint(tmp_path, monkeypatch, checkpoint):
    monkeypatch.setattr("ov_explain.runs.engine.CHECKPOINT_SECONDS", checkpoint)
    out, checked = tmp_path / "run", []
    kind = dataclasses.replace(KIND, parse_row=lambda data: checked.append(data["key"]) or Row.from_dict(data))
    dying = work_in(out)

    def work(sample: Sample) -> list[Row]:
        if sample.key == "img3":
            raise Killed
        return dying(sample)

    with pytest.raises(Killed):
        run_rows(samples(5), ThreadEngine(work, 1), out, kind, {"size": 5}, set())
    stats = run_rows(samples(5), ThreadEngine(work_in(out), 1), out, kind, {"size": 5}, set())
    assert (stats.ran, stats.resumed) == (2, 3)
    # every append recorded (checkpoint 0): nothing checked again; none recorded: the killed run's 6 rows
    assert checked == ([] if checkpoint == 0 else ["img0", "img0", "img1", "img1", "img2", "img2"])


def test_another_runs_folder_is_refused_and_restart_removes_only_the_runs_files(tmp_path):
    out = tmp_path / "run"
    run_rows(samples(2), ThreadEngine(work_in(out), 1), out, KIND, {"size": 2}, {"img0", "img1"})
    (out / "Even" / "notes.md").write_text("mine")  # the user's
    with pytest.raises(FolderError, match=r"different settings \(size\).*restart"):
        run_rows(samples(2), ThreadEngine(work_in(out), 1), out, KIND, {"size": 3}, {"img0", "img1"})
    (out / "run.json").write_text(json.dumps({"old_size": 2}))  # an earlier version's name for the setting
    assert run_rows(samples(2), ThreadEngine(work_in(out), 1), out, KIND, {"size": 2}, set()).resumed == 2
    assert json.loads((out / "run.json").read_text()) == {"size": 2}  # rewritten in today's names
    stats = run_rows(samples(1), ThreadEngine(work_in(out), 1), out, KIND, {"size": 1}, {"img0", "img1"},
                     restart=True)
    assert (stats.ran, stats.resumed) == (1, 0) and keys(out) == ["img0", "img0"]
    assert (out / "Even" / "notes.md").read_text() == "mine" and not (out / "Odd").exists()


def test_a_restart_across_tasks_is_refused_and_leaves_the_other_run_whole(tmp_path):
    out = tmp_path / "run"
    run_rows(samples(2), ThreadEngine(work_in(out), 1), out, KIND, {"size": 2}, {"img0", "img1"})
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.name != ".ov-explain.lock")
    with pytest.raises(FolderError, match=r"holds a classification run, and restart only replaces a detection run"):
        run_rows(samples(2), ThreadEngine(work_in(out), 1), out, KIND, {"size": 2, "task": "detection"},
                 {"img0", "img1"}, restart=True)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.name != ".ov-explain.lock") == before


def test_a_killed_runs_unlisted_files_are_removed_on_resume_but_the_users_are_kept(tmp_path):
    out = tmp_path / "run"
    run_rows(samples(2), ThreadEngine(work_in(out), 1), out, KIND, {"size": 2}, {"img0", "img1"})
    (out / "Odd" / "img3.0.txt").write_text("a file whose row never made it")
    (out / "Odd" / "holiday.txt").write_text("mine")
    with open(out / "rows.jsonl", "a") as handle:
        handle.write('{"key": "img2", "targets_total": 2, "target_rank": 0, "file": "Even/img2.0.txt"}\n')
    stats = run_rows(samples(4), ThreadEngine(work_in(out), 1), out, KIND, {"size": 2},
                     {f"img{i}" for i in range(4)})
    assert (stats.ran, stats.resumed) == (2, 2)  # img2's half-recorded rows are redone
    assert keys(out) == ["img0", "img0", "img1", "img1", "img2", "img2", "img3", "img3"]
    assert (out / "Odd" / "holiday.txt").read_text() == "mine"


def test_recovery_keeps_whole_images_and_drops_half_recorded_damaged_and_torn_rows_with_their_files(tmp_path):
    out = tmp_path / "run"
    run_rows(samples(3), ThreadEngine(work_in(out), 1), out, KIND, {"size": 2}, {"img0", "img1", "img2"})
    whole = (out / "rows.jsonl").read_text()
    (out / "Even" / "img4.0.txt").write_text("img4's file, its rows never written")
    (out / "Odd" / "img5.1.txt").write_text("a damaged row's file")
    (out / "Even" / "img0.9.txt").write_text("a lookalike of a whole image's file, not listed")
    (out / "Odd" / "holiday.txt").write_text("mine")
    with open(out / "rows.jsonl", "a") as handle:
        handle.write('{"key": "img3", "targets_total": 2, "target_rank": 0, "file": "Odd/img3.0.txt"}\n'
                     '{"key": "img5", "targets_total": 2, "file": "Odd/img5.1.txt"}\n'  # no target_rank
                     '{"key": "img1", "targets_total": 2, "target_rank": 1, "file": "Odd/img1.1.txt"}\n'
                     '{"key": "img6", "targ')  # torn by a kill
    (out / "Odd" / "img3.0.txt").write_text("img3's first file")

    done = recover(out, KIND, {f"img{i}" for i in range(7)}, {f"img{i}" for i in range(7)})

    assert done == {"img0", "img2"}  # img1 has three rows now: redone; img3 one of two
    assert (out / "rows.jsonl").read_text() == "".join(
        line + "\n" for line in whole.splitlines() if not line.startswith('{"key": "img1"'))
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.txt"))
    assert files == ["Even/img0.0.txt", "Even/img0.1.txt", "Even/img2.0.txt", "Even/img2.1.txt", "Odd/holiday.txt"]


def test_an_unreadable_line_amid_the_rows_is_dropped_with_what_follows_and_those_images_redone(tmp_path):
    """A line that is not JSON (or not UTF-8) ends every read of the rows: the recovery rewrites the file
    without it and what follows, so the images after it are redone once and later runs read every row."""
    out = tmp_path / "run"
    run_rows(samples(3), ThreadEngine(work_in(out), 1), out, KIND, {"size": 3}, {"img0", "img1", "img2"})
    lines = (out / "rows.jsonl").read_bytes().splitlines(keepends=True)
    (out / "rows.jsonl").write_bytes(b"".join(lines[:2]) + b'{"key": "caf\xe9"}\n' + b"".join(lines[2:]))
    stats = run_rows(samples(3), ThreadEngine(work_in(out), 1), out, KIND, {"size": 3}, {"img0", "img1", "img2"})
    assert (stats.resumed, stats.ran) == (1, 2)  # img0 kept; img1 and img2 (after the bad line) redone
    assert keys(out) == ["img0", "img0", "img1", "img1", "img2", "img2"]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.txt")) == [
        "Even/img0.0.txt", "Even/img0.1.txt", "Even/img2.0.txt", "Even/img2.1.txt", "Odd/img1.0.txt",
        "Odd/img1.1.txt"]
    again = run_rows(samples(3), ThreadEngine(work_in(out), 1), out, KIND, {"size": 3}, {"img0", "img1", "img2"})
    assert (again.resumed, again.ran) == (3, 0)
