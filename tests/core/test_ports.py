"""Finding outputs: by identity or by name, never a silent 0 when nothing matches, no ``==`` on nodes."""

from __future__ import annotations

import numpy as np
import pytest
from support import tiny_classifier_model

from ov_explain.core.errors import ModelLoadError
from ov_explain.core.ports import output_named, output_position


def two_output_model():
    """Outputs in the order (feature map, logits): the classification output is not the first one."""
    import openvino as ov

    from ov_explain.core._compat import opset

    parameter = opset.parameter([1, 3, 8, 8], ov.Type.f32, name="image")
    features = opset.relu(parameter)
    pooled = opset.reduce_mean(features, np.array([2, 3], np.int64), keep_dims=False)
    logits = opset.matmul(pooled, np.ones((3, 4), np.float32), False, False)
    features.output(0).get_tensor().set_names({"features"})
    logits.output(0).get_tensor().set_names({"logits"})
    return ov.Model([features, logits], [parameter], "two")


def test_output_position_finds_the_port_among_the_models_outputs():
    model = two_output_model()
    assert output_position(model.outputs, model.outputs[1]) == 1
    assert output_position(model.outputs, model.output("features")) == 0


def test_a_port_of_another_model_is_an_error_not_position_zero():
    model, other = two_output_model(), tiny_classifier_model()
    with pytest.raises(ModelLoadError, match="is not among the model's outputs"):
        output_position(model.outputs, other.outputs[0])


def test_output_named_names_what_exists_when_nothing_matches():
    model = two_output_model()
    assert output_named(model.outputs, "logits") == 1
    with pytest.raises(ModelLoadError, match=r"no output named 'saliency_map' \(outputs: features, logits\)"):
        output_named(model.outputs, "saliency_map")


def test_classifier_reads_the_class_scores_from_a_later_output(tmp_path):
    """The classifier finds (N, classes) behind a first output of another shape, on every OpenVINO."""
    from support import save_model

    from ov_explain import Classifier, PreprocessSpec

    classifier = Classifier(save_model(two_output_model(), tmp_path), device="CPU", cache_dir=None,
                            preprocess=PreprocessSpec(size=8), output="logits")
    assert classifier.output_index == 1 and classifier.num_classes == 4
    raw = classifier.infer(np.ones((1, 3, 8, 8), np.float32))
    np.testing.assert_allclose(raw, np.full((1, 4), 3.0), rtol=1e-5)


@pytest.mark.parametrize("method", ["reciprocam", "rise"])
def test_explanations_read_the_class_scores_behind_another_output(tmp_path, method):
    """A CNN that also exports its feature map, before its logits: the explainer takes the classes from
    the classification output for white-box and black-box alike (the old white-box code took the first
    output not called saliency_map, which was the feature map)."""
    import openvino as ov
    from support import save_model, tiny_cnn

    from ov_explain import Classifier, PreprocessSpec
    from ov_explain.explain import Explainer

    plain = tiny_cnn(head="mlp")
    feature_map = next(n for n in plain.get_ordered_ops() if n.get_type_name() == "Relu")
    feature_map.output(0).get_tensor().set_names({"features"})
    both = ov.Model([feature_map.output(0), plain.outputs[0]], plain.get_parameters(), "two_outputs")
    spec = PreprocessSpec(size=16)
    reference = Classifier(save_model(plain, tmp_path, "plain"), device="CPU", cache_dir=None, preprocess=spec)
    classifier = Classifier(save_model(both, tmp_path, "both"), device="CPU", cache_dir=None, preprocess=spec)
    assert classifier.output_index == 1
    image = np.random.default_rng(5).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    options = {"num_masks": 64, "num_cells": 2} if method == "rise" else {}
    expected = Explainer(reference, method=method, **options).explain(image, targets="all")
    got = Explainer(classifier, method=method, **options).explain(image, targets="all")
    np.testing.assert_allclose(got.prediction.probabilities, expected.prediction.probabilities, rtol=1e-5)
    assert len(got.maps) == 5
    for mine, theirs in zip(got.maps, expected.maps):
        np.testing.assert_allclose(mine.raw, theirs.raw, rtol=1e-4, atol=1e-6)
