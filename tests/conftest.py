"""Shared fixtures: the real bundled model and photos, and small graphs built on the spot."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from ov_explain.core import resources


@pytest.fixture(scope="session")
def photos_dir() -> Path:
    return resources.sample_images_dir()


@pytest.fixture(scope="session")
def ground_truth(photos_dir: Path) -> dict[str, str]:
    with open(photos_dir / "ground_truth.csv", newline="") as handle:
        return {row["path"]: row["label"] for row in csv.DictReader(handle)}


@pytest.fixture
def run(monkeypatch, tmp_path):
    """``run("predict", path, ...)``: the ov-explain CLI in-process, with its own model cache."""
    from click.testing import CliRunner

    from ov_explain.cli import main

    monkeypatch.setenv("OV_EXPLAIN_CACHE_DIR", str(tmp_path / "cache"))

    def invoke(*args: str):
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke


@pytest.fixture
def photo_copies(tmp_path: Path, photos_dir: Path, ground_truth: dict[str, str]):
    """``photo_copies(n)``: a class-folder dataset of the 7 photos, ``n`` times each (named by label)."""
    import shutil

    def make(times: int) -> Path:
        root = tmp_path / f"copies_{times}"
        for name, label in ground_truth.items():
            (root / label).mkdir(parents=True, exist_ok=True)
            for i in range(times):
                shutil.copy(photos_dir / name, root / label / f"{Path(name).stem}_{i}.jpg")
        return root

    return make


@pytest.fixture(scope="session")
def classifier():
    """The bundled EfficientNet-Lite0 on CPU, compiled once for the whole session (no disk cache)."""
    from ov_explain import Classifier

    return Classifier(device="CPU", cache_dir=None)


@pytest.fixture(scope="session")
def chelsea_rgb(photos_dir: Path) -> np.ndarray:
    from ov_explain import read_image

    return read_image(photos_dir / "chelsea.jpg")




@pytest.fixture(scope="session")
def yolov8_path() -> Path:
    """A real detector: nudenet 3.4.2's ``320n.onnx`` (MIT), a YOLOv8n export with 18 classes (FACE_FEMALE,
    FACE_MALE, ...), installed from the package registry by the ``tests`` extra, never committed."""
    import importlib.util

    found = importlib.util.find_spec("nudenet")
    if found is None or not found.submodule_search_locations:
        pytest.fail('nudenet is not installed: pip install -e ".[tests]" (it ships the test detector)')
    return Path(list(found.submodule_search_locations)[0]) / "320n.onnx"


@pytest.fixture(scope="session")
def yolov8(yolov8_path):
    """The real YOLOv8n on CPU in f32, its own letterbox convention (read from its metadata), compiled once."""
    from ov_explain.core.detector import Detector

    with Detector(yolov8_path, device="CPU", cache_dir=None) as detector:
        yield detector


@pytest.fixture(scope="session")
def faces_coco(photos_dir: Path) -> Path:
    """The bundled COCO file: faces boxed by hand on astronaut, grace_hopper and camera, and the cat's face on
    chelsea (the face detector does not find it); the other photos have no box."""
    return photos_dir / "faces_coco.json"


@pytest.fixture
def face_copies(tmp_path: Path, photos_dir: Path, faces_coco: Path):
    """``face_copies(n)``: a COCO file of the 7 photos ``n`` times each (copied beside it) with their boxes."""
    import json
    import shutil

    def make(times: int) -> Path:
        data = json.loads(faces_coco.read_text())
        root = tmp_path / f"faces_{times}"
        root.mkdir()
        images, annotations = [], []
        for copy in range(times):
            for image in data["images"]:
                name = f"{Path(image['file_name']).stem}_{copy}.jpg"
                shutil.copy(photos_dir / image["file_name"], root / name)
                images.append({**image, "id": len(images) + 1, "file_name": name})
                annotations += [{**a, "id": len(annotations) + 1 + k, "image_id": len(images)}
                                for k, a in enumerate(x for x in data["annotations"] if x["image_id"] == image["id"])]
        path = root / "instances.json"
        path.write_text(json.dumps({**data, "images": images, "annotations": annotations}))
        return path

    return make
