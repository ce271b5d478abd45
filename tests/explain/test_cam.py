"""CAM is Grad-CAM for a global-average-pooling + linear head: checked against gradients taken by
finite differences on a small real graph, for the logit and the probability read-outs."""

from __future__ import annotations

import numpy as np
import pytest
from support import compile_f32, tiny_cnn

from ov_explain.explain import ExplainError
from ov_explain.explain.base import WhiteboxUnsupportedError
from ov_explain.explain.graph import find_target_layer
from ov_explain.explain.whitebox import build_xai_model


def _features_and_tail(model):
    """The target feature map's values for an input, and the network after it as its own model."""
    import openvino as ov

    from ov_explain.core._compat import opset

    target = find_target_layer(model)
    with_features = model.clone()
    node = next(n for n in with_features.get_ordered_ops() if n.get_friendly_name() == target.name)
    with_features.add_outputs([node.output(0)])
    tail = model.clone()
    node = next(n for n in tail.get_ordered_ops() if n.get_friendly_name() == target.name)
    features = opset.parameter([-1, target.channels, target.height, target.width], ov.Type.f32, name="features")
    for consumer in list(node.output(0).get_target_inputs()):
        consumer.replace_source_output(features.output(0))
    tail = ov.Model([r.input_value(0) for r in tail.get_results()], [features], "tail")
    return compile_f32(with_features), compile_f32(tail)


def _grad_cam_by_finite_differences(tail, features: np.ndarray, target: int, readout: str, softmax_in_graph: bool,
                                    eps: float = 1e-2) -> np.ndarray:
    """Grad-CAM from numerical gradients: ReLU(sum_k mean_ij(d score / d A_kij) * A_k)."""
    def score(values: np.ndarray) -> np.ndarray:
        out = tail(values)[0].astype(np.float64)
        if readout == "probability" and not softmax_in_graph:
            out = np.exp(out - out.max(axis=1, keepdims=True))
            out /= out.sum(axis=1, keepdims=True)
        return out[:, target]

    flat = features.reshape(-1)
    plus = np.repeat(features, flat.size, axis=0).reshape(flat.size, -1)
    minus = plus.copy()
    plus[np.arange(flat.size), np.arange(flat.size)] += eps
    minus[np.arange(flat.size), np.arange(flat.size)] -= eps
    shape = (flat.size,) + features.shape[1:]
    gradient = (score(plus.reshape(shape).astype(np.float32)) - score(minus.reshape(shape).astype(np.float32))) \
        / (2 * eps)
    gradient = gradient.reshape(features.shape[1:])  # (C, H, W)
    weights = gradient.mean(axis=(1, 2))
    return np.maximum(np.tensordot(weights, features[0].astype(np.float64), axes=1), 0)


@pytest.mark.parametrize("softmax_in_graph", [False, True])
@pytest.mark.parametrize("readout", ["logit", "probability"])
def test_cam_equals_grad_cam_from_finite_differences(softmax_in_graph, readout):
    model = tiny_cnn(num_classes=5, softmax=softmax_in_graph)
    xai = build_xai_model(model, model.outputs[0], "cam", readout=readout)
    assert xai.method == "cam" and xai.readout == readout and xai.shortcut
    with_features, tail = _features_and_tail(model)
    if readout == "logit" and softmax_in_graph:
        # The scores before the softmax: the same seeded network without it.
        _, tail = _features_and_tail(tiny_cnn(num_classes=5))
        softmax_in_graph = False
    image = np.random.default_rng(3).normal(0, 1, (1, 3, 16, 16)).astype(np.float32)
    features = with_features(image)[1]
    maps = compile_f32(xai.model)(image)["saliency_map"][0]  # (K, 4, 4)
    # Real maps, not ReLU'd-away zeros (a probability's gradient is small for unlikely classes).
    assert sum(bool(np.abs(m).max() > 1e-4) for m in maps) >= (3 if readout == "logit" else 2)
    for target in range(5):
        expected = _grad_cam_by_finite_differences(tail, features, target, readout, softmax_in_graph)
        scale = max(float(np.abs(expected).max()), 1e-6)
        # Central differences of an f32 graph: the logit head is linear (error = f32 rounding / eps),
        # the softmax adds an O(eps^2) term; 1 % of the map's range covers both with room.
        np.testing.assert_allclose(maps[target], expected, atol=0.01 * scale)


def test_cam_refuses_a_head_that_is_not_pooling_plus_linear():
    model = tiny_cnn(head="mlp")
    with pytest.raises(WhiteboxUnsupportedError, match="cam needs global average pooling \\+ a linear layer right "
                                                       "after .*: use reciprocam"):
        build_xai_model(model, model.outputs[0], "cam")


def test_readout_is_checked_and_logit_needs_a_softmax_to_look_behind():
    model = tiny_cnn()
    with pytest.raises(ExplainError, match="cam: readout must be one of \\['logit', 'probability'\\], got 'raw'"):
        build_xai_model(model, model.outputs[0], "cam", readout="raw")
    # The user says the output is probabilities, and the graph has no softmax: there are no logits to read.
    with pytest.raises(ExplainError, match="the logit read-out needs the scores before the softmax"):
        build_xai_model(model, model.outputs[0], "reciprocam", readout="logit", output_kind="probabilities")
    default = build_xai_model(model, model.outputs[0], "reciprocam", output_kind="probabilities")
    assert default.readout == "probability"


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_reciprocam_logit_readout_reads_the_scores_before_the_softmax(head):
    """On a softmax-in-graph model the logit read-out's maps are the logits model's maps."""
    logits_model, softmax_model = tiny_cnn(head=head), tiny_cnn(head=head, softmax=True)
    image = np.random.default_rng(5).normal(0, 1, (2, 3, 16, 16)).astype(np.float32)
    maps = {}
    for name, model in (("logits", logits_model), ("softmax", softmax_model)):
        for readout in ("logit", "probability"):
            xai = build_xai_model(model, model.outputs[0], "reciprocam", readout=readout)
            maps[name, readout] = compile_f32(xai.model)(image)["saliency_map"]
    np.testing.assert_allclose(maps["softmax", "logit"], maps["logits", "logit"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(maps["softmax", "probability"], maps["logits", "probability"], rtol=1e-5, atol=1e-6)
    # Probabilities per cell sum to one over the classes; logits do not.
    np.testing.assert_allclose(maps["softmax", "probability"].sum(axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(maps["softmax", "logit"].sum(axis=1), 1.0)


def test_an_onnx_gemm_head_is_found_after_constant_folding_and_its_alpha_kept(tmp_path):
    """ONNX GlobalAveragePool + Gemm(alpha) + Softmax: CAM and the ReciproCAM shortcut apply and equal the
    mosaic (which runs the real head) — alpha and the pooling axes read correctly."""
    import onnx
    import openvino as ov
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(2)
    nodes = [helper.make_node("Conv", ["x", "w"], ["features"], kernel_shape=[4, 4], strides=[4, 4]),
             helper.make_node("Relu", ["features"], ["relu"]),
             helper.make_node("GlobalAveragePool", ["relu"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], alpha=0.5, transB=1),
             helper.make_node("Softmax", ["logits"], ["probs"], axis=1)]
    graph = helper.make_graph(nodes, "gemm_head",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 4])],
                              [numpy_helper.from_array(rng.normal(0, 0.5, (8, 3, 4, 4)).astype(np.float32), "w"),
                               numpy_helper.from_array(rng.normal(0, 1, (4, 8)).astype(np.float32), "fc_w"),
                               numpy_helper.from_array(rng.normal(0, 0.1, (4,)).astype(np.float32), "fc_b")])
    path = tmp_path / "gemm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    model = ov.Core().read_model(str(path))
    shortcut = build_xai_model(model, model.outputs[0], "reciprocam")
    mosaic = build_xai_model(model, model.outputs[0], "reciprocam", shortcut=False)
    cam = build_xai_model(model, model.outputs[0], "cam")
    assert shortcut.shortcut and not mosaic.shortcut and cam.shortcut
    image = rng.normal(0, 1, (1, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(compile_f32(shortcut.model)(image)["saliency_map"],
                               compile_f32(mosaic.model)(image)["saliency_map"], rtol=1e-4, atol=1e-5)
    assert compile_f32(cam.model)(image)["saliency_map"].shape == (1, 4, 4, 4)


def test_a_saturated_softmax_never_gives_a_vanished_map(tmp_path):
    """At p_c = 1.0 the probability map p_c (W_c - pᵀW)·A is exactly zero: that map is the logit map
    instead, and says so (the other image, not saturated, keeps its probability maps)."""
    from support import save_model

    from ov_explain import Classifier, PreprocessSpec
    from ov_explain.explain import Explainer

    model = tiny_cnn()
    rng = np.random.default_rng(3)
    calm = rng.normal(0, 1, (1, 3, 16, 16)).astype(np.float32)
    saturated = calm * 400  # logits hundreds apart: the top softmax is 1.0 exactly in f32
    logit_xai = build_xai_model(model, model.outputs[0], "cam", readout="logit")
    probability_xai = build_xai_model(model, model.outputs[0], "cam", readout="probability")
    batch = np.concatenate([calm, saturated])
    compiled = compile_f32(probability_xai.model)
    outputs = compiled(batch)
    maps, fallback = (np.asarray(outputs[compiled.output(name)])
                      for name in ("saliency_map", "saliency_logit_fallback"))
    logits = np.asarray(outputs[compiled.outputs[0]])
    top = int(logits[1].argmax())
    probabilities = np.exp(logits[1] - logits[1].max())
    assert (probabilities / probabilities.sum())[top] == np.float32(1.0)
    logit_compiled = compile_f32(logit_xai.model)
    logit_maps = np.asarray(logit_compiled(batch)[logit_compiled.output("saliency_map")])
    assert fallback[1, top] == 1 and np.ptp(maps[1, top]) > 0
    np.testing.assert_array_equal(maps[1, top], logit_maps[1, top])
    assert not fallback[0].any()  # the calm image: probability maps throughout

    # Through the explainer: the map records the read-out it holds.
    path = save_model(model, tmp_path, "cnn")
    with Classifier(path, device="CPU", preprocess=PreprocessSpec(size=16), cache_dir=None) as classifier:
        explainer = Explainer(classifier, method="cam", readout="probability")
        image = np.clip(rng.normal(128, 60, (16, 16, 3)), 0, 255).astype(np.uint8)  # pixels 0..255: saturates
        result = explainer.explain(image, targets="all")
        top = result.prediction.top[0].index
        assert result.readout == "probability" and result.prediction.top[0].probability == 1.0
        readouts = {m.target: m.readout for m in result.maps}
        assert readouts[top] == "logit" and np.ptp(result.map_for(top).raw) > 0
        assert result.to_dict()["maps"][top]["readout"] == "logit"
