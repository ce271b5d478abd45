"""Dataset readers and label resolution."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from ov_explain.core.errors import LabelsError
from ov_explain.core.resources import default_model_path
from ov_explain.runs.config import DatasetConfig
from ov_explain.runs.dataset import (
    DatasetError,
    LabelResolver,
    Sample,
    default_label_map,
    read_dataset,
    read_label_map,
    select,
)

NAMES = ["tench", "goldfish", "golden retriever", "tabby", "tiger cat"]


@pytest.fixture
def class_folders(tmp_path: Path, photos_dir: Path) -> Path:
    root = tmp_path / "data"
    for folder, photo in [("n02123045", "chelsea.jpg"), ("n02123159", "chelsea.jpg"), ("tabby", "coffee.jpg")]:
        (root / folder).mkdir(parents=True)
        shutil.copy(photos_dir / photo, root / folder / "img_1.jpg")
    (root / "tabby" / "notes.txt").write_text("not an image")
    (root / "tabby" / ".hidden.jpg").write_bytes(b"")
    (root / ".cache").mkdir()
    return root


def test_class_folders_are_read_in_a_stable_order_with_labels_and_unique_keys(class_folders):
    samples = read_dataset(class_folders)
    assert [(s.label, s.key) for s in samples] == [("n02123045", "n02123045/img_1.jpg"),
                                                   ("n02123159", "n02123159/img_1.jpg"), ("tabby", "tabby/img_1.jpg")]
    assert all(s.path.is_file() for s in samples)


def test_a_folder_with_images_directly_inside_is_unlabeled(photos_dir):
    samples = read_dataset(photos_dir)
    assert len(samples) == 7 and all(s.label is None for s in samples)
    assert read_dataset(photos_dir, kind="unlabeled") == samples


def test_csv_paths_are_relative_to_the_csv_and_blank_labels_mean_unlabeled(tmp_path, photos_dir):
    listing = tmp_path / "list.csv"
    listing.write_text(f"path,label\n{photos_dir / 'coffee.jpg'},espresso\nmissing.jpg,\n"
                       f"{photos_dir / 'coffee.jpg'},cup\n")
    samples = read_dataset(listing)
    assert samples[0] == Sample(photos_dir / "coffee.jpg", "espresso", (photos_dir / "coffee.jpg").as_posix())
    assert samples[1].path == tmp_path / "missing.jpg" and samples[1].label is None
    assert len(samples) == 2  # the duplicate row was dropped (first kept)


def test_bundled_ground_truth_csv(photos_dir):
    samples = read_dataset(photos_dir / "ground_truth.csv")
    assert {s.key: s.label for s in samples}["coffee.jpg"] == "espresso"


def test_jsonl_list(tmp_path, photos_dir):
    listing = tmp_path / "list.jsonl"
    listing.write_text(json.dumps({"path": str(photos_dir / "camera.jpg"), "label": "tripod"}) + "\n\n"
                       + json.dumps({"path": "rel.png"}) + "\n")
    samples = read_dataset(listing)
    assert [(s.label, s.path.name) for s in samples] == [("tripod", "camera.jpg"), (None, "rel.png")]


@pytest.mark.parametrize("content, kind, message", [
    ("file,label\na.jpg,x\n", "csv", "expected a header with columns 'path'"),
    ('{"path": "a.jpg"}\n{broken\n', "jsonl", r"list\.jsonl:2: invalid JSON"),
    ('["a.jpg"]\n', "jsonl", "expected an object"),
])
def test_broken_lists_name_the_file_and_line(tmp_path, content, kind, message):
    listing = tmp_path / f"list.{kind}"
    listing.write_text(content)
    with pytest.raises(DatasetError, match=message):
        read_dataset(listing)


def test_missing_empty_and_unknown_datasets_are_clear(tmp_path):
    with pytest.raises(DatasetError, match="dataset not found"):
        read_dataset(tmp_path / "nope")
    with pytest.raises(DatasetError, match="no images found"):
        read_dataset(tmp_path)
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(DatasetError, match="expected a folder, a .csv or a .jsonl"):
        read_dataset(tmp_path / "x.txt")


def test_select_filters_samples_and_limits_reproducibly():
    samples = [Sample(Path(f"{i}.jpg"), "cat" if i % 2 else "Golden_retriever", f"{i}.jpg") for i in range(20)]
    assert len(select(samples, classes=["golden retriever"])) == 10
    first = select(samples, sample=5, seed=3)
    assert first == select(samples, sample=5, seed=3) and first != select(samples, sample=5, seed=4)
    assert [s.key for s in first] == sorted((s.key for s in first), key=lambda k: int(k.split(".")[0]))
    assert select(samples, limit=3) == samples[:3]
    with pytest.raises(DatasetError, match="limit"):
        select(samples, limit=0)


def test_label_map_formats(tmp_path):
    ordered = tmp_path / "synsets.txt"
    ordered.write_text("n01440764\nn01443537\n")
    assert read_label_map(ordered) == {"n01440764": "0", "n01443537": "1"}
    pairs = tmp_path / "map.csv"
    pairs.write_text("# folder, class\nn02099601,golden retriever\nn02123045\ttabby\n")
    assert read_label_map(pairs) == {"n02099601": "golden retriever", "n02123045": "tabby"}
    spaced = tmp_path / "map.txt"
    spaced.write_text("n02099601 golden retriever\nn02123045 tabby\n")
    assert read_label_map(spaced)["n02099601"] == "golden retriever"
    as_json = tmp_path / "map.json"
    as_json.write_text('{"n02123159": "tiger cat"}')
    assert read_label_map(as_json) == {"n02123159": "tiger cat"}
    as_json.write_text("[1, 2]")
    with pytest.raises(LabelsError, match="expected a JSON object"):
        read_label_map(as_json)
    with pytest.raises(LabelsError, match="label map not found"):
        read_label_map(tmp_path / "none.txt")


def test_bundled_model_ships_its_synset_map():
    mapping = read_label_map(default_label_map(default_model_path()))
    assert len(mapping) == 1000 and mapping["n02123045"] == "281"  # tabby


def test_label_resolver_names_ids_indices_and_close_matches():
    resolve = LabelResolver(NAMES, len(NAMES), {"n02123045": "3", "n02099601": "golden retriever"})
    assert resolve("n02123045") == 3
    assert resolve("n02099601") == 2
    assert resolve("Golden_Retriever") == 2
    assert resolve("tiger cat") == 4
    assert resolve("1") == 1
    with pytest.raises(LabelsError, match="label 'tabbby'.*close matches: tabby"):
        resolve("tabbby")
    with pytest.raises(LabelsError, match="mapped from 'n0'"):
        LabelResolver(NAMES, 5, {"n0": "dog"})("n0")


def test_images_folder_is_refused_for_a_classifiers_dataset(photos_dir):
    with pytest.raises(DatasetError, match="--images names where a COCO file's images are"):
        DatasetConfig(images=photos_dir).read(photos_dir, exclude=None)
    assert len(DatasetConfig().read(photos_dir, exclude=None)[0]) == 7


def test_a_file_name_that_is_not_utf8_is_refused_by_name_and_a_utf8_one_is_read(tmp_path, photos_dir):
    root = tmp_path / "data"
    (root / "espresso").mkdir(parents=True)
    shutil.copy(photos_dir / "coffee.jpg", root / "espresso" / "café ☕.jpg")  # UTF-8: an ordinary name
    assert [s.key for s in read_dataset(root)] == ["espresso/café ☕.jpg"]
    latin1 = os.fsdecode(bytes(root / "espresso") + b"/caf\xe9.jpg")  # what Linux gives for latin-1 bytes
    shutil.copy(photos_dir / "coffee.jpg", latin1)
    with pytest.raises(DatasetError) as refused:
        read_dataset(root)
    assert str(refused.value) == (f"{root}/espresso/caf\\xe9.jpg: path is not UTF-8; rename the file or folder "
                                  "(a run's rows, CSVs and report are UTF-8 text)")
    listing = tmp_path / "list.jsonl"  # a list's escaped lone surrogate: no file name's bytes, still one line
    listing.write_text(json.dumps({"path": "\ud800.jpg", "label": "espresso"}) + "\n")
    with pytest.raises(DatasetError, match=r"\\ud800\.jpg: path is not UTF-8"):
        read_dataset(listing)
