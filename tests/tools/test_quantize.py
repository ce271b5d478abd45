"""ov-explain quantize: a real INT8 IR of the bundled model that every other command takes as it is."""

from __future__ import annotations

import json
import sys

import pytest


def test_missing_nncf_is_one_line_naming_the_extra(run, photos_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "nncf", None)  # import nncf now raises ImportError
    result = run("quantize", "--calibration", photos_dir / "ground_truth.csv", "--out", tmp_path / "int8.xml")
    assert result.exit_code == 2
    assert "quantization needs NNCF" in result.stderr and "pip install -e '.[quantize]'" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--out", "int8.bin"], "the output must be an IR path ending in .xml"),
    (["--out", "int8.xml", "--calibration-empty"], "no images found"),
])
def test_bad_requests_are_one_line(run, tmp_path, photos_dir, args, message):
    pytest.importorskip("nncf", reason="the quantize extra (NNCF) is not installed here")
    empty = tmp_path / "empty"
    empty.mkdir()
    calibration = empty if "--calibration-empty" in args else photos_dir / "ground_truth.csv"
    out = tmp_path / args[1]
    result = run("quantize", "--calibration", calibration, "--out", out)
    assert result.exit_code == 2 and message in result.stderr


@pytest.mark.slow
def test_the_bundled_model_quantized_keeps_its_spec_and_labels_and_predicts(run, photos_dir, tmp_path):
    pytest.importorskip("nncf", reason="the quantize extra (NNCF) is not installed here")
    import openvino as ov

    from ov_explain import Classifier

    out = tmp_path / "deploy" / "lite0_int8.xml"
    result = run("quantize", "--calibration", photos_dir / "ground_truth.csv", "--out", out)
    assert result.exit_code == 0, result.output
    report = json.loads(out.with_name("lite0_int8.quantize.json").read_text())
    assert report["calibration_images"] == 7 and report["quantized_ops"] > 0
    assert report["size_after_bytes"] < 0.7 * report["size_before_bytes"]  # measured 5.2 vs 9.5 MB
    assert f"{report['quantized_ops']} quantized ops, calibrated on 7 images" in result.output
    model = ov.Core().read_model(str(out))
    assert sum(op.get_type_name() == "FakeQuantize" for op in model.get_ordered_ops()) == report["quantized_ops"]
    original = Classifier(device="CPU", cache_dir=None)
    int8 = Classifier(out, device="CPU", cache_dir=None)
    assert int8.spec == original.spec and int8.labels == original.labels
    assert out.with_name("lite0_int8.synsets.txt").is_file()  # the dataset label map travels too
    assert int8.predict(photos_dir / "coffee.jpg").label == "espresso"
