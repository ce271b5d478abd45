"""Exports of a detection audit (the real YOLOv8n on the bundled faces): FiftyOne detections and a heatmap per
box, loaded back in a fresh process; object-storage locators per box on a local folder."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from ov_explain.export import read_source
from ov_explain.runs.audit.run import audit

pytestmark = pytest.mark.slow

#: Reads a detection dataset back in a fresh process, as JSON.
LOADER = """
import json, sys
import fiftyone as fo
dataset = fo.load_dataset(sys.argv[1])
samples = {}
for sample in dataset:
    samples[sample.filepath.rsplit("/", 1)[-1]] = {
        "tags": sorted(sample.tags),
        "ground_truth": [[d.label, d.bounding_box] for d in sample.ground_truth.detections],
        "predictions": [[d.label, d.confidence, d["case"], d["iou"]] for d in sample.predictions.detections],
        "maps": {name: [value.map_path, value.target_class, value["case"]] for name, value in sample.iter_fields()
                 if isinstance(value, fo.Heatmap)}}
confident = dataset.filter_labels("predictions", fo.ViewField("case") == "True_positive_high_confidence")
print(json.dumps({"count": len(dataset), "kind": dataset.info["ov_explain_kind"], "samples": samples,
                  "true_positives": len(confident)}))
"""


@pytest.fixture(scope="module")
def faces_audit(tmp_path_factory, faces_coco, yolov8_path):
    out = tmp_path_factory.mktemp("faces-export") / "audit"
    audit(faces_coco, out, model=yolov8_path, device="CPU", cache_dir=None)
    return out


NO_FIFTYONE = importlib.util.find_spec("fiftyone") is None and os.environ.get("OV_EXPLAIN_REQUIRE_FIFTYONE") != "1"


@pytest.mark.skipif(NO_FIFTYONE, reason="fiftyone is not installed (the README's test command installs it)")
def test_the_fiftyone_dataset_loads_back_with_detections_and_a_heatmap_per_box(faces_audit, tmp_path):
    home = tmp_path / "fiftyone"
    env = {**os.environ, "FIFTYONE_DATABASE_DIR": str(home / "db"), "FIFTYONE_DO_NOT_TRACK": "true",
           "FIFTYONE_DATABASE_VALIDATION": "false", "FIFTYONE_CONFIG_PATH": str(home / "config.json")}
    try:
        done = subprocess.run([sys.executable, "-m", "ov_explain.cli", "export", str(faces_audit), "--to",
                               "fiftyone:faces"], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        loaded = subprocess.run([sys.executable, "-c", LOADER, "faces"], env=env, capture_output=True, text=True,
                                timeout=600)
        assert loaded.returncode == 0, loaded.stderr
    finally:
        subprocess.run(["pkill", "-f", str(home / "db")], check=False)
    data = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert data["count"] == 7 and data["kind"] == "detection" and data["true_positives"] == 3
    astronaut, chelsea = data["samples"]["astronaut.jpg"], data["samples"]["chelsea.jpg"]
    assert astronaut["tags"] == ["True_positive_high_confidence"]
    (label, (x, y, w, h)), = astronaut["ground_truth"]
    assert label == "FACE_FEMALE" and (x, y, w, h) == pytest.approx((170 / 512, 80 / 512, 106 / 512, 104 / 512))
    (found,) = astronaut["predictions"]
    assert found[0] == "FACE_FEMALE" and found[1] > 0.5 and found[2] == "True_positive_high_confidence" and \
        found[3] > 0.8
    assert list(astronaut["maps"]) == ["map_box0"] and astronaut["maps"]["map_box0"][1:] == \
        ["FACE_FEMALE", "True_positive_high_confidence"]
    assert os.path.isfile(astronaut["maps"]["map_box0"][0])
    assert chelsea["tags"] == ["False_negative"] and chelsea["predictions"] == []
    assert list(chelsea["maps"]) == ["map_box0_missed"] and chelsea["maps"]["map_box0_missed"][2] == "False_negative"
    assert data["samples"]["rocket.jpg"]["maps"] == {} and data["samples"]["rocket.jpg"]["tags"] == ["No_boxes"]


def test_object_storage_locators_give_each_box(faces_audit, run, tmp_path):
    target = tmp_path / "bucket"
    result = run("export", faces_audit, "--to", f"file://{target}")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (target / "locators.jsonl").read_text().splitlines()]
    assert len(rows) == read_source(faces_audit).maps == 4
    by_key = {r["key"]: r for r in rows}
    hopper = by_key["grace_hopper.jpg"]
    assert (hopper["case"], hopper["prediction"], hopper["ground_truth"]) == \
        ("True_positive_high_confidence", "FACE_FEMALE", "FACE_FEMALE")
    assert hopper["iou"] > 0.9 and hopper["truth_left"] == 166.0 and hopper["box_right"] > hopper["box_left"]
    missed = by_key["chelsea.jpg"]
    assert missed["case"] == "False_negative" and missed["prediction"] is None and missed["confidence"] is None
    assert (missed["box_left"], missed["box_bottom"]) == (80.0, 300.0) and missed["target_role"] == "box0_missed"
    for row in rows:
        assert (target / row["map_locator"].split(str(target) + "/", 1)[1]).is_file()
    header = (target / "locators.csv").read_text().splitlines()[0]
    assert "truth_left" in header and "iou" in header
