"""The ov-explain command line: output, JSON, exit status and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

IMPORT_DATA = Path(__file__).resolve().parents[1] / "core" / "data" / "preprocess_import"
DEIT = IMPORT_DATA / "hf_facebook_deit-base-distilled-patch16-224.preprocessor_config.json"


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
    assert lines[0].endswith("coffee.jpg  [CPU f32]") and "1. espresso" in lines[1]
    assert lines[3].endswith("camera.jpg  [CPU f32]") and "1. tripod" in lines[4]
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
    from ov_explain.core.resources import default_model_path

    folder = default_model_path().parent
    labels = tmp_path / "shout.txt"
    labels.write_text("\n".join(n.upper() for n in (folder / "efficientnet_lite0.labels.txt").read_text().split("\n")))
    result = run("predict", photos_dir / "coffee.jpg", "--model", default_model_path(), "--labels", labels,
                 "--preprocess", folder / "efficientnet_lite0.preprocess.json", "--device", "AUTO:GPU,CPU")
    assert result.exit_code == 0 and "1. ESPRESSO" in result.output


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bundled_lite0.timm.config.json",
                                  "bundled_lite0.hf_convnext.preprocessor_config.json"])
def test_predict_with_a_timm_or_hugging_face_config(run, photos_dir, name):
    config = IMPORT_DATA / name
    result = run("predict", photos_dir / "coffee.jpg", "--preprocess", config, "--device", "CPU", "--json")
    assert result.exit_code == 0, result.output
    top = json.loads(result.stdout)["predictions"][0]["top"]
    assert top[0]["name"] == "espresso" and top[0]["probability"] > 0.9


def test_a_foreign_sidecar_warns_once_and_the_command_runs(run, tmp_path):
    import openvino as ov
    from support import tiny_classifier_model

    ov.save_model(tiny_classifier_model(), str(tmp_path / "tiny.xml"), compress_to_fp16=False)
    sidecar = tmp_path / "preprocess.json"
    sidecar.write_text(json.dumps({"architecture": "tiny", "pretrained_cfg": {
        "input_size": [3, 8, 8], "interpolation": "bilinear", "mean": [0.5] * 3, "std": [0.5] * 3}}))
    image = tmp_path / "grey.png"
    import cv2

    cv2.imwrite(str(image), np.full((12, 12, 3), 128, np.uint8))
    result = run("predict", image, "--model", tmp_path / "tiny.xml", "--device", "CPU")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "not an ov_explain spec" in line]
    assert warnings == [f"warning: {sidecar} is a timm pretrained_cfg, not an ov_explain spec: ignored; "
                        f"pass --preprocess {sidecar} to use it"]
    named = run("predict", image, "--model", tmp_path / "tiny.xml", "--device", "CPU", "--preprocess", sidecar)
    assert named.exit_code == 0, named.output
    assert "not an ov_explain spec" not in named.stderr and "no preprocessing spec found" not in named.stderr


@pytest.mark.parametrize("args, message", [
    (["--model", "nowhere.xml"], "error: nowhere.xml: model file not found"),
    (["--device", "NPU"], "error: no requested device is available (asked for NPU; available: CPU"),
    (["--device", "CPU,GPU"], "expected AUTO, AUTO:<list> or one device"),
    (["--preprocess", "nomodule:fn"], "cannot import module 'nomodule'"),
    (["--preprocess", "missing.json"], "missing.json: preprocessing spec not found"),
    (["--preprocess", DEIT], f"error: {DEIT}: Hugging Face DeiTFeatureExtractor: a resize to 256x256"),
])
def test_setup_errors_exit_2_with_one_line(run, photos_dir, args, message):
    result = run("predict", photos_dir / "coffee.jpg", *args)
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_explain_writes_overlays_and_raw_maps(run, photos_dir, tmp_path):
    out = tmp_path / "out"
    result = run("explain", photos_dir / "chelsea.jpg", photos_dir / "coffee.jpg", "--out", out, "--raw", "--json",
                 "--targets", "predicted", "-k", "2")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["mode"], data["method"]) == ("whitebox", "cam")
    chelsea, coffee = data["explanations"]
    assert [m["name"] for m in chelsea["maps"]] == ["tiger cat", "Egyptian cat"]
    assert chelsea["device"] == "CPU" and chelsea["inferences"] == 1 and chelsea["target_layer"]
    overlay = out / "chelsea_cam_tiger_cat.jpg"
    assert chelsea["maps"][0]["overlay"] == str(overlay) and overlay.stat().st_size > 1000
    assert np.load(out / "chelsea_cam_tiger_cat.npy").shape == (7, 7)
    assert [m["name"] for m in coffee["maps"]] == ["espresso"]  # nothing else above the threshold


def test_explain_and_predict_take_a_folder_of_images_and_skip_the_rest_one_line_each(run, photos_dir, tmp_path):
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    for name in ("coffee.jpg", "chelsea.jpg"):
        (folder / name).write_bytes((photos_dir / name).read_bytes())
    (folder / "notes.txt").write_text("the user's own file")
    (folder / ".hidden.jpg").write_bytes(b"not looked at")
    out = tmp_path / "out"
    result = run("explain", folder, "--out", out, "-k", "1", "--json")
    assert result.exit_code == 0, result.output
    assert [e["source"] for e in json.loads(result.stdout)["explanations"]] == \
        [str(folder / "chelsea.jpg"), str(folder / "coffee.jpg")]  # sorted
    assert sorted(p.name for p in out.iterdir()) == ["chelsea_cam_tiger_cat.jpg", "coffee_cam_espresso.jpg"]
    assert result.stderr.count("skipped: ") == 2
    assert f"skipped: {folder / 'notes.txt'}: not an image file (.bmp, .jpeg, .jpg," in result.stderr
    assert f"skipped: {folder / 'nested'}: a folder inside a folder (not searched)" in result.stderr
    predicted = run("predict", folder, "--json")
    assert predicted.exit_code == 0
    assert [p["top"][0]["name"] for p in json.loads(predicted.stdout)["predictions"]] == ["tiger cat", "espresso"]
    empty = run("explain", folder / "nested", "--out", out)
    assert empty.exit_code == 2 and f"error: {folder / 'nested'}: no image files (" in empty.stderr


@pytest.mark.slow
def test_explain_blackbox_named_targets_and_bad_image(run, photos_dir, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    result = run("explain", photos_dir / "coffee.jpg", bad, "--method", "aise", "--preset", "speed",
                 "--targets", "espresso,cup", "--out", tmp_path)
    assert result.exit_code == 1
    assert "coffee.jpg: aise (blackbox) on CPU" in result.stdout
    assert (tmp_path / "coffee_aise_espresso.jpg").is_file() and (tmp_path / "coffee_aise_cup.jpg").is_file()
    assert f"error: {bad}: not a readable image" in result.stderr


@pytest.mark.slow
def test_export_xai_then_explain_with_it(run, photos_dir, tmp_path):
    out = tmp_path / "deploy" / "lite0_xai.xml"
    result = run("export-xai", "--out", out)
    assert result.exit_code == 0 and "outputs: logits, saliency_logit_fallback, saliency_map" in result.output
    assert out.with_name("lite0_xai.preprocess.json").is_file() and out.with_name("lite0_xai.labels.txt").is_file()
    explained = run("explain", photos_dir / "camera.jpg", "--model", out, "--out", tmp_path / "o", "--json")
    data = json.loads(explained.stdout)
    assert data["explanations"][0]["maps"][0]["name"] == "tripod"


@pytest.mark.slow
def test_export_xai_with_embedded_preprocessing_is_explained_by_every_method_and_audited(run, photos_dir, tmp_path):
    """The edge IR takes uint8 RGB pixels, carries model_api's keys, and serves white- and black-box
    explanations and the audit with the plain model's results."""
    import openvino as ov

    out = tmp_path / "deploy" / "edge.xml"
    result = run("export-xai", "--embed-preprocessing", "--out", out)
    assert result.exit_code == 0 and "outputs: logits, saliency_logit_fallback, saliency_map" in result.output
    assert "model_api has no crop fraction" in result.output  # what model_api will not reproduce is said
    model = ov.Core().read_model(str(out))
    assert model.inputs[0].get_element_type() == ov.Type.u8
    info = {key: model.get_rt_info(["model_info", key]).astype(str)
            for key in ("model_type", "embedded_processing", "mean_values", "scale_values", "reverse_input_channels")}
    assert info == {"model_type": "Classification", "embedded_processing": "False", "mean_values": "0 0 0",
                    "scale_values": "1 1 1", "reverse_input_channels": "True"}
    for method in ("cam", "rise"):
        maps = []
        for model_path in (None, out):
            args = ["--model", model_path] if model_path else []
            explained = run("explain", photos_dir / "camera.jpg", *args, "--method", method, "--preset", "speed",
                            "--raw", "--json", "--out", tmp_path / f"{method}_{bool(model_path)}")
            assert explained.exit_code == 0, explained.output
            first = json.loads(explained.stdout)["explanations"][0]["maps"][0]
            maps.append((first["name"], np.load(first["raw"])))
        assert maps[0][0] == maps[1][0] == "tripod"
        assert np.corrcoef(maps[0][1].ravel(), maps[1][1].ravel())[0, 1] > 0.9999, method
    audited = run("audit", photos_dir / "ground_truth.csv", "--model", out, "--out", tmp_path / "audit", "--json")
    assert audited.exit_code == 0, audited.output
    summary = json.loads(audited.stdout)
    assert summary["images"] == 7 and summary["errors"] == 0 and summary["method"] == "cam"


@pytest.mark.parametrize("args, message", [
    (["--method", "rise", "--mode", "whitebox"], "method rise is blackbox"),
    (["--colormap", "nope"], "unknown colormap 'nope'"),
    (["--target-layer", "no_such_node"], "no node named 'no_such_node'"),
])
def test_explain_setup_errors(run, photos_dir, tmp_path, args, message):
    result = run("explain", photos_dir / "coffee.jpg", "--out", tmp_path, *args)
    assert result.exit_code == 2 and message in result.stderr


def test_export_xai_needs_an_xml_path(run, tmp_path):
    result = run("export-xai", "--out", tmp_path / "model.bin")
    assert result.exit_code == 2 and "must be an IR path ending in .xml" in result.stderr


@pytest.mark.slow
def test_audit_command_sorts_photos_and_reports(run, photos_dir, tmp_path):
    out = tmp_path / "audit"
    result = run("audit", photos_dir / "ground_truth.csv", "--out", out, "--device", "CPU", "--no-grids")
    assert result.exit_code == 0, result.output
    assert "7 images audited" in result.output and "True_positive_high_confidence      2" in result.output
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [
        "False_positive_low_confidence", "True_positive_high_confidence", "True_positive_low_confidence",
        "True_positive_two_predictions"]
    again = json.loads(run("audit", photos_dir / "ground_truth.csv", "--out", out, "--device", "CPU",
                           "--no-grids", "--json").output)
    assert again["resumed"] == 7 and again["images"] == 7
    changed = run("audit", photos_dir / "ground_truth.csv", "--out", out, "--high-confidence", "0.9", "--no-grids")
    assert changed.exit_code == 2
    assert changed.output.count("\n") == 1 and "different settings (thresholds)" in changed.output


@pytest.mark.slow
def test_audit_command_exit_status_for_bad_images_and_bad_datasets(run, photos_dir, tmp_path):
    listing = tmp_path / "list.csv"
    (tmp_path / "broken.png").write_bytes(b"\x89PNG broken")
    listing.write_text(f"path,label\n{photos_dir / 'coffee.jpg'},espresso\nbroken.png,espresso\n"
                       f"{photos_dir / 'camera.jpg'},no such class\n")
    result = run("audit", listing, "--out", tmp_path / "out", "--no-grids")
    assert result.exit_code == 1
    assert "2 images could not be audited" in result.output and "broken.png" in result.output
    assert "unknown class 'no such class'" in result.output
    assert run("audit", tmp_path / "missing", "--out", tmp_path / "o2").exit_code == 2


# ----- inspect ----------------------------------------------------------------------------------------
def test_inspect_bundled_model_text(run):
    result = run("inspect")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    sections = [line for line in lines if not line.startswith(" ")]
    assert sections == ["Model", "Inputs", "Outputs", "Preprocessing", "White-box",
                        "Devices (asked for f32, no model cache)"]
    text = "\n".join(lines)
    assert "  image          f32   ?x3x224x224      read as NCHW" in text
    assert "  scores         logits (no Softmax in the graph; values on a grey image)" in text
    assert "  origin         ov_explain spec in model rt_info" in text
    assert "feature map 1280x7x7 NCHW" in text
    assert "cam: OK (7x7 maps, probability read-out, algebraic shortcut)" in text
    assert "global average pooling + linear: ReciproCAM's shortcut and cam apply" in text
    assert any(line.startswith("  CPU            OK      CPU f32, ") for line in lines)


def test_inspect_json_has_the_same_facts_as_the_library(run):
    from ov_explain.tools.inspect_model import inspect_model

    result = run("inspect", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    expected = json.loads(json.dumps(inspect_model(device="CPU").to_dict()))
    for found in (data, expected):
        for device in found["devices"]:
            assert device.pop("compile_ms") > 0
    assert data == expected
    assert data["whitebox"]["target"]["shape"] == [1280, 7, 7] and data["scores"]["kind"] == "logits"


def test_inspect_model_without_a_feature_map_or_spec(run, tmp_path):
    from support import save_model, tiny_classifier_model

    path = save_model(tiny_classifier_model(), tmp_path / "pool")
    result = run("inspect", path)
    assert result.exit_code == 0, result.output
    assert "  origin         none found: plain resize to 8x8" in result.stdout
    assert "reciprocam: does not work (no spatial feature map" in result.stdout
    assert "auto falls back to black-box aise" in result.stdout
    assert "warning:" in result.stderr and "no preprocessing spec found" in result.stderr


def test_inspect_missing_model_is_one_line_exit_2(run, tmp_path):
    result = run("inspect", tmp_path / "nowhere.xml")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == f"error: {tmp_path / 'nowhere.xml'}: model file not found\n"


def test_predict_on_a_detector_lists_its_boxes(run, yolov8_path, photos_dir):
    result = run("predict", photos_dir / "astronaut.jpg", photos_dir / "coffee.jpg", "--model", yolov8_path,
                 "--device", "CPU", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["task"] == "detection" and report["output_format"] == "yolov8"
    astronaut, coffee = report["detections"]
    assert [d["label"] for d in astronaut["detections"]] == ["FACE_FEMALE"] and coffee["detections"] == []
    x1, y1, x2, y2 = astronaut["detections"][0]["box"]
    assert 0 <= x1 < x2 <= astronaut["image_size"][1] and 0 <= y1 < y2 <= astronaut["image_size"][0]
    text = run("predict", photos_dir / "coffee.jpg", "--model", yolov8_path, "--device", "CPU").output
    assert "no detections" in text
    refused = run("audit", photos_dir / "ground_truth.csv", "--model", yolov8_path, "--limit", "1")
    assert refused.exit_code == 2 and "a detector's dataset is a COCO instances .json, a YOLO folder" in refused.output
