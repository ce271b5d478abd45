"""Other tools' preprocessing files (timm, Hugging Face) read as a PreprocessSpec, strictly or as a sidecar.

The fixtures under tests/core/data/preprocess_import are written as timm and transformers write them:
a timm ``pretrained_cfg`` (efficientnet_b0.ra_in1k), timm hub ``config.json`` files (nested and with
the fields at the top level), and the Hugging Face ``preprocessor_config.json`` of
google/vit-base-patch16-224, microsoft/resnet-50, openai/clip-vit-base-patch32 and
facebook/deit-base-distilled-patch16-224, plus a ViTImageProcessor saved by a current transformers.
The ``bundled_lite0.*`` files describe the bundled model's own preprocessing in those formats.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest

from ov_explain.core.errors import PreprocessError
from ov_explain.core.preprocess import PreprocessSpec
from ov_explain.core.preprocess_import import detect_format, load_sidecar, load_spec_file, spec_from_dict

DATA = Path(__file__).resolve().parent / "data" / "preprocess_import"
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
BUNDLED_FILES = ["bundled_lite0.timm.config.json", "bundled_lite0.hf_convnext.preprocessor_config.json",
                 "bundled_lite0.hf_bit.preprocessor_config.json"]


def data(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def single_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("name, origin, resize, crop_fraction, interpolation, mean, std", [
    ("timm_efficientnet_b0.ra_in1k.pretrained_cfg.json", "timm pretrained_cfg", "center_crop", 224 / 256, "cubic",
     IMAGENET_MEAN, IMAGENET_STD),
    ("timm_hub_efficientnet_b0.ra_in1k.config.json", "timm pretrained_cfg", "center_crop", 224 / 256, "cubic",
     IMAGENET_MEAN, IMAGENET_STD),
    # crop_pct 0.95: timm resizes the short side to floor(224 / 0.95) = 235
    ("timm_hub_resnet50.a1_in1k.toplevel.config.json", "timm pretrained_cfg", "center_crop", 224 / 235, "cubic",
     IMAGENET_MEAN, IMAGENET_STD),
    ("hf_google_vit-base-patch16-224.preprocessor_config.json", "Hugging Face ViTFeatureExtractor", "stretch", 1.0,
     "linear", (127.5,) * 3, (127.5,) * 3),
    ("hf_vit_image_processor.preprocessor_config.json", "Hugging Face ViTImageProcessor", "stretch", 1.0, "linear",
     (127.5,) * 3, (127.5,) * 3),
    ("hf_microsoft_resnet-50.preprocessor_config.json", "Hugging Face ConvNextFeatureExtractor", "center_crop",
     224 / 256, "cubic", IMAGENET_MEAN, IMAGENET_STD),
    ("hf_openai_clip-vit-base-patch32.preprocessor_config.json", "Hugging Face CLIPImageProcessor", "center_crop", 1.0,
     "cubic", tuple(v * 255 for v in (0.48145466, 0.4578275, 0.40821073)),
     tuple(v * 255 for v in (0.26862954, 0.26130258, 0.27577711))),
])
def test_real_configs_become_the_spec_they_describe(name, origin, resize, crop_fraction, interpolation, mean, std):
    spec, read_as = load_spec_file(DATA / name, layout="NCHW")
    assert read_as == f"{origin} {DATA / name}"
    assert spec.size == (224, 224) and spec.resize == resize and spec.interpolation == interpolation
    assert spec.crop_fraction == pytest.approx(crop_fraction, rel=1e-12)
    assert spec.mean == pytest.approx(mean, rel=1e-9) and spec.std == pytest.approx(std, rel=1e-9)
    assert spec.color == "RGB" and spec.layout == "NCHW"


@pytest.mark.parametrize("name, short_side", [
    ("timm_hub_resnet50.a1_in1k.toplevel.config.json", math.floor(224 / 0.95)),   # timm: floor(size / crop_pct)
    ("hf_microsoft_resnet-50.preprocessor_config.json", int(224 / 0.875)),        # ConvNext: int(edge / crop_pct)
    ("hf_openai_clip-vit-base-patch32.preprocessor_config.json", 224),             # CLIP: shortest_edge, crop 224
    ("bundled_lite0.hf_bit.preprocessor_config.json", 256),
])
@pytest.mark.parametrize("shape", [(300, 400), (640, 427), (233, 233)])
def test_the_resized_short_side_is_the_one_the_other_tool_computes(name, short_side, shape):
    spec, _ = load_spec_file(DATA / name)
    fitted, geometry = spec.fit(np.zeros((*shape, 3), np.uint8))
    assert fitted.shape == (224, 224, 3)
    resized = (round(shape[0] * geometry.scale[0]), round(shape[1] * geometry.scale[1]))
    assert min(resized) == short_side
    assert geometry.offset == (-((resized[0] - 224) // 2), -((resized[1] - 224) // 2))


def test_timm_uses_input_size_and_crop_pct_not_the_test_values():
    cfg = data("timm_efficientnet_b0.ra_in1k.pretrained_cfg.json")
    assert cfg["test_input_size"] == [3, 256, 256] and cfg["test_crop_pct"] == 1.0
    spec, _ = spec_from_dict(cfg)
    assert spec.size == (224, 224) and spec.crop_fraction == 0.875


def test_timm_defaults_and_crop_modes():
    cfg = data("timm_efficientnet_b0.ra_in1k.pretrained_cfg.json")
    without = {k: v for k, v in cfg.items() if k not in ("crop_pct", "crop_mode")}
    assert spec_from_dict(without)[0].crop_fraction == 0.875  # timm's DEFAULT_CROP_PCT
    full = spec_from_dict({**cfg, "crop_pct": 1.0})[0]
    assert full.resize == "center_crop" and full.crop_fraction == 1.0
    squash = spec_from_dict({**cfg, "crop_mode": "squash", "crop_pct": 1.0})[0]
    assert squash.resize == "stretch" and squash.size == (224, 224)
    wide = spec_from_dict({**cfg, "input_size": [3, 192, 256], "crop_pct": 0.9})[0]
    assert wide.size == (192, 256) and wide.crop_fraction == 0.9


@pytest.mark.parametrize("change, message", [
    ({"crop_mode": "squash"}, "crop_mode 'squash' with crop_pct 0.875"),
    ({"crop_mode": "border"}, "crop_mode 'border' is not supported"),
    ({"crop_pct": 1.2}, "crop_pct must be a number in (0, 1], got 1.2"),
    ({"input_size": 224}, "input_size must be [channels, height, width], got 224"),
    ({"interpolation": "random"}, "interpolation must be one of"),
    ({"mean": [0.5, 0.5]}, "mean must be a number or 3 numbers"),
])
def test_timm_problems_are_one_line_naming_the_file(tmp_path, change, message):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**data("timm_hub_efficientnet_b0.ra_in1k.config.json"),
                                "pretrained_cfg": {**data("timm_efficientnet_b0.ra_in1k.pretrained_cfg.json"),
                                                   **change}}))
    with pytest.raises(PreprocessError) as caught:
        load_spec_file(path)
    text = single_line(caught)
    assert text.startswith(f"{path}: timm pretrained_cfg: ") and message in text


def test_hf_rescale_and_normalize_become_pixel_units():
    base = data("hf_vit_image_processor.preprocessor_config.json")  # (x / 255 - 0.5) / 0.5
    assert spec_from_dict(base)[0].mean == pytest.approx((127.5,) * 3)
    no_normalize = spec_from_dict({**base, "do_normalize": False})[0]  # x / 255
    assert no_normalize.mean == (0.0,) * 3 and no_normalize.std == pytest.approx((255.0,) * 3)
    no_rescale = spec_from_dict({**base, "do_rescale": False})[0]  # (x - 0.5) / 0.5 on 0..255 pixels
    assert no_rescale.mean == (0.5,) * 3 and no_rescale.std == (0.5,) * 3
    neither = spec_from_dict({**base, "do_rescale": False, "do_normalize": False})[0]
    assert neither.mean == (0.0,) * 3 and neither.std == (1.0,) * 3
    custom = spec_from_dict({**base, "rescale_factor": 1 / 127.5, "image_mean": [1, 1, 1], "image_std": [1, 1, 1]})[0]
    assert custom.mean == pytest.approx((127.5,) * 3) and custom.std == pytest.approx((127.5,) * 3)
    # the spec computes what transformers computes: (x * r - m) / s
    pixels = np.arange(0, 256, 17, dtype=np.uint8)[:, None, None].repeat(3, 2)
    np.testing.assert_allclose(custom.normalize(pixels)[0, :, 0], (pixels[:, 0, 0] / 127.5 - 1) / 1, atol=1e-6)


def test_hf_convnext_at_384_and_more_warps_without_a_crop():
    cfg = {**data("hf_microsoft_resnet-50.preprocessor_config.json"), "size": {"shortest_edge": 384}}
    spec = spec_from_dict(cfg)[0]
    assert spec.size == (384, 384) and spec.resize == "stretch"
    small = spec_from_dict({**cfg, "size": {"shortest_edge": 288}, "crop_pct": None})[0]  # transformers' 224 / 256
    assert small.resize == "center_crop" and small.crop_fraction == 288 / int(288 / (224 / 256))


def test_hf_layout_is_the_callers_and_the_own_spec_keeps_its_layout(tmp_path):
    assert load_spec_file(DATA / "hf_microsoft_resnet-50.preprocessor_config.json", layout="NHWC")[0].layout == "NHWC"
    assert load_spec_file(DATA / "bundled_lite0.timm.config.json", layout="NHWC")[0].layout == "NHWC"
    own = tmp_path / "own.json"
    PreprocessSpec(size=8).to_json(own)
    spec, origin = load_spec_file(own, layout="NHWC")
    assert spec.layout == "NCHW" and origin == f"ov_explain spec {own}"


@pytest.mark.parametrize("change, message", [
    ({"feature_extractor_type": "DeiTFeatureExtractor", "size": 256, "crop_size": 224, "do_center_crop": True},
     "a resize to 256x256 (aspect not kept) then a 224x224 centre crop has no PreprocessSpec equivalent"),
    ({"size": {"shortest_edge": 224}, "image_processor_type": "CLIPImageProcessor"},
     "without a centre crop gives images of varying size"),
    ({"do_resize": False}, "do_resize is false"),
    ({"resample": 5}, "interpolation 5 is PIL's HAMMING filter"),
    ({"size": {"longest_edge": 224}}, "size {'longest_edge': 224} is not supported"),
    ({"image_std": None}, "image_std must be a number or 3 numbers"),
])
def test_hf_problems_are_one_line_naming_the_file(tmp_path, change, message):
    path = tmp_path / "preprocessor_config.json"
    path.write_text(json.dumps({**data("hf_vit_image_processor.preprocessor_config.json"), **change}))
    with pytest.raises(PreprocessError) as caught:
        load_spec_file(path)
    text = single_line(caught)
    assert text.startswith(f"{path}: Hugging Face ") and message in text


def test_the_real_deit_config_is_refused_rather_than_approximated():
    with pytest.raises(PreprocessError, match="DeiTFeatureExtractor: a resize to 256x256"):
        load_spec_file(DATA / "hf_facebook_deit-base-distilled-patch16-224.preprocessor_config.json")


def test_an_unchecked_hf_processor_is_read_generically_with_a_warning(caplog):
    cfg = {**data("hf_openai_clip-vit-base-patch32.preprocessor_config.json"),
           "image_processor_type": "SiglipImageProcessor", "size": {"height": 224, "width": 224}}
    with caplog.at_level(logging.WARNING, logger="ov_explain"):
        spec, what = spec_from_dict(cfg)
    assert what == "Hugging Face SiglipImageProcessor" and spec.resize == "stretch"
    assert "Siglip is not one of the image processors" in caplog.text


@pytest.mark.parametrize("content, message", [
    (None, "missing.json: preprocessing spec not found"),
    ("{not json", "bad.json: not valid JSON"),
    (json.dumps({"mode": "fast", "tile": 3}), "not a preprocessing config ov_explain understands"),
    (json.dumps({"size": 224, "crop": 0.9}), "unknown key(s) ['crop']"),
    (json.dumps([1, 2]), "expected a JSON object, got list"),
])
def test_file_problems_are_one_line_naming_the_file(tmp_path, content, message):
    path = tmp_path / ("missing.json" if content is None else "bad.json")
    if content is not None:
        path.write_text(content)
    with pytest.raises(PreprocessError) as caught:
        load_spec_file(path)
    text = single_line(caught)
    assert text.startswith(str(path)) and message in text
    if "understands" in message:
        assert "timm pretrained_cfg" in text and "Hugging Face preprocessor_config.json" in text


def test_detect_format():
    assert detect_format({"size": 224, "interpolation": "bicubic"}) == "ov_explain"
    assert detect_format({}) == "ov_explain"
    assert detect_format(data("timm_efficientnet_b0.ra_in1k.pretrained_cfg.json")) == "timm"
    assert detect_format(data("timm_hub_resnet50.a1_in1k.toplevel.config.json")) == "timm"
    assert detect_format(data("hf_microsoft_resnet-50.preprocessor_config.json")) == "hf"  # has crop_pct too
    assert detect_format({"mode": "fast"}) is None and detect_format([1]) is None


# ----- a file found beside a model ----------------------------------------------------------------
@pytest.mark.parametrize("name, says", [
    ("timm_hub_efficientnet_b0.ra_in1k.config.json", "is a timm pretrained_cfg, not an ov_explain spec: ignored; "
                                                     "pass --preprocess {path} to use it"),
    ("hf_microsoft_resnet-50.preprocessor_config.json", "is a Hugging Face ConvNextFeatureExtractor, not an "
                                                        "ov_explain spec: ignored; pass --preprocess {path} to use it"),
])
def test_a_foreign_sidecar_is_ignored_with_one_warning(tmp_path, caplog, name, says):
    path = tmp_path / "preprocess.json"
    path.write_text((DATA / name).read_text())
    with caplog.at_level(logging.WARNING, logger="ov_explain"):
        spec, why = load_sidecar(path)
    assert spec is None
    assert [r.getMessage() for r in caplog.records] == [f"{path} " + says.format(path=path)]
    assert why == caplog.records[0].getMessage()


@pytest.mark.parametrize("content, says", [
    (json.dumps({"size": 224, "crop": 0.9}), "is not an ov_explain spec (unknown key(s) ['crop']): ignored"),
    ("{not json", "not valid JSON"),
    (json.dumps([224]), "is not an ov_explain spec (a JSON list): ignored"),
])
def test_an_unknown_or_unreadable_sidecar_is_ignored_with_one_warning(tmp_path, caplog, content, says):
    path = tmp_path / "model.preprocess.json"
    path.write_text(content)
    with caplog.at_level(logging.WARNING, logger="ov_explain"):
        assert load_sidecar(path)[0] is None
    assert len(caplog.records) == 1 and says in caplog.text and str(path) in caplog.text


def test_an_ov_explain_sidecar_is_read_and_a_broken_one_is_still_an_error(tmp_path, caplog):
    path = tmp_path / "preprocess.json"
    PreprocessSpec(size=8, interpolation="bicubic").to_json(path)
    spec, origin = load_sidecar(path, layout="NHWC")
    assert spec == PreprocessSpec(size=8, interpolation="cubic") and origin == f"ov_explain spec {path}"
    path.write_text(json.dumps({"size": 8, "interpolation": "spline"}))
    with pytest.raises(PreprocessError, match=f"{path}: interpolation must be one of"):
        load_sidecar(path)
    assert not caplog.records


# ----- the bundled model driven by a timm and by Hugging Face configs -----------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", BUNDLED_FILES)
def test_foreign_configs_of_the_bundled_model_predict_like_its_own_spec(classifier, photos_dir, name):
    from ov_explain import Classifier

    own = [classifier.predict(path) for path in sorted(photos_dir.glob("*.jpg"))]
    assert len(own) == 7 and classifier.preprocess_origin == "ov_explain spec in model rt_info"
    imported = Classifier(device="CPU", preprocess=DATA / name, cache_dir=None)
    assert imported.preprocess_origin.endswith(str(DATA / name))
    assert imported.spec.size == classifier.spec.size and imported.spec.resize == classifier.spec.resize
    assert imported.spec.crop_fraction == pytest.approx(classifier.spec.crop_fraction, abs=1e-12)
    for mine, theirs in zip(own, (imported.predict(p.source) for p in own)):
        assert [c.index for c in theirs.top] == [c.index for c in mine.top]
        # Same geometry and interpolation; mean / std differ from 127 / 128 only by the float64 rounding
        # of 127/255*255 (~1e-14), far below float32's resolution, and both run the same f32 graph on
        # CPU: the probabilities agree to float32 rounding. 1e-6 leaves room for that and nothing else.
        np.testing.assert_allclose(theirs.probabilities, mine.probabilities, rtol=0, atol=1e-6)
