"""Structured names: hostile labels stay inside their folder, and parse(format(...)) round-trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ov_explain.runs.naming import file_labels, format_name, parse_name, safe_component, unique_stems

HOSTILE = ["../../etc/passwd", "cat/dog", "a\\b", "..", ".", "", " ", "\x00\x1f\x7f", "CON", "gt", "pr",
           "x_gt_y", "_pr_", "a_pr_0.50_b", "space shuttle", "crème brûlée", "猫", "-rf", "name.", "0.50",
           "x" * 500, "..\\..\\windows", "tab\there", "new\nline"]


@pytest.mark.parametrize("label", HOSTILE)
def test_safe_component_never_escapes_or_hides(label):
    safe = safe_component(label)
    assert safe and "/" not in safe and "\\" not in safe
    assert ".." not in safe and not safe.startswith((".", "-"))
    assert all(31 < ord(c) < 127 and c != " " for c in safe)
    assert len(safe) <= 80
    assert "_gt_" not in f"_{safe}_" and "_pr_" not in f"_{safe}_"


def test_seed_example_reads_back():
    name = format_name("n02115641_5752", "Chihuahua", 0.93, "dingo", 0.018)
    assert name == "n02115641_5752_gt_dingo_0.02_pr_Chihuahua_0.93.jpg"
    parts = parse_name(name)
    assert (parts.stem, parts.ground_truth, parts.ground_truth_confidence) == ("n02115641_5752", "dingo", 0.02)
    assert (parts.target, parts.target_confidence, parts.extension) == ("Chihuahua", 0.93, ".jpg")


def test_spaces_become_underscores_and_unlabeled_has_no_gt_part():
    assert format_name("img", "golden retriever", 0.5, extension=".npy") == "img_pr_golden_retriever_0.50.npy"
    assert parse_name("img_pr_golden_retriever_0.50.npy").ground_truth is None


def test_parse_rejects_other_names_with_the_pattern_in_the_message():
    with pytest.raises(ValueError, match="not a structured name"):
        parse_name("holiday.jpg")


def test_confidence_is_clipped_and_rounded():
    assert parse_name(format_name("a", "b", 1.0000001)).target_confidence == 1.0
    assert parse_name(format_name("a", "b", -1e-9)).target_confidence == 0.0
    assert parse_name(format_name("a", "b", 0.996)).target_confidence == 1.0


def test_stems_shared_by_two_class_folders_get_distinct_stable_suffixes():
    keys = ["beagle/img_1.jpg", "samoyed/img_1.jpg", "samoyed/IMG_1.png", "beagle/other.jpg"]
    stems = unique_stems(keys, ["img_1", "img_1", "IMG_1", "other"])
    assert stems[3] == "other"
    assert len({s.lower() for s in stems}) == 4  # also distinct on case-insensitive filesystems
    assert stems == unique_stems(keys, ["img_1", "img_1", "IMG_1", "other"])


def test_class_names_shared_by_two_classes_get_their_index():
    assert file_labels(["crane", "cat", "crane"]) == ["crane-0", "cat", "crane-2"]


text = st.text(st.characters(codec="utf-8"), min_size=0, max_size=120)
confidence = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@settings(max_examples=400, deadline=None)
@given(stem=text, target=text, target_conf=confidence, truth=st.one_of(st.none(), text), truth_conf=confidence,
       extension=st.sampled_from([".jpg", ".npy", ".rgba.png", ""]))
def test_format_then_parse_round_trips(stem, target, target_conf, truth, truth_conf, extension):
    name = format_name(stem, target, target_conf, truth, truth_conf if truth is not None else None, extension)
    parts = parse_name(name)
    assert "/" not in name and "\\" not in name and "\x00" not in name and len(name.encode()) <= 255
    assert parts.stem == safe_component(stem)
    assert parts.target == safe_component(target, max_length=60)
    assert parts.target_confidence == float(f"{target_conf:.2f}")
    assert parts.extension == extension
    if truth is None:
        assert parts.ground_truth is None and parts.ground_truth_confidence is None
    else:
        assert parts.ground_truth == safe_component(truth, max_length=60)
        assert parts.ground_truth_confidence == float(f"{truth_conf:.2f}")


def test_drift_names_carry_both_predictions_and_the_map_correlation_and_parse_back():
    from ov_explain.runs.naming import format_drift_name, parse_drift_name

    name = format_drift_name("grace_hopper", "academic gown", 0.2126, "military uniform", 0.1971, "academic gown",
                             0.9921, "military uniform", 0.21)
    assert name == ("grace_hopper_gt_military_uniform_0.21_pr_academic_gown_0.21__cand_military_uniform_0.20"
                    "__map_academic_gown_r_+0.99.jpg")
    parts = parse_drift_name(name)
    assert (parts.reference.stem, parts.reference.target, parts.reference.ground_truth) == \
        ("grace_hopper", "academic_gown", "military_uniform")
    assert (parts.candidate, parts.candidate_confidence, parts.target, parts.correlation) == \
        ("military_uniform", 0.20, "academic_gown", 0.99)
    negative = format_drift_name("x_r_-0.50", "a r -0.50", 1.0, "b", 0.5, "c r -0.25", -0.375, extension=".jpg")
    assert parse_drift_name(negative).correlation == -0.38 and parse_drift_name(negative).target == "c_r_-0.25"
    with pytest.raises(ValueError, match="not a drift file name"):
        parse_drift_name("coffee_pr_espresso_0.94.jpg")


def test_box_names_round_trip_and_refuse_what_they_did_not_make():
    from ov_explain.runs.naming import format_box_name, parse_box_name

    name = format_box_name("grace_hopper", "FACE_FEMALE", 0.784, 0, "FACE_FEMALE", 0.91)
    assert name == "grace_hopper_gt_FACE_FEMALE_0.91_pr_FACE_FEMALE_0.78_box0.jpg"
    parts = parse_box_name(name)
    assert (parts.name.stem, parts.name.ground_truth, parts.name.ground_truth_confidence, parts.name.target,
            parts.name.target_confidence, parts.box, parts.extension) == \
        ("grace_hopper", "FACE_FEMALE", 0.91, "FACE_FEMALE", 0.78, 0, ".jpg")
    unlabeled = parse_box_name(format_box_name("img_box2", "cat", 0.5, 12, extension=".npy"))
    assert (unlabeled.name.stem, unlabeled.name.ground_truth, unlabeled.box, unlabeled.extension) == \
        ("img_box2", None, 12, ".npy")  # a stem that itself ends in _box2 still parses
    with pytest.raises(ValueError, match="not a detection file name"):
        parse_box_name("coffee_gt_espresso_0.94_pr_espresso_0.94.jpg")
    with pytest.raises(ValueError, match="box: expected a number >= 0"):
        format_box_name("a", "b", 0.5, -1)
