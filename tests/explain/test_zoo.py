"""White-box maps on real architecture definitions: small timm configurations of every transformer family
(and a CNN and hybrids, which must keep their CNN method), converted with ``openvino.convert_model`` at
test time, each map checked against its definition computed in torch on the same weights
(``scripts/zoo/zoo_models.py``). torch and timm are test tools (the README's test command installs them)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from support import ROOT, compile_f32

sys.path.insert(0, str(ROOT / "scripts" / "zoo"))

if os.environ.get("OV_EXPLAIN_REQUIRE_TORCH"):
    import timm  # noqa: F401  (CI: fail, do not skip, when the test tools are missing)
    import torch  # noqa: F401
else:
    pytest.importorskip("torch")

import zoo_models  # noqa: E402
from zoo_models import Arch  # noqa: E402

from ov_explain.explain import build_xai_model  # noqa: E402
from ov_explain.explain.graph import find_token_layer, is_transformer  # noqa: E402
from ov_explain.tools.inspect_model import whitebox_report  # noqa: E402

pytestmark = pytest.mark.slow

VIT = dict(img_size=64, patch_size=16, embed_dim=64, depth=2, num_heads=2)
SMALL_TRANSFORMERS = [
    Arch("vit_tiny_patch16_224", "ViT", VIT, lambda m: m.blocks[-1], 1),
    Arch("vit_tiny_patch16_224", "ViT (avg pool)", dict(VIT, global_pool="avg", class_token=False, fc_norm=True),
         lambda m: m.blocks[-1], 0),
    Arch("vit_tiny_patch16_224", "ViT (registers)", dict(VIT, reg_tokens=4), lambda m: m.blocks[-1], 5),
    Arch("deit_tiny_distilled_patch16_224", "DeiT (distilled)", VIT, lambda m: m.blocks[-1], 2),
    Arch("eva02_tiny_patch14_224", "EVA-02", dict(img_size=56, patch_size=14, embed_dim=64, depth=2, num_heads=2),
         lambda m: m.blocks[-1], 1),
    Arch("cait_xxs24_224", "CaiT", dict(VIT, depth_token_only=1), lambda m: m.blocks[-1], 0),
    Arch("xcit_nano_12_p16_224", "XCiT", dict(VIT, cls_attn_layers=1), lambda m: m.cls_attn_blocks[-1], 1),
    Arch("pit_ti_224", "PiT", dict(img_size=96, depth=(1, 1, 1)), lambda m: m.transformers[-1].blocks[-1], 1),
    Arch("twins_svt_small", "Twins", dict(img_size=128, depths=(1, 1, 1, 2)), lambda m: m.blocks[-1][-1], 0),
    Arch("levit_128s", "LeViT", dict(img_size=128), lambda m: m.stages[-1].blocks[-1], 0),
]
CNN_LIKE = [Arch("resnet18", "ResNet", dict()), Arch("mobilevit_xxs", "MobileViT (hybrid)", dict()),
            Arch("pvt_v2_b0", "PVT-v2", dict())]


def _images(size: int, count: int = 2) -> np.ndarray:
    return np.random.default_rng(7).normal(0, 1, (count, 3, size, size)).astype(np.float32)


def _size(arch: Arch, default: int) -> int:
    return int(arch.options.get("img_size", default))


@pytest.fixture(scope="module")
def converted():
    """(torch model, OpenVINO model, input side) per architecture, built once per module."""
    cache: dict = {}

    def get(arch: Arch):
        key = (arch.name, arch.family)
        if key not in cache:
            model, size = zoo_models.build(arch, num_classes=5)
            size = _size(arch, size)
            cache[key] = (model, zoo_models.convert(model, size), size)
        return cache[key]

    return get


@pytest.mark.parametrize("arch", SMALL_TRANSFORMERS, ids=lambda a: a.family)
def test_transformer_maps_equal_their_torch_definition(arch, converted):
    model, ir, size = converted(arch)
    assert is_transformer(ir)
    xai = build_xai_model(ir, ir.outputs[0], None)  # what auto picks
    assert xai.method == "vitreciprocam" and xai.readout == "logit"
    layer = find_token_layer(ir)
    assert layer.aux_tokens == arch.tokens_before
    images = _images(size)
    compiled = compile_f32(xai.model)
    outputs = compiled(images)
    maps = np.asarray(outputs[compiled.output("saliency_map")])
    plain = compile_f32(ir)(images)
    np.testing.assert_allclose(np.asarray(outputs[compiled.outputs[0]]), np.asarray(plain[0]), rtol=1e-4, atol=1e-4)
    expected = zoo_models.vit_reciprocam_definition(model, arch, images, *xai.map_size)
    assert maps.shape == expected.shape == (2, 5, layer.height, layer.width)
    assert np.ptp(maps[0, 0]) > 0  # not a constant map
    assert np.corrcoef(maps.ravel(), expected.ravel())[0, 1] > 0.9999
    np.testing.assert_allclose(maps, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("arch", SMALL_TRANSFORMERS[:1] + SMALL_TRANSFORMERS[5:6], ids=lambda a: a.family)
def test_inspect_names_the_token_stream_and_grid(arch, converted):
    _, ir, _ = converted(arch)
    report = whitebox_report(ir, ir.outputs[0])
    assert (report.architecture, report.method, report.works) == ("transformer", "vitreciprocam", True)
    assert report.target.kind == "token_stream" and report.target.grid == report.map_size
    assert report.target.aux_tokens == arch.tokens_before


@pytest.mark.parametrize("arch", CNN_LIKE, ids=lambda a: a.family)
def test_cnns_and_hybrids_keep_their_cnn_method_and_definition(arch, converted):
    model, ir, size = converted(arch)
    xai = build_xai_model(ir, ir.outputs[0], None)
    assert xai.method in ("cam", "reciprocam") and not is_transformer(ir)
    images = _images(size)
    compiled = compile_f32(xai.model)
    maps = np.asarray(compiled(images)[compiled.output("saliency_map")])
    expected = zoo_models.cnn_definition(model, xai.method, xai.readout, images)
    assert maps.shape == expected.shape
    assert np.corrcoef(maps.ravel(), expected.ravel())[0, 1] > 0.9999


def test_no_cnn_method_on_an_attention_tensor(converted):
    """Asking a CNN method of a ViT is refused (its rank-4 tensors are attention heads), never run."""
    from ov_explain.explain import WhiteboxUnsupportedError
    from ov_explain.explain.graph import feature_map_candidates

    _, ir, _ = converted(SMALL_TRANSFORMERS[0])
    assert all("attn" not in c.name for c in feature_map_candidates(ir))
    with pytest.raises(WhiteboxUnsupportedError, match="vision transformer: use vitreciprocam"):
        build_xai_model(ir, ir.outputs[0], "activationmap")
