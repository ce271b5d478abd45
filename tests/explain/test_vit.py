"""ViT-ReciproCAM on transformer graphs built here (no pretrained ViT is available offline)."""

from __future__ import annotations

import numpy as np
import pytest
from support import compile_f32, save_model, tiny_vit

from ov_explain import Classifier, PreprocessSpec
from ov_explain.explain import Explainer, WhiteboxUnsupportedError, build_xai_model
from ov_explain.explain.base import ExplainError
from ov_explain.explain.graph import find_token_layer, is_transformer, token_layer_candidates
from ov_explain.explain.methods.vitreciprocam import gaussian_patch_masks

RED_CELL = (2, 1)  # the red square below covers patch row 2, column 1 of the 4x4 grid


def red_square_image() -> np.ndarray:
    image = np.zeros((32, 32, 3), np.uint8)
    image[16:24, 8:16, 0] = 255
    return image


def vit_classifier(tmp_path, **options) -> Classifier:
    path = save_model(tiny_vit(**options), tmp_path, "vit")
    return Classifier(path, device="CPU", preprocess=PreprocessSpec(size=32, std=(255, 255, 255)),
                      cache_dir=None)


def compile_and_run(model, batch):
    compiled = compile_f32(model)
    outputs = compiled(batch)
    return [np.asarray(outputs[o]) for o in compiled.outputs]


def test_target_is_the_token_stream_entering_the_last_block():
    model = tiny_vit(blocks=3)
    assert [c.name for c in token_layer_candidates(model)] == ["block1.input", "block2.input", "block3.input"]
    layer = find_token_layer(model)
    assert layer.name == "block3.input" and layer.norm_output.get_node().get_friendly_name() == "block3.norm1.out"
    assert (layer.tokens, layer.dim, layer.height, layer.width, layer.aux_tokens) == (17, 16, 4, 4, 1)
    assert layer.skip.get_friendly_name() == "block3.attention_residual"
    assert find_token_layer(model, "block1.input").name == "block1.input"
    assert is_transformer(model)
    plain = tiny_vit(markers=False)  # block inputs are the residual Adds themselves
    assert [c.name for c in token_layer_candidates(plain)] == ["embedding", "block1.mlp_residual"]


def test_bad_token_layer_names_list_candidates():
    model = tiny_vit()
    with pytest.raises(ExplainError, match=r"'block2.mlp_residual' is not a token stream entering a transformer "
                                           r"block .*candidates: block2.input \[17x16\], block1.input \[17x16\]"):
        find_token_layer(model, "block2.mlp_residual")
    with pytest.raises(ExplainError, match="no node named 'nope'"):
        find_token_layer(model, "nope")


def test_cnn_is_not_a_transformer_and_has_no_token_layer(classifier):
    assert not is_transformer(classifier.model)
    with pytest.raises(WhiteboxUnsupportedError, match="no transformer block found"):
        build_xai_model(classifier.model, classifier.output_port, "vitreciprocam")


def test_gaussian_masks_are_3x3_neighbourhoods_cut_at_the_border():
    masks = gaussian_patch_masks(4, 5)
    assert masks.shape == (20, 4, 5)
    np.testing.assert_allclose(masks[7, 0:3, 1:4], [[1 / 16, 1 / 8, 1 / 16], [1 / 8, 1 / 4, 1 / 8],
                                                   [1 / 16, 1 / 8, 1 / 16]])
    assert masks[7].sum() == pytest.approx(1.0) and masks[0].sum() == pytest.approx(9 / 16)
    assert masks[0, 0, 0] == 0.25 and masks[0, 2:, :].sum() == 0 and masks[19, 3, 4] == 0.25


@pytest.mark.parametrize("batch, markers", [(-1, True), (1, False)])
def test_cell_map_is_the_tail_on_that_masked_neighbourhood(batch, markers):
    """Definition check: map[k, i, j] = the last block and head run on tokens where the patch grid is
    weighted by the Gaussian around (i, j) (CLS kept), on the raw stream (skip) and after the norm."""
    import openvino as ov

    from ov_explain.core._compat import opset

    model = tiny_vit(batch=batch, markers=markers)
    xai = build_xai_model(model, model.outputs[0], "vitreciprocam")
    expected_layer = "block2.input" if markers else "block1.mlp_residual"
    assert (xai.method, xai.target_layer, xai.map_size, xai.shortcut) == ("vitreciprocam", expected_layer,
                                                                          (4, 4), False)
    images = np.random.default_rng(1).normal(0, 1, (1 if batch == 1 else 2, 3, 32, 32)).astype(np.float32)
    scores, maps = compile_and_run(xai.model, images)
    np.testing.assert_allclose(scores, compile_and_run(model, images)[0], atol=1e-5)  # predictions untouched
    assert maps.shape == (len(images), 5, 4, 4)

    # Independently: the stream and its normalised copy from the model, the tail as its own graph.
    layer = find_token_layer(model)
    stream, normed = compile_and_run(ov.Model([layer.node.output(0), layer.norm_output], model.get_parameters()),
                                     images)
    tail = model.clone()
    nodes = {n.get_friendly_name(): n for n in tail.get_ordered_ops()}
    stream_in = opset.parameter([-1, 17, 16], ov.Type.f32)
    normed_in = opset.parameter([-1, 17, 16], ov.Type.f32)
    nodes["block2.attention_residual"].input(0).replace_source_output(stream_in.output(0))
    for consumer in list(nodes["block2.norm1.out"].output(0).get_target_inputs()):
        consumer.replace_source_output(normed_in.output(0))
    tail_model = ov.Model([tail.get_results()[0].input_value(0)], [stream_in, normed_in])
    weights = np.zeros((4, 4), np.float32)
    i, j = RED_CELL
    weights[i - 1:i + 2, j - 1:j + 2] = np.outer([1, 2, 1], [1, 2, 1]) / 16
    keep = np.concatenate([[1.0], weights.ravel()]).astype(np.float32)[None, :, None]
    for n in range(len(images)):
        expected = compile_and_run(tail_model, [stream[n:n + 1] * keep, normed[n:n + 1] * keep])[0][0]
        np.testing.assert_allclose(maps[n, :, i, j], expected, rtol=1e-4, atol=1e-4)


def test_auto_picks_vit_reciprocam_and_the_map_finds_the_planted_object(tmp_path):
    classifier = vit_classifier(tmp_path, planted=True)
    explainer = Explainer(classifier)  # mode auto, no method: the graph decides
    assert (explainer.mode, explainer.method, explainer.target_layer) == ("whitebox", "vitreciprocam",
                                                                          "block2.input")
    result = explainer.explain(red_square_image(), targets=[0])
    assert (result.method, result.mode, result.inferences) == ("vitreciprocam", "whitebox", 1)
    raw = result.maps[0].raw
    assert raw.shape == (4, 4) and np.unravel_index(raw.argmax(), raw.shape) == RED_CELL
    on_image = result.maps[0].on_image
    y, x = np.unravel_index(on_image.argmax(), on_image.shape)
    assert 14 <= y < 26 and 6 <= x < 18  # on the red square (16..24, 8..16), give or take the smoothing
    # The object moves, the map follows; a batch gives what single calls give.
    moved = np.roll(red_square_image(), (-8, 16), axis=(0, 1))
    both = explainer.explain([red_square_image(), moved], targets=[0])
    np.testing.assert_allclose(both[0].maps[0].raw, raw, atol=1e-5)
    assert np.unravel_index(both[1].maps[0].raw.argmax(), (4, 4)) == (1, 3)


def test_whitebox_mode_on_a_vit_and_export_round_trip(tmp_path):
    import openvino as ov

    classifier = vit_classifier(tmp_path)
    explainer = Explainer(classifier, mode="whitebox")
    assert explainer.method == "vitreciprocam"
    image = np.random.default_rng(2).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    fresh = explainer.explain(image, targets="all")
    assert len(fresh.maps) == 5 and fresh.maps[0].on_image.shape == (40, 48)
    xai = build_xai_model(classifier.model, classifier.output_port, None)
    path = tmp_path / "vit_xai.xml"
    ov.save_model(xai.model, str(path), compress_to_fp16=False)
    reloaded = Classifier(path, device="CPU", preprocess=classifier.spec, cache_dir=None)
    direct = Explainer(reloaded)
    assert (direct.method, direct.target_layer, direct.compiled) == ("vitreciprocam", "block2.input",
                                                                          reloaded.compiled)
    again = direct.explain(image, targets="all")
    for a, b in zip(fresh.maps, again.maps):
        np.testing.assert_allclose(a.raw, b.raw, atol=1e-5)


def test_cli_explains_and_exports_a_vit(tmp_path):
    import json

    import cv2
    from click.testing import CliRunner

    from ov_explain.cli import main

    model_path = save_model(tiny_vit(planted=True), tmp_path, "vit")
    PreprocessSpec(size=32, std=(255, 255, 255)).to_json(tmp_path / "vit.preprocess.json")
    photo = tmp_path / "red.png"
    cv2.imwrite(str(photo), cv2.cvtColor(np.kron(red_square_image(), np.ones((2, 2, 1), np.uint8)), cv2.COLOR_RGB2BGR))
    runner = CliRunner()
    result = runner.invoke(main, ["explain", str(photo), "--model", str(model_path), "--targets", "0",
                                  "--out", str(tmp_path / "out"), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    explanation = report["explanations"][0]
    assert (report["method"], explanation["target_layer"], explanation["inferences"]) == \
        ("vitreciprocam", "block2.input", 1)
    overlay = cv2.imread(explanation["maps"][0]["overlay"])
    assert overlay.shape == (64, 64, 3)
    exported = runner.invoke(main, ["export-xai", "--model", str(model_path), "--out", str(tmp_path / "x.xml")])
    assert exported.exit_code == 0
    assert "vitreciprocam at block2.input (4x4 maps for all classes, logit read-out)" in exported.output
