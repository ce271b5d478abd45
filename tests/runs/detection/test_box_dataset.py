"""Datasets with boxes: a COCO file on the bundled photos and YOLO folders, read into boxes in the image's pixels."""

from __future__ import annotations

import json
import shutil

import pytest

from ov_explain.core.images import read_image
from ov_explain.runs.dataset import DatasetError
from ov_explain.runs.detection.audit import image_truths, resolve_truths
from ov_explain.runs.detection.dataset import read_box_dataset


def test_a_coco_file_gives_each_image_its_boxes(photos_dir, tmp_path):
    coco = {"images": [{"id": 1, "file_name": "astronaut.jpg"}, {"id": 2, "file_name": "coffee.jpg"}],
            "categories": [{"id": 7, "name": "FACE_FEMALE"}, {"id": 9, "name": "cup"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [174, 83, 100, 97]},
                            {"id": 2, "image_id": 1, "category_id": 9, "bbox": [10, 10, 5, 5], "iscrowd": 1}]}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(coco))
    astronaut, coffee = read_box_dataset(path, images=photos_dir)
    assert astronaut.path == photos_dir / "astronaut.jpg" and astronaut.key == "astronaut.jpg"
    assert [(b.label, b.box, b.crowd) for b in astronaut.boxes] == [("FACE_FEMALE", (174.0, 83.0, 274.0, 180.0), False),
                                                                   ("cup", (10.0, 10.0, 15.0, 15.0), True)]
    assert coffee.boxes == ()  # listed without annotations: an image with nothing in it
    path.write_text(json.dumps({**coco, "annotations": [{"image_id": 3, "category_id": 7, "bbox": [0, 0, 1, 1]}]}))
    with pytest.raises(DatasetError, match="annotation 1 is not an image_id / category_id / bbox"):
        read_box_dataset(path)


@pytest.mark.parametrize("names_file", ["data.yaml", "classes.txt"])
def test_a_yolo_folder_gives_boxes_in_pixels_once_the_image_is_read(photos_dir, tmp_path, names_file):
    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for name in ("camera.jpg", "chelsea.jpg"):
        shutil.copy(photos_dir / name, root / "images" / name)
    if names_file == "data.yaml":
        (root / "data.yaml").write_text("names:\n  0: FACE_MALE\n  1: cat\n")
    else:
        (root / "classes.txt").write_text("FACE_MALE\ncat\n")
    (root / "labels" / "camera.txt").write_text("0 0.5 0.25 0.25 0.125\n")
    camera, chelsea = read_box_dataset(root)
    assert [(b.label, b.box, b.relative) for b in camera.boxes] == [("FACE_MALE", (0.375, 0.1875, 0.625, 0.3125), True)]
    assert chelsea.boxes == ()  # labels/ but no labels file: a background image, as Ultralytics reads it
    truths = resolve_truths(root, [camera, chelsea], lambda name: ["FACE_MALE", "cat"].index(name))
    pixels = read_image(camera.path)
    assert pixels.shape[:2] == (512, 512)
    assert [(t.box, t.class_index, label) for t, label in image_truths(truths, camera.key, pixels)] == \
        [((192.0, 96.0, 320.0, 160.0), 0, "FACE_MALE")]
    assert image_truths(truths, chelsea.key, read_image(chelsea.path)) == ()
    shutil.rmtree(root / "labels")
    assert [s.boxes for s in read_box_dataset(root)] == [None, None]  # no labels/ at all: says nothing


@pytest.mark.parametrize("content, expected", [
    (b"5 0.5 0.5 0.1 0.1\n", r"camera.txt: line 1: expected 'class cx cy w h' with a class of 0..1"),
    (b"-1 0.5 0.5 0.1 0.1\n", r"camera.txt: line 1: expected 'class cx cy w h'.*got '-1 0.5"),
    (b"0 0.5 0.5\n", r"camera.txt: line 1: .*four numbers, got '0 0.5 0.5'"),
    (b"0 0.5 middle 0.1 0.1\n", r"camera.txt: line 1: .*got '0 0.5 middle"),
    (b"0 0.5 0.5 0.1 0.1\n\xff\xfe\n", r"camera.txt: cannot read the labels file \(UnicodeDecodeError"),
])
def test_a_bad_yolo_labels_file_is_one_line_naming_it(photos_dir, tmp_path, content, expected):
    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    shutil.copy(photos_dir / "camera.jpg", root / "images" / "camera.jpg")
    (root / "classes.txt").write_text("FACE_MALE\ncat\n")
    (root / "labels" / "camera.txt").write_bytes(content)
    with pytest.raises(DatasetError, match=expected):
        read_box_dataset(root)
    (root / "labels" / "camera.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DatasetError, match="--images names where a COCO file's images are; a yolo dataset"):
        read_box_dataset(root, images=photos_dir)
    (root / "classes.txt").unlink()
    with pytest.raises(DatasetError, match="needs data.yaml .names. or classes.txt"):
        read_box_dataset(root)


def test_a_coco_box_of_negative_size_is_refused_at_setup(tmp_path):
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 1, "name": "x"}],
                                "annotations": [{"image_id": 1, "category_id": 1, "bbox": [10, 10, -5, 4]}]}))
    with pytest.raises(DatasetError, match=r"annotation 1 .*width and height must not be negative, got -5.0 x 4.0"):
        read_box_dataset(path)
