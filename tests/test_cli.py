"""The ov-explain command line: output, JSON, exit status and one-line errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ov_explain.cli import main


@pytest.fixture
def run(monkeypatch, tmp_path):
    monkeypatch.setenv("OV_EXPLAIN_CACHE_DIR", str(tmp_path / "cache"))

    def invoke(*args: str):
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke


def test_devices_lists_cpu_and_auto_choice(run):
    result = run("devices")
    assert result.exit_code == 0
    assert "CPU" in result.output and "AUTO (NPU,GPU,CPU) picks: CPU" in result.output


def test_devices_json(run):
    data = json.loads(run("devices", "--json").output)
    assert data["auto_choice"] == "CPU" and data["auto_priority"] == ["NPU", "GPU", "CPU"]
    cpu = next(d for d in data["devices"] if d["name"] == "CPU")
    assert cpu["full_name"] and "FP32" in cpu["capabilities"]


@pytest.mark.slow
def test_predict_bundled_photos(run, photos_dir):
    result = run("predict", photos_dir / "coffee.jpg", photos_dir / "camera.jpg", "-k", "2")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].endswith("coffee.jpg  [CPU]") and "1. espresso" in lines[1]
    assert lines[3].endswith("camera.jpg  [CPU]") and "1. tripod" in lines[4]
    assert len(lines) == 6


@pytest.mark.slow
def test_predict_json_with_a_bad_file_still_runs_the_rest(run, photos_dir, tmp_path):
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    result = run("predict", photos_dir / "coffee.jpg", bad, photos_dir / "chelsea.jpg", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert [p["top"][0]["name"] for p in data["predictions"]] == ["espresso", "tiger cat"]
    assert data["device"] == "CPU" and len(data["predictions"][0]["top"]) == 5
    assert data["errors"] == [{"source": str(bad), "error": f"{bad}: truncated JPEG (no end-of-image marker)"}]
    assert f"error: {bad}: truncated JPEG" in result.stderr


@pytest.mark.slow
def test_predict_with_explicit_spec_and_labels(run, photos_dir, tmp_path):
    from ov_explain.resources import default_model_path

    folder = default_model_path().parent
    labels = tmp_path / "shout.txt"
    labels.write_text("\n".join(n.upper() for n in (folder / "efficientnet_lite0.labels.txt").read_text().split("\n")))
    result = run("predict", photos_dir / "coffee.jpg", "--model", default_model_path(), "--labels", labels,
                 "--preprocess", folder / "efficientnet_lite0.preprocess.json", "--device", "AUTO:GPU,CPU")
    assert result.exit_code == 0 and "1. ESPRESSO" in result.output


@pytest.mark.parametrize("args, message", [
    (["--model", "nowhere.xml"], "error: nowhere.xml: model file not found"),
    (["--device", "NPU"], "error: no requested device is available (asked for NPU; available: CPU"),
    (["--device", "CPU,GPU"], "expected AUTO, AUTO:<list> or one device"),
    (["--preprocess", "nomodule:fn"], "cannot import module 'nomodule'"),
    (["--preprocess", "missing.json"], "missing.json: preprocessing spec not found"),
])
def test_setup_errors_exit_2_with_one_line(run, photos_dir, args, message):
    result = run("predict", photos_dir / "coffee.jpg", *args)
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
