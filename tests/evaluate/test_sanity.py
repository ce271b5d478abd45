"""The randomised-head copy: a different head, the same everything else, the original untouched."""

from __future__ import annotations

from collections import Counter

import numpy as np
import openvino as ov
import pytest
from support import compile_f32, tiny_classifier_model, tiny_cnn

from ov_explain.core import resources
from ov_explain.core._compat import opset
from ov_explain.core.errors import OvExplainError
from ov_explain.evaluate.sanity import head_matmul, randomize_head


def outputs(model, batch):
    return compile_f32(model)(batch)[0]


def test_randomized_head_of_a_small_cnn():
    model = tiny_cnn()
    batch = np.random.default_rng(0).normal(0, 1, (2, 3, 16, 16)).astype(np.float32)
    before = outputs(model, batch)
    _, trained = head_matmul(model)
    randomised = randomize_head(model, seed=5)
    _, weights = head_matmul(randomised)
    assert weights.shape == trained.shape == (5, 16)
    assert not np.allclose(outputs(randomised, batch), before)
    # The original is untouched: same weights, same outputs.
    np.testing.assert_array_equal(head_matmul(model)[1], trained)
    np.testing.assert_array_equal(outputs(model, batch), before)
    # Seeded: the same seed gives the same weights, another seed others.
    np.testing.assert_array_equal(head_matmul(randomize_head(model, seed=5))[1], weights)
    assert not np.array_equal(head_matmul(randomize_head(model, seed=6))[1], weights)


def test_randomized_head_of_the_bundled_fp16_model_keeps_its_std_and_the_rest():
    """The bundled IR stores weights as FP16 behind a Convert: the head is still found and replaced."""
    model = ov.Core().read_model(str(resources.default_model_path()))
    matmul, trained = head_matmul(model)
    assert trained.shape in ((1000, 1280), (1280, 1000))
    randomised = randomize_head(model, seed=0)
    _, weights = head_matmul(randomised)
    assert weights.dtype == np.float32 and weights.shape == trained.shape
    assert weights.std() == pytest.approx(trained.std(), rel=0.01)
    assert abs(np.corrcoef(weights.ravel(), trained.ravel())[0, 1]) < 0.01
    # Only the head's weights changed: the rest of the graph has the same operations.
    # Only the head's weights changed: the same operations, less the FP16 weights' Convert.
    before = Counter(n.get_type_name() for n in model.get_ordered_ops())
    after = Counter(n.get_type_name() for n in randomised.get_ordered_ops())
    assert before - after == Counter({"Convert": 1}) and not after - before
    batch = np.random.default_rng(1).normal(0, 1, (1, 3, 224, 224)).astype(np.float32)
    assert np.abs(outputs(randomised, batch) - outputs(model, batch)).max() > 1.0
    np.testing.assert_array_equal(head_matmul(model)[1], trained)


def test_a_model_without_a_linear_head_is_refused():
    parameter = opset.parameter([1, 4], ov.Type.f32, name="x")
    model = ov.Model([opset.relu(parameter)], [parameter], "no_head")
    with pytest.raises(OvExplainError, match="no MatMul with constant weights"):
        randomize_head(model)
    assert head_matmul(tiny_classifier_model())[1].shape == (3, 4)
