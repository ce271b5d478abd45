"""``vitcam`` is Grad-CAM at the patch tokens a mean + linear head reads: checked against torch's autograd on
real timm definitions (average-pooled ViT without ``fc_norm``, Twins), for both read-outs, and refused where
the head is not mean + linear."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from support import ROOT, compile_f32

sys.path.insert(0, str(ROOT / "scripts" / "zoo"))
if os.environ.get("OV_EXPLAIN_REQUIRE_TORCH"):
    import timm  # noqa: F401  (CI: fail, do not skip, when the test tools are missing)
else:
    pytest.importorskip("torch")

import zoo_models  # noqa: E402
from zoo_models import Arch  # noqa: E402

from ov_explain.explain import ExplainError, WhiteboxUnsupportedError, build_xai_model  # noqa: E402
from ov_explain.explain.graph import pooled_token_candidates  # noqa: E402
from ov_explain.explain.registry import default_whitebox_method  # noqa: E402

pytestmark = pytest.mark.slow

AVG_VIT = Arch("vit_tiny_patch16_224", "ViT (mean + linear)",
               {"img_size": 64, "embed_dim": 64, "depth": 2, "num_heads": 2, "global_pool": "avg",
                "class_token": False, "fc_norm": False})
TWINS = Arch("twins_svt_small", "Twins", {"img_size": 128, "depths": (1, 1, 1, 2)})


@pytest.fixture(scope="module", params=[AVG_VIT, TWINS], ids=lambda a: a.family)
def converted(request):
    model, _ = zoo_models.build(request.param, num_classes=5)
    size = request.param.options["img_size"]
    return model, zoo_models.convert(model, size), size


@pytest.mark.parametrize("readout", ["logit", "probability"])
def test_vitcam_equals_grad_cam_by_autograd(converted, readout):
    model, ir, size = converted
    [target] = pooled_token_candidates(ir)[-1:]
    xai = build_xai_model(ir, ir.outputs[0], "vitcam", readout=readout)
    assert (xai.method, xai.target_layer, xai.shortcut, xai.readout) == ("vitcam", target.name, True, readout)
    images = np.random.default_rng(5).normal(0, 1, (2, 3, size, size)).astype(np.float32)
    compiled = compile_f32(xai.model)
    maps = np.asarray(compiled(images)[compiled.output("saliency_map")])
    expected = zoo_models.token_cam_definition(model, images, readout, *xai.map_size)
    assert maps.shape == expected.shape == (2, 5, target.height, target.width)
    assert np.abs(expected).max() > 0
    # Graph and autograd run the same f32 arithmetic in different orders: 1e-4 of the largest value.
    np.testing.assert_allclose(maps, expected, atol=1e-4 * np.abs(expected).max())
    # Only the classes asked for: computed in the method, the same values.
    some = build_xai_model(ir, ir.outputs[0], "vitcam", readout=readout, maps="1,3")
    compiled = compile_f32(some.model)
    np.testing.assert_allclose(np.asarray(compiled(images)[compiled.output("saliency_map")]), maps[:, [1, 3]],
                               rtol=1e-5, atol=1e-6 * np.abs(maps).max())


def test_vitcam_is_offered_not_chosen_and_refused_on_other_heads():
    """ViT-ReciproCAM stays the transformer default; a CLS head or an fc_norm after the mean is refused."""
    model, _ = zoo_models.build(AVG_VIT, num_classes=5)
    ir = zoo_models.convert(model, 64)
    assert default_whitebox_method(ir).name == "vitreciprocam"
    for options in ({"global_pool": "avg", "class_token": False, "fc_norm": True}, {}):
        other = Arch("vit_tiny_patch16_224", "ViT", {**AVG_VIT.options, **options} if options else
                     {k: v for k, v in AVG_VIT.options.items() if k not in ("global_pool", "class_token", "fc_norm")})
        model, _ = zoo_models.build(other, num_classes=5)
        ir = zoo_models.convert(model, 64)
        with pytest.raises(WhiteboxUnsupportedError, match="vitcam|patch-token stream"):
            build_xai_model(ir, ir.outputs[0], "vitcam")
    with pytest.raises(ExplainError, match="'nope' is not a patch-token stream"):
        build_xai_model(ir, ir.outputs[0], "vitcam", target_layer="nope")
