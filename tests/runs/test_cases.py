"""Case rules, table-driven: every combination lands in exactly one documented case."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ov_explain.runs.cases import (
    CASES,
    FP_HIGH,
    FP_LOW,
    NO_GT_HIGH,
    NO_GT_LOW,
    NO_GT_TWO,
    ROLE_GROUND_TRUTH,
    ROLE_PREDICTED,
    ROLE_RUNNER_UP,
    TP_HIGH,
    TP_LOW,
    TP_TWO,
    CaseThresholds,
    classify_case,
)


def probs(*top: float, classes: int = 10) -> np.ndarray:
    """Probabilities with the given values on classes 0, 1, ... and the rest spread evenly."""
    vector = np.full(classes, (1.0 - sum(top)) / (classes - len(top)))
    vector[:len(top)] = top
    return vector


# (probabilities, ground truth, expected case, expected (class, role) targets) - seed-like examples.
TABLE = [
    (probs(0.97, 0.01), 0, TP_HIGH, ((0, ROLE_PREDICTED),)),              # beagle 0.97
    (probs(0.50, 0.10), 0, TP_HIGH, ((0, ROLE_PREDICTED),)),              # exactly at the threshold
    (probs(0.18, 0.05), 0, TP_LOW, ((0, ROLE_PREDICTED),)),               # Shih-Tzu 0.18
    (probs(0.4999, 0.1), 0, TP_LOW, ((0, ROLE_PREDICTED),)),
    (probs(0.43, 0.39), 0, TP_TWO, ((0, ROLE_PREDICTED), (1, ROLE_RUNNER_UP))),   # Samoyed vs crib
    (probs(0.57, 0.30), 1, TP_TWO, ((0, ROLE_PREDICTED), (1, ROLE_RUNNER_UP))),   # truth is the runner-up
    (probs(0.70, 0.20), 1, TP_TWO, ((0, ROLE_PREDICTED), (1, ROLE_RUNNER_UP))),   # runner-up at threshold
    (probs(0.93, 0.02), 5, FP_HIGH, ((0, ROLE_PREDICTED), (5, ROLE_GROUND_TRUTH))),  # dingo -> Chihuahua
    (probs(0.60, 0.30), 5, FP_HIGH, ((0, ROLE_PREDICTED), (5, ROLE_GROUND_TRUTH))),  # two, but truth not in them
    (probs(0.40, 0.18), 1, FP_LOW, ((0, ROLE_PREDICTED), (1, ROLE_GROUND_TRUTH))),   # tabby -> tiger cat
    (probs(0.17, 0.10), 6, FP_LOW, ((0, ROLE_PREDICTED), (6, ROLE_GROUND_TRUTH))),
    (probs(0.90, 0.05), None, NO_GT_HIGH, ((0, ROLE_PREDICTED),)),
    (probs(0.30, 0.10), None, NO_GT_LOW, ((0, ROLE_PREDICTED),)),
    (probs(0.45, 0.35), None, NO_GT_TWO, ((0, ROLE_PREDICTED), (1, ROLE_RUNNER_UP))),
]


@pytest.mark.parametrize("probabilities, truth, case, targets", TABLE)
def test_case_table(probabilities, truth, case, targets):
    decision = classify_case(probabilities, truth)
    assert decision.case == case
    assert decision.targets == targets


def test_thresholds_are_configurable():
    p = probs(0.6, 0.1)
    assert classify_case(p, 0, CaseThresholds(high_confidence=0.7)).case == TP_LOW
    assert classify_case(p, 0, CaseThresholds(two_predictions=0.05)).case == TP_TWO


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan")])
def test_thresholds_outside_zero_one_are_refused(bad):
    with pytest.raises(ValueError, match="high_confidence"):
        CaseThresholds(high_confidence=bad)


def test_bad_inputs_are_refused_with_the_value():
    with pytest.raises(ValueError, match="out of range"):
        classify_case(probs(0.9), 10)
    with pytest.raises(ValueError, match="shape"):
        classify_case(np.ones((2, 5)) / 5, 0)


@settings(max_examples=300, deadline=None)
@given(raw=st.lists(st.floats(0.001, 1.0), min_size=2, max_size=12), truth=st.one_of(st.none(), st.integers(0, 11)),
       high=st.floats(0.05, 1.0), two=st.floats(0.05, 1.0))
def test_every_image_lands_in_exactly_one_known_case(raw, truth, high, two):
    p = np.asarray(raw) / np.sum(raw)
    truth = None if truth is None else truth % len(raw)
    decision = classify_case(p, truth, CaseThresholds(high, two))
    assert decision.case in CASES
    indices = [i for i, _ in decision.targets]
    assert indices[0] == int(np.argmax(p)) and len(set(indices)) == len(indices)
    if truth is not None and decision.case.startswith("False"):
        assert truth in indices  # the engineer sees what the model looked at for the truth too
    assert decision.case.startswith("No_ground_truth") == (truth is None)
