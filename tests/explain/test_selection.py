"""Maps for only the classes asked for, selected inside the graph: same maps as computing them all."""

from __future__ import annotations

import numpy as np
import pytest
from support import compile_f32, save_model, tiny_cnn

from ov_explain import Classifier
from ov_explain.explain import Explainer, ExplainError
from ov_explain.explain.whitebox import CLASSES_OUTPUT, MapSelection, build_xai_model, read_xai_info

PHOTOS = ["coffee.jpg", "camera.jpg", "chelsea.jpg"]


@pytest.mark.parametrize("method", ["reciprocam", "cam"])
def test_top_k_and_named_classes_give_the_maps_of_the_all_classes_graph(classifier, photos_dir, method):
    explainer = Explainer(classifier, method=method)
    images = [str(photos_dir / name) for name in PHOTOS]
    selected = explainer.explain(images, top_k=3, threshold=0.0)
    everything = explainer.explain(images, targets=lambda p: [s.index for s in p.top[:3]])
    assert [MapSelection("top", k=3)] == list(explainer._runner._selected)  # one top-3 graph, compiled once
    for one, other in zip(selected, everything):
        assert [m.target for m in one.maps] == [m.target for m in other.maps] and len(one.maps) == 3
        for a, b in zip(one.maps, other.maps):
            np.testing.assert_allclose(a.raw, b.raw, rtol=1e-5, atol=1e-5)
        assert one.readout == {"cam": "probability", "reciprocam": "logit"}[method] and one.inferences == 1
    named = explainer.explain(images[0], targets=["espresso", "cup"])
    assert [m.name for m in named.maps] == ["espresso", "cup"]
    other = explainer.explain(images[1], targets=[872])
    # Given classes go in as a second input: one graph for every class list.
    assert list(explainer._runner._selected) == [MapSelection("top", k=3), MapSelection("given")]
    for image, result in ((images[0], named), (images[1], other)):
        reference = explainer.explain(image, targets="all")
        for saliency in result.maps:
            np.testing.assert_allclose(saliency.raw, reference.map_for(saliency.target).raw, rtol=1e-5, atol=1e-5)


def test_a_tie_at_the_kth_score_still_gives_the_chosen_class_its_map(tmp_path):
    """Two classes with identical weights tie exactly: whichever the graph's TopK keeps, the class the
    host picks gets its map (from the all-classes graph if needed)."""
    import openvino as ov

    model = tiny_cnn(num_classes=5)
    matmul = next(n for n in model.get_ordered_ops() if n.get_type_name() == "MatMul")
    weights = matmul.input_value(1).get_node().get_data().copy()
    weights[1] = np.abs(weights[0]) * 50  # classes 0 and 1: the same, large score (features are >= 0)
    weights[0] = weights[1]
    from ov_explain.core._compat import opset

    matmul.input(1).replace_source_output(opset.constant(weights).output(0))
    add = next(n for n in model.get_ordered_ops() if n.get_type_name() == "Add")
    add.input(1).replace_source_output(opset.constant(np.zeros(5, np.float32)).output(0))
    path = save_model(ov.Model(model.get_results(), model.get_parameters(), "tie"), tmp_path)
    (tmp_path / "model.preprocess.json").write_text('{"size": 16}')
    with Classifier(path, device="CPU") as tied:
        explainer = Explainer(tied, method="cam")
        image = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
        result = explainer.explain(image, top_k=1)
        reference = explainer.explain(image, targets="all")
    assert result.prediction.top[0].probability == pytest.approx(result.prediction.top[1].probability)
    target = result.maps[0].target
    assert target in (0, 1)
    np.testing.assert_allclose(result.maps[0].raw, reference.map_for(target).raw, rtol=1e-5, atol=1e-6)


def test_an_exported_top_k_ir_explains_its_classes_and_refuses_others(classifier, photos_dir, tmp_path):
    import openvino as ov

    xai = build_xai_model(classifier.model, classifier.output_port, "reciprocam", maps="top-2")
    assert {CLASSES_OUTPUT, "saliency_map"} <= {n for o in xai.model.outputs for n in o.get_names()}
    path = tmp_path / "top2.xml"
    ov.save_model(xai.model, str(path), compress_to_fp16=False)
    (tmp_path / "top2.labels.txt").write_text("\n".join(classifier.labels) + "\n")
    assert read_xai_info(ov.Core().read_model(str(path)))["maps"] == {"kind": "top", "k": 2, "classes": []}
    with Classifier(path, device="CPU") as exported:
        explainer = Explainer(exported)
        result = explainer.explain(str(photos_dir / "coffee.jpg"), top_k=2, threshold=0.0)
        assert [m.name for m in result.maps] == ["espresso", "cup"] and result.readout == "logit"
        reference = Explainer(classifier, method="reciprocam").explain(str(photos_dir / "coffee.jpg"), targets="all")
        for saliency in result.maps:
            np.testing.assert_allclose(saliency.raw, reference.map_for(saliency.target).raw, rtol=1e-5, atol=1e-5)
        with pytest.raises(ExplainError, match="this IR computes maps for top-2 classes only; tripod was asked for"):
            explainer.explain(str(photos_dir / "coffee.jpg"), targets=["tripod"])
        with pytest.raises(ExplainError, match="this IR's maps read out logit, not 'probability'"):
            Explainer(exported, readout="probability")


def test_selection_values_are_checked():
    model = tiny_cnn(num_classes=5)
    with pytest.raises(ExplainError, match="top-6 asked of a model with 5 classes"):
        build_xai_model(model, model.outputs[0], maps="top-6")
    with pytest.raises(ExplainError, match="class index 9 is out of range for 5 classes"):
        build_xai_model(model, model.outputs[0], maps="2,9")
    with pytest.raises(ExplainError, match="expected top-K with an integer K, got 'top-x'"):
        MapSelection.parse("top-x")
    mlp = tiny_cnn(head="mlp")  # the mosaic computes every class, and the graph keeps the asked ones
    mosaic = build_xai_model(mlp, mlp.outputs[0], maps="3,1")
    assert not mosaic.shortcut
    image = np.random.default_rng(1).normal(0, 1, (2, 3, 16, 16)).astype(np.float32)
    everything = compile_f32(build_xai_model(mlp, mlp.outputs[0]).model)(image)
    outputs = compile_f32(mosaic.model)(image)
    np.testing.assert_array_equal(outputs[CLASSES_OUTPUT], [[3, 1], [3, 1]])
    np.testing.assert_allclose(outputs["saliency_map"], everything["saliency_map"][:, [3, 1]], rtol=1e-5, atol=1e-6)


def test_no_selected_graph_where_it_saves_nothing_or_cannot_run(classifier, photos_dir, monkeypatch, caplog):
    """ReciproCAM's probability read-out needs every class's score: the all-classes graph serves it. A
    selected graph the device refuses falls back to the all-classes graph once, with a warning."""
    import logging

    from ov_explain.core.errors import DeviceError
    from ov_explain.explain import runners

    coffee = str(photos_dir / "coffee.jpg")
    probability = Explainer(classifier, method="reciprocam", readout="probability")
    result = probability.explain(coffee, top_k=2, threshold=0.0)
    assert probability._runner._selected[MapSelection("top", k=2)] is probability._runner._all
    assert [m.name for m in result.maps] == ["espresso", "cup"] and result.readout == "probability"

    explainer = Explainer(classifier)
    reference = explainer.explain(coffee, targets="all")

    def refuse(*args, **kwargs):
        raise DeviceError("NPU: input saliency_classes has dynamic dimensions [?,?]")

    monkeypatch.setattr(runners, "compile_like", refuse)
    with caplog.at_level(logging.WARNING, logger="ov_explain"):
        first = explainer.explain(coffee, targets=[967])
        second = explainer.explain(coffee, targets=[968])
    assert caplog.text.count("computing every class's maps instead") == 1  # said once, then remembered
    np.testing.assert_allclose(first.maps[0].raw, reference.map_for(967).raw, rtol=1e-6)
    np.testing.assert_allclose(second.maps[0].raw, reference.map_for(968).raw, rtol=1e-6)
