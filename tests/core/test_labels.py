"""Labels files and class lookup by index or name."""

from __future__ import annotations

import pytest

from ov_explain.core.errors import LabelsError
from ov_explain.core.labels import check_labels, read_labels, resolve_class
from ov_explain.core.resources import default_model_path

NAMES = ["tabby", "tiger cat", "Egyptian cat", "espresso"]


def test_read_labels_strips_and_ignores_trailing_blank_lines(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("a\n b \nc\n\n\n")
    assert read_labels(path) == ["a", "b", "c"]


@pytest.mark.parametrize("content, message", [("", "empty"), ("a\n\nb\n", "line 2 is empty")])
def test_bad_labels_files(tmp_path, content, message):
    path = tmp_path / "labels.txt"
    path.write_text(content)
    with pytest.raises(LabelsError, match=message):
        read_labels(path)
    with pytest.raises(LabelsError, match="not found"):
        read_labels(tmp_path / "nope.txt")


def test_count_must_match():
    assert check_labels(NAMES, 4, "x") == NAMES
    with pytest.raises(LabelsError, match="x: 4 class names for a model with 5 classes"):
        check_labels(NAMES, 5, "x")


@pytest.mark.parametrize("target, index", [(3, 3), ("3", 3), ("espresso", 3), ("Tiger Cat", 1)])
def test_resolve_class(target, index):
    assert resolve_class(target, NAMES, 4) == index


def test_unknown_name_lists_close_matches():
    with pytest.raises(LabelsError, match="unknown class 'tiger kat'; close matches: tiger cat"):
        resolve_class("tiger kat", NAMES, 4)
    with pytest.raises(LabelsError, match="out of range 0..3"):
        resolve_class(4, NAMES, 4)


def test_bundled_labels_are_1000_unique_imagenet_names():
    names = read_labels(default_model_path().with_name("efficientnet_lite0.labels.txt"))
    assert len(names) == 1000 == len(set(names))
    assert names[967] == "espresso" and names[872] == "tripod" and names[281] == "tabby"
