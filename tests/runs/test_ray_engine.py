"""The Ray engine on a real local Ray cluster (``ray start --head`` on 127.0.0.1, stopped after): the same
folder, files and rows as the local engine, and resume after the driver or a worker is killed."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Every Ray node of these tests on 127.0.0.1 (set before Ray is first imported; see ov_explain.runs.ray_engine),
# and the test cluster's own token (Ray's token authentication), whatever ~/.ray holds on this machine.
# Nothing leaves the machine: no usage report (Ray's head would still post a "disabled" one to its servers,
# so its address points at the discard port on 127.0.0.1).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_AUTH_MODE"] = "token"
os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["RAY_USAGE_STATS_REPORT_URL"] = "http://127.0.0.1:9/"
pytest.importorskip("ray", reason="the distributed extra is not installed")

from support import free_port, wait_for_port  # noqa: E402

from ov_explain.runs.audit.run import audit  # noqa: E402
from ov_explain.runs.engine import CHECKED_FILE  # noqa: E402
from ov_explain.runs.ray_engine import ClusterError, RayOptions  # noqa: E402

pytestmark = pytest.mark.slow

COPIES = 40  # 7 photos x 40 = 280 images
#: Files whose content holds the run's own timings (compared without them).
TIMED = {"summary.json", "manifest.jsonl", "manifest.csv", "report.html", "audit.json"}


@pytest.fixture(scope="module")
def ray_cluster():
    """A head node on 127.0.0.1 with 2 CPUs for this module: ``ray start --head --block`` in its own process
    group, stopped after by signalling that group (``ray stop`` would stop every Ray on the machine)."""
    port = free_port()
    ray = str(Path(sys.executable).parent / "ray")
    temp = Path("/tmp") / f"ovx-ray-{os.getpid()}"  # short: Ray's socket paths must fit in 107 bytes
    head = subprocess.Popen(
        [ray, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}",
         f"--dashboard-agent-listen-port={free_port()}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_for_port(port, head, 180, lambda: head.stderr.read().decode()[-2000:] if head.poll() is not None else "")
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # --block: the head stops what it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def copies(tmp_path_factory, photos_dir, ground_truth) -> Path:
    root = tmp_path_factory.mktemp("ray-data") / "data"
    for name, label in ground_truth.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(COPIES):
            shutil.copy(photos_dir / name, root / label / f"{Path(name).stem}_{i}.jpg")
    return root


@pytest.fixture(scope="module")
def local_audit(copies, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "audit"
    audit(copies, out, device="CPU", cache_dir=None)
    return out


def _without_timings(folder: Path) -> dict[str, object]:
    """Every file of an audit folder: bytes by SHA-256, and the timed files' content without timings."""
    found: dict[str, object] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != ".ov-explain.lock"):
        relative = str(path.relative_to(folder))
        if path.name == "manifest.jsonl":
            found[relative] = [{k: v for k, v in json.loads(line).items() if not k.endswith("_ms")}
                               for line in path.read_text().splitlines()]
        elif path.name == "summary.json":
            data = json.loads(path.read_text())
            found[relative] = {k: v for k, v in data.items() if k not in ("seconds", "images_per_second", "resumed",
                                                                            "out_dir")}
        elif path.name in TIMED:
            continue  # the CSV and the report repeat the manifest's rows and timings
        elif path.name == CHECKED_FILE:  # the manifest's digest and the CSV's time differ with the timings
            data = json.loads(path.read_text())
            found[relative] = (data["lines"], (data["sink"] or {}).get("manifest.csv", {}).get("rows"))
        else:
            found[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ov_explain.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _rows(folder: Path) -> int:
    path = folder / "manifest.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _wait_for_rows(out: Path, rows: int, driver: subprocess.Popen) -> None:
    """Until the audit in ``out`` holds ``rows`` manifest rows (the driver still running)."""
    deadline = time.monotonic() + 300
    while _rows(out) < rows:
        assert driver.poll() is None, driver.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_the_ray_engine_writes_the_local_engines_folder(copies, local_audit, ray_cluster, tmp_path):
    out = tmp_path / "audit"
    summary = audit(copies, out, device="CPU", cache_dir=None, engine="ray",
                    ray=RayOptions(address=ray_cluster, actors=2, batch_size=8))
    assert summary.images == 7 * COPIES and summary.errors == 0
    expected = _without_timings(local_audit)
    assert len(expected) > 2 * 7 * COPIES  # an overlay and a raw map per explained class, grids, ...
    assert _without_timings(out) == expected
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len({(r["key"], r["target_rank"]) for r in rows}) == len(rows)  # nothing twice
    assert (out / "report.html").is_file() and (out / "grids").is_dir()
    local_report = (local_audit / "report.html").read_text()
    assert (out / "report.html").read_text().count('class="item"') == local_report.count('class="item"')


def test_a_killed_driver_resumes_to_the_uninterrupted_folder(copies, local_audit, ray_cluster, tmp_path):
    out = tmp_path / "audit"
    command = ["audit", str(copies), "--out", str(out), "--device", "CPU", "--engine", "ray",
               "--ray-address", ray_cluster, "--batch-size", "4"]
    driver = _cli(*command)
    _wait_for_rows(out, 40, driver)
    driver.send_signal(signal.SIGKILL)
    driver.communicate()
    assert _rows(out) < _rows(local_audit)  # killed part-way
    resumed = _cli(*command)
    out_text, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert "resumed" in out_text and " 0 resumed" not in out_text
    assert _without_timings(out) == _without_timings(local_audit)


def test_a_killed_worker_is_replaced_and_nothing_is_missing_or_twice(copies, local_audit, ray_cluster, tmp_path):
    out = tmp_path / "audit"
    driver = _cli("audit", str(copies), "--out", str(out), "--device", "CPU", "--engine", "ray",
                  "--ray-address", ray_cluster, "--batch-size", "4", "--actors", "2")
    _wait_for_rows(out, 20, driver)
    listing = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    workers = [int(line.split()[0]) for line in listing.splitlines() if "_Actor" in line and "ray::" in line]
    assert workers, listing
    os.kill(workers[0], signal.SIGKILL)
    out_text, err = driver.communicate(timeout=600)
    assert driver.returncode == 0, err
    assert _without_timings(out) == _without_timings(local_audit)


def test_no_ray_cluster_is_one_line(copies, tmp_path, run):
    result = run("audit", copies, "--out", tmp_path / "audit", "--engine", "ray", "--ray-address", "127.0.0.1:1",
                 "--limit", "2")
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("error: Ray cluster 127.0.0.1:1: cannot connect")
    assert not (tmp_path / "audit").exists()  # said before the output folder was touched


def test_options_are_checked():
    with pytest.raises(ClusterError, match="batch_size: expected >= 1, got 0"):
        RayOptions(batch_size=0)


def test_a_drift_audit_on_ray_writes_the_local_engines_rows_and_files(photos_dir, ray_cluster, tmp_path):
    """The drift audit's work on actors (both deployments built there from DriftWork): the same rows, maps and
    side-by-side pictures as on this process's threads, with --readout and --preprocess reaching both."""
    from ov_explain.core.preprocess import PreprocessSpec
    from ov_explain.runs.drift.run import drift

    spec = tmp_path / "plain.json"  # not the model's own spec: what the settings must then record
    PreprocessSpec(size=224, resize="stretch", mean=(127.0,) * 3, std=(128.0,) * 3).to_json(spec)
    common = dict(reference_device="CPU", candidate_precision="bf16", method="reciprocam", readout="probability",
                  preprocess=str(spec), cache_dir=None, report=False)
    local = drift(photos_dir / "ground_truth.csv", tmp_path / "local", **common)
    remote = drift(photos_dir / "ground_truth.csv", tmp_path / "ray", engine="ray",
                   ray=RayOptions(address=ray_cluster, actors=2, batch_size=2), **common)
    assert remote.images == local.images == 7 and remote.errors == 0
    settings = json.loads((tmp_path / "ray" / "drift.json").read_text())
    assert settings["reference"]["readout"] == "probability" and settings["candidate"]["preprocess"]["resize"] == \
        "stretch"

    def rows(folder: Path) -> list[dict]:
        return [{k: v for k, v in json.loads(line).items() if not k.endswith("_ms")}
                for line in (folder / "drift.jsonl").read_text().splitlines()]

    assert rows(tmp_path / "ray") == rows(tmp_path / "local")
    for row in rows(tmp_path / "local"):
        for column in ("image_path", "reference_map_path", "candidate_map_path"):
            assert (tmp_path / "ray" / row[column]).read_bytes() == (tmp_path / "local" / row[column]).read_bytes()


def test_a_detection_audit_on_ray_writes_the_local_engines_folder(face_copies, yolov8_path, ray_cluster, tmp_path):
    dataset = face_copies(2)  # 14 images, 8 boxes
    local, distributed = tmp_path / "local", tmp_path / "ray"
    expected = audit(dataset, local, model=yolov8_path, device="CPU", cache_dir=None)
    summary = audit(dataset, distributed, model=yolov8_path, device="CPU", cache_dir=None, engine="ray",
                    ray=RayOptions(address=ray_cluster, actors=2, batch_size=4))
    assert summary.images == 14 and summary.boxes == 8 and summary.errors == 0
    assert summary.cases == expected.cases == {"True_positive_high_confidence": 6, "False_negative": 2}
    assert _without_timings(distributed) == _without_timings(local)
    assert (distributed / "report.html").read_text().count('class="item"') == 8


def test_a_detector_drift_on_ray_writes_the_local_engines_rows_and_files(faces_coco, yolov8_path, ray_cluster,
                                                                          tmp_path):
    from ov_explain.runs.drift.run import drift

    # The same detector with a stricter confidence: camera's face (0.59) is lost, the others are kept.
    options = dict(reference=yolov8_path, candidate={"confidence": 0.7}, device="CPU", cache_dir=None)
    local = drift(faces_coco, tmp_path / "local", **options)
    distributed = drift(faces_coco, tmp_path / "ray", **options, engine="ray",
                        ray=RayOptions(address=ray_cluster, actors=2, batch_size=2))
    assert local.lost == distributed.lost == 1 and local.kept + local.class_changed == 2
    assert distributed.cases == local.cases and distributed.box_agreement == local.box_agreement == round(2 / 3, 4)

    def rows(folder: Path) -> list[dict]:
        return [{k: v for k, v in json.loads(line).items() if not k.endswith("_ms")}
                for line in (folder / "drift.jsonl").read_text().splitlines()]

    assert rows(tmp_path / "ray") == rows(tmp_path / "local")
    files = {folder: {k: v for k, v in _without_timings(tmp_path / folder).items()
                      if k not in ("drift.jsonl", "drift.csv")} for folder in ("ray", "local")}  # rows: compared above
    assert files["ray"] == files["local"] and any(k.startswith("Box_lost/") for k in files["local"])
