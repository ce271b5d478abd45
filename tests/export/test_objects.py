"""Export to object storage through the real s3fs client against a real S3-protocol server on 127.0.0.1."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from export_support import BUCKET, HOSTILE, objects_under, tree_digest

from ov_explain.export import ExportError, export, read_source
from ov_explain.export.pictures import levels_of
from ov_explain.render import rgba_png
from ov_explain.runs.audit.folder import read_rows

pytestmark = pytest.mark.slow


def _options(server) -> dict:
    return {"endpoint_url": server["endpoint"]}


def _expected_objects(folder: Path, prefix: str) -> dict[str, bytes]:
    """What the export must have put: each map rendered from the folder's own files, at its key."""
    source = read_source(folder)
    return {f"{prefix}/{item.name}.rgba.png": rgba_png(levels_of(image, item))
            for image in source.images for item in image.maps}


def _body(client, key: str) -> bytes:
    return client.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def test_every_map_and_the_locators_arrive_byte_for_byte_and_a_rerun_uploads_nothing(bundled_audit, s3_env):
    client, prefix = s3_env["client"], "bundled/run-1"
    before = tree_digest(bundled_audit)
    report = export(bundled_audit, f"s3://{BUCKET}/{prefix}", storage_options=_options(s3_env))
    expected = _expected_objects(bundled_audit, prefix)
    assert len(expected) == report.maps == 10 and report.images == 7
    stored = objects_under(client, prefix)
    assert set(stored) == set(expected) | {f"{prefix}/locators.jsonl", f"{prefix}/locators.csv"}
    for key, data in expected.items():
        body = _body(client, key)
        assert body == data, key
        picture = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED)
        assert picture.ndim == 3 and picture.shape[2] == 4  # RGBA
        assert picture[..., 3].min() == 0 and picture[..., 3].max() > 150  # low activations fade out
    assert (report.uploaded, report.unchanged, report.failed) == (12, 0, [])

    rows = [json.loads(line) for line in _body(client, f"{prefix}/locators.jsonl").decode().splitlines()]
    manifest = list(read_rows(bundled_audit))
    assert len(rows) == len(manifest) == 10
    for row, line in zip(rows, manifest):
        assert row["map_locator"] == f"s3://{BUCKET}/{prefix}/{line.overlay_path[:-len('.jpg')]}.rgba.png"
        assert (row["image"], row["case"], row["target_class"], row["target_role"], row["prediction"],
                row["confidence"], row["ground_truth"]) == (line.source, line.case, line.target_class,
                                                          line.target_role, line.top1.name, line.top1.probability,
                                                          line.ground_truth_class)
    table = list(csv.DictReader(io.StringIO(_body(client, f"{prefix}/locators.csv").decode())))
    assert [r["map_locator"] for r in table] == [r["map_locator"] for r in rows]

    again = export(bundled_audit, f"s3://{BUCKET}/{prefix}", storage_options=_options(s3_env))
    assert (again.uploaded, again.unchanged, again.bytes_uploaded) == (0, 12, 0)
    assert objects_under(client, prefix) == stored  # nothing rewritten: same ETags and times
    assert tree_digest(bundled_audit) == before  # the audit folder is only read


def test_a_changed_object_is_replaced_and_images_can_travel_too(bundled_audit, s3_env):
    client, prefix = s3_env["client"], "bundled/with-images"
    export(bundled_audit, f"s3://{BUCKET}/{prefix}", storage_options=_options(s3_env), include_images=True)
    key = next(iter(_expected_objects(bundled_audit, prefix)))
    client.put_object(Bucket=BUCKET, Key=key, Body=b"someone else's bytes")
    report = export(bundled_audit, f"s3://{BUCKET}/{prefix}", storage_options=_options(s3_env), include_images=True)
    assert report.uploaded == 1 and report.unchanged == report.objects - 1
    assert _body(client, key) == _expected_objects(bundled_audit, prefix)[key]
    rows = [json.loads(line) for line in _body(client, f"{prefix}/locators.jsonl").decode().splitlines()]
    for row in rows:
        name = row["image_locator"].split(f"{BUCKET}/", 1)[1]
        assert _body(client, name) == Path(row["image"]).read_bytes()


def _cli(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ov_explain.cli", *args], env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.fixture(scope="module")
def large_audit(tmp_path_factory, classifier, photos_dir, ground_truth) -> Path:
    """The bundled photos 30 times each (210 images, ~300 maps): enough objects to kill an export part-way."""
    from ov_explain.explain import Explainer
    from ov_explain.runs.audit.run import AuditOptions, run_audit
    from ov_explain.runs.dataset import read_dataset

    root = tmp_path_factory.mktemp("copies")
    for name, label in ground_truth.items():
        (root / "data" / label).mkdir(parents=True, exist_ok=True)
        for i in range(30):
            shutil.copy(photos_dir / name, root / "data" / label / f"{Path(name).stem}_{i}.jpg")
    out = root / "audit"
    run_audit(read_dataset(root / "data"), Explainer(classifier), out, options=AuditOptions(grids=False, report=False))
    return out


def test_an_export_killed_part_way_resumes_without_uploading_finished_objects_again(large_audit, s3_env):
    client, prefix = s3_env["client"], "large/run"
    destination = f"s3://{BUCKET}/{prefix}"
    total = read_source(large_audit).maps
    process = _cli("export", str(large_audit), "--to", destination, "--uploads", "1",
                   "--storage-option", f"endpoint_url={s3_env['endpoint']}", env=s3_env["env"])
    deadline = time.monotonic() + 120
    while len(objects_under(client, prefix)) < 25:
        assert process.poll() is None, f"the export ended before it could be killed: {process.communicate()}"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    present, settled = objects_under(client, prefix), {}
    while settled != present:  # a request already sent when the client died may still land: wait for quiet
        settled, present = present, (time.sleep(0.3), objects_under(client, prefix))[1]
    assert 25 <= len(present) < total and f"{prefix}/locators.jsonl" not in present  # locators come last

    resumed = _cli("export", str(large_audit), "--to", destination, "--json",
                   "--storage-option", f"endpoint_url={s3_env['endpoint']}", env=s3_env["env"])
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    report = json.loads(out)
    assert report["unchanged"] == len(present) and report["uploaded"] == total - len(present) + 2
    after = objects_under(client, prefix)
    for key, info in present.items():
        assert after[key] == info, key  # not uploaded again: same ETag, same LastModified
    expected = _expected_objects(large_audit, prefix)
    assert set(after) == set(expected) | {f"{prefix}/locators.jsonl", f"{prefix}/locators.csv"}
    for key, data in expected.items():
        assert after[key]["ETag"].strip('"') == hashlib.md5(data).hexdigest(), key


def test_wrong_credentials_are_one_line_and_never_printed(bundled_audit, s3_env, tmp_path):
    before = tree_digest(bundled_audit)
    secret = "not-the-secret-4f9a1c"
    process = _cli("-v", "export", str(bundled_audit), "--to", f"s3://{BUCKET}/denied",
                   "--storage-option", f"endpoint_url={s3_env['endpoint']}", "--storage-option", f"secret={secret}",
                   "--storage-option", f"key={s3_env['env']['AWS_ACCESS_KEY_ID']}")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "access denied" in lines[0] and f"s3://{BUCKET}/denied" in lines[0]
    assert "Traceback" not in err and secret not in out + err
    assert s3_env["env"]["AWS_SECRET_ACCESS_KEY"] not in out + err
    assert objects_under(s3_env["client"], "denied") == {}
    assert tree_digest(bundled_audit) == before


def test_a_missing_bucket_is_one_line(bundled_audit, s3_env):
    process = _cli("export", str(bundled_audit), "--to", "s3://no-such-bucket/x",
                   "--storage-option", f"endpoint_url={s3_env['endpoint']}", env=s3_env["env"])
    out, err = process.communicate(timeout=120)
    assert process.returncode == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == ("error: s3://no-such-bucket/x: not found (The specified bucket does not "
                                            "exist); create the bucket first")


def test_hostile_labels_stay_inside_the_prefix_and_round_trip_as_data(hostile_audit, s3_env):
    client, prefix = s3_env["client"], "hostile/run"
    report = export(hostile_audit, f"s3://{BUCKET}/{prefix}", storage_options=_options(s3_env))
    assert report.failed == []
    keys = list(objects_under(client, "hostile/"))
    assert keys and all(k.startswith(f"{prefix}/") and ".." not in k.split("/") and "<" not in k for k in keys)
    assert any("_x_" in k or "pr_x_" in k for k in keys)  # "../../x" became a safe component
    table = list(csv.DictReader(io.StringIO(_body(client, f"{prefix}/locators.csv").decode())))
    labels = {r["target_class"] for r in table} | {r["prediction"] for r in table}
    assert set(HOSTILE.values()) <= labels  # the labels themselves travel unchanged, as data
    assert not list((hostile_audit.parent).glob("x*"))  # nothing was written outside the audit


def test_file_urls_and_a_drift_folder_export_both_maps(tmp_path, photos_dir):
    """A drift audit of the bundled model (f32 against the device's own precision) to file://."""
    from ov_explain.runs.drift.run import drift

    out = tmp_path / "drift"
    drift(photos_dir / "ground_truth.csv", out, reference_device="CPU", candidate_precision="device",
          report=False, cache_dir=None)
    report = export(out, (tmp_path / "exported").as_uri())
    source = read_source(out)
    assert source.kind == "drift" and report.maps == source.maps == 2 * len(list((out / "drift.jsonl").open()))
    rows = [json.loads(line) for line in (tmp_path / "exported" / "locators.jsonl").read_text().splitlines()]
    assert {r["deployment"] for r in rows} == {"reference", "candidate"}
    for row in rows:
        path = Path(row["map_locator"][len("file://"):])
        assert path.is_file() and path.name.endswith(f".{row['deployment']}.rgba.png")
    again = export(out, (tmp_path / "exported").as_uri())
    assert again.uploaded == 0 and again.unchanged == again.objects


def test_bad_folders_and_destinations_are_one_clear_error(bundled_audit, tmp_path, run):
    with pytest.raises(ExportError, match="not a finished audit or drift audit"):
        export(tmp_path, (tmp_path / "out").as_uri())
    damaged = tmp_path / "damaged"
    shutil.copytree(bundled_audit, damaged)
    manifest = (damaged / "manifest.jsonl").read_text()
    first = json.loads(manifest.splitlines()[0])
    first["overlay_path"] = f"{first['case']}/../../../etc/escape.jpg"
    (damaged / "manifest.jsonl").write_text(json.dumps(first) + "\n" + "\n".join(manifest.splitlines()[1:]) + "\n")
    with pytest.raises(ExportError, match="not a file name this folder's runs write"):
        export(damaged, (tmp_path / "out").as_uri())
    result = run("export", bundled_audit, "--to", "nosuchscheme://x/y")
    assert result.exit_code == 2 and result.output.startswith("error: nosuchscheme://x/y:")
    result = run("export", bundled_audit, "--to", (tmp_path / "o").as_uri(), "--storage-option", "novalue")
    assert result.exit_code == 2 and "expected KEY=VALUE" in result.output


def test_an_audit_without_raw_maps_says_how_to_get_them(tmp_path, classifier, photos_dir):
    from ov_explain.explain import Explainer
    from ov_explain.runs.audit.run import AuditOptions, run_audit
    from ov_explain.runs.dataset import read_dataset

    out = tmp_path / "audit"
    run_audit(read_dataset(photos_dir / "ground_truth.csv"), Explainer(classifier), out,
              options=AuditOptions(save_raw=False, grids=False, report=False))
    with pytest.raises(ExportError, match=r"kept no raw maps \(it ran with --no-raw\); run it again with --raw"):
        export(out, (tmp_path / "exported").as_uri())
    assert not (tmp_path / "exported").exists()  # refused before anything was written


def test_an_audit_made_without_raw_maps_resumes_with_the_same_command(tmp_path, photos_dir, run):
    """--raw is the default now; a folder made without raw maps keeps its choice when resumed."""
    out = tmp_path / "audit"
    first = run("audit", photos_dir / "ground_truth.csv", "--out", out, "--no-raw", "--no-grids", "--no-report",
                "--limit", "2")
    assert first.exit_code == 0, first.output
    again = run("audit", photos_dir / "ground_truth.csv", "--out", out, "--no-grids", "--no-report")
    assert again.exit_code == 0, again.output
    assert "2 resumed" in again.output and not list(out.rglob("*.npy"))
