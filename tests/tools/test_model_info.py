"""model_api's model_info keys: their values for typical specs, the caveats logged for what model_api
cannot reproduce, and (when ``openvino-model-api`` is installed) model_api itself reading a real IR."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from support import F32, identity_model, save_model, tiny_classifier_model

from ov_explain.core.errors import PreprocessError
from ov_explain.core.preprocess import PreprocessSpec, rt_info_str
from ov_explain.tools.model_info import MODEL_INFO, add_model_api_info, model_api_caveats, model_api_info

IMAGENET = PreprocessSpec(size=(224, 224), mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375))
#: The bundled model's normalisation with a resize model_api reproduces exactly (its own spec
#: crops 0.875 of the short side, which model_api has no key for).
STRETCH_CUBIC = PreprocessSpec(size=(224, 224), interpolation="cubic", mean=(127, 127, 127),
                               std=(128, 128, 128))
LETTERBOX = PreprocessSpec(size=(192, 256), resize="letterbox", pad_value=114, mean=(127, 127, 127),
                           std=(128, 128, 128), color="BGR", layout="NHWC")


def test_imagenet_rgb_stretch():
    assert model_api_info(IMAGENET, ["tench", "goldfish"], embedded=False) == {
        "model_type": "Classification",
        "embedded_processing": "False",
        "resize_type": "standard",
        "interpolation_mode": "LINEAR",
        "pad_value": "0",
        "reverse_input_channels": "True",  # model_api hands over BGR frames; this model wants RGB
        "mean_values": "123.675 116.28 103.53",
        "scale_values": "58.395 57.12 57.375",
        "orig_height": "224",
        "orig_width": "224",
        "labels": "tench goldfish",
    }


def test_bgr_model_keeps_model_api_frames_as_they_are():
    spec = PreprocessSpec(size=(227, 227), mean=(104, 117, 123), color="BGR", interpolation="cubic")
    info = model_api_info(spec, None, embedded=False)
    assert info["reverse_input_channels"] == "False"
    assert info["mean_values"] == "104 117 123"  # already in the model's (BGR) order
    assert info["scale_values"] == "1 1 1"
    assert info["interpolation_mode"] == "CUBIC"
    assert "labels" not in info


def test_letterbox():
    info = model_api_info(LETTERBOX, None, embedded=False)
    assert info["resize_type"] == "fit_to_window_letterbox"  # centred, like ov_explain's (not fit_to_window)
    assert info["pad_value"] == "114"
    assert (info["orig_height"], info["orig_width"]) == ("192", "256")


@pytest.mark.parametrize("color", ["RGB", "BGR"])
def test_embedded_graph_gets_unnormalised_rgb(color):
    spec = PreprocessSpec(size=(224, 224), mean=(127, 127, 127), std=(128, 128, 128), color=color)
    info = model_api_info(spec, None, embedded=True)
    # spec.embed's graph takes RGB u8 and normalises itself: the host only swaps model_api's BGR.
    assert info["reverse_input_channels"] == "True"
    assert (info["mean_values"], info["scale_values"]) == ("0 0 0", "1 1 1")
    assert info["embedded_processing"] == "False"


def test_numbers_keep_full_precision():
    spec = PreprocessSpec(mean=(0.1234567891, 255, 1e-3), std=(1 / 3, 2.5, 1))
    info = model_api_info(spec, None, embedded=False)
    assert info["mean_values"] == "0.1234567891 255 0.001"
    assert [float(v) for v in info["scale_values"].split()] == [1 / 3, 2.5, 1.0]


def test_labels_become_whitespace_free_tokens(caplog):
    with caplog.at_level(logging.INFO, logger="ov_explain.tools.model_info"):
        text = model_api_info(IMAGENET, ["great white shark", "", "tench", " jack-o'-lantern\t"],
                              embedded=False)["labels"]
    # model_api splits the text on whitespace: one token per class, none empty.
    assert text.split() == ["great_white_shark", "#1", "tench", "jack-o'-lantern"]
    assert "label(s) [1] are empty" in caplog.text


@pytest.mark.parametrize("spec, resize_type, interpolation, expected", [
    # The bundled model's spec: model_api has no crop fraction and its crop is always linear.
    (PreprocessSpec(resize="center_crop", crop_fraction=0.875, interpolation="cubic"), "crop", "CUBIC",
     ["no crop fraction", "always resizes linearly", "crops before resizing"]),
    (PreprocessSpec(resize="center_crop"), "crop", "LINEAR", ["crops before resizing"]),
    (PreprocessSpec(size=(160, 320), resize="center_crop"), "standard", "LINEAR", ["wrong aspect"]),
    (PreprocessSpec(size=(320, 160), resize="center_crop", interpolation="area"), "standard", "LINEAR",
     ["wrong aspect", "no 'area' interpolation"]),
    (PreprocessSpec(interpolation="area"), "standard", "LINEAR", ["no 'area' interpolation"]),
    (PreprocessSpec(interpolation="lanczos"), "standard", "CUBIC", ["no 'lanczos' interpolation"]),
    (PreprocessSpec(resize="letterbox", interpolation="nearest"), "fit_to_window_letterbox", "NEAREST",
     ["OpenVINO's"]),
])
def test_what_model_api_cannot_reproduce_is_logged(caplog, spec, resize_type, interpolation, expected):
    with caplog.at_level(logging.WARNING, logger="ov_explain.tools.model_info"):
        info = model_api_info(spec, None, embedded=False)
    assert (info["resize_type"], info["interpolation_mode"]) == (resize_type, interpolation)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(expected)
    for warning, words in zip(warnings, expected):
        assert words in warning


@pytest.mark.parametrize("spec, embedded", [(IMAGENET, False), (LETTERBOX, False), (STRETCH_CUBIC, True)])
def test_reproducible_specs_log_nothing(caplog, spec, embedded):
    with caplog.at_level(logging.WARNING, logger="ov_explain.tools.model_info"):
        model_api_info(spec, ["a"], embedded=embedded)
    assert caplog.records == [] and model_api_caveats(spec, embedded=embedded) == []


def test_keys_travel_in_the_ir(tmp_path):
    import openvino as ov

    model = tiny_classifier_model(4, layout="NHWC")
    spec = PreprocessSpec(size=(8, 8), layout="NHWC", mean=(1, 2, 3))
    written = add_model_api_info(model, spec, ["a b", "c", "d", "e"], embedded=False)
    read = ov.Core().read_model(str(save_model(model, tmp_path)))
    assert {key: rt_info_str(read.get_rt_info([MODEL_INFO, key])) for key in written} == written
    assert read.get_parameters()[0].get_layout() == ov.Layout("NHWC")  # model_api reads the input layout


def test_an_existing_input_layout_is_kept():
    import openvino as ov

    model = identity_model([1, 3, 8, 8])
    model.get_parameters()[0].set_layout(ov.Layout("NC??"))
    add_model_api_info(model, PreprocessSpec(size=(8, 8)), None, embedded=False)
    assert model.get_parameters()[0].get_layout() == ov.Layout("NC??")


def test_embedded_graph_input_is_nhwc():
    import openvino as ov

    embedded = STRETCH_CUBIC.embed(identity_model([1, 3, 224, 224]))
    add_model_api_info(embedded, STRETCH_CUBIC, None, embedded=True)
    assert embedded.get_parameters()[0].get_layout() == ov.Layout("NHWC")


def test_dynamic_input_size_is_reported(caplog):
    with caplog.at_level(logging.WARNING, logger="ov_explain.tools.model_info"):
        add_model_api_info(identity_model([-1, 3, -1, -1]), IMAGENET, None, embedded=False)
    assert "will not resize images to 224x224" in caplog.text


def test_multi_input_models_are_rejected():
    import openvino as ov

    from ov_explain.core._compat import opset

    a, b = (opset.parameter([1, 3, 8, 8], ov.Type.f32, name=n) for n in "ab")
    with pytest.raises(PreprocessError, match="takes one input"):
        add_model_api_info(ov.Model([opset.add(a, b)], [a, b]), IMAGENET, None, embedded=False)


# ----- model_api itself ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mapi():
    """model_api's modules; the tests below skip where ``openvino-model-api`` is not installed (the xai
    environment), and fail instead with ``OV_EXPLAIN_REQUIRE_MODEL_API=1`` (CI's main environment)."""
    import os
    from importlib.metadata import version

    if os.environ.get("OV_EXPLAIN_REQUIRE_MODEL_API") == "1":
        import model_api  # noqa: F401 (an ImportError here fails the tests instead of skipping them)
    pytest.importorskip("model_api", reason="openvino-model-api is not installed (pip install "
                                            "openvino-model-api; 0.4.x needs openvino>=2025.3, Python>=3.11)")
    installed = version("openvino-model-api")
    if tuple(int(part) for part in installed.split(".")[:2]) < (0, 4):
        pytest.skip(f"openvino-model-api {installed}: before 0.4 it ignores interpolation_mode (always "
                    "linear); these tests check 0.4's behaviour")
    from model_api.adapters import OpenvinoAdapter, create_core
    from model_api.models import ClassificationModel, ImageModel, Model

    return {"adapter": OpenvinoAdapter, "core": create_core, "ClassificationModel": ClassificationModel,
            "ImageModel": ImageModel, "Model": Model}


def _adapter(mapi, path: Path):
    """model_api's OpenVINO adapter on CPU in f32, the precision ov_explain's tests compare in."""
    return mapi["adapter"](mapi["core"](), str(path), device="CPU", plugin_config=dict(F32))


def _bgr(image: np.ndarray) -> np.ndarray:
    """model_api takes frames as cv2.imread gives them: BGR."""
    return np.ascontiguousarray(image[:, :, ::-1])


@pytest.mark.parametrize("spec, embedded", [
    (IMAGENET, False),
    (PreprocessSpec(size=(224, 224), mean=(104, 117, 123), std=(57, 57, 58), color="BGR",
                    interpolation="cubic"), False),
    (LETTERBOX, False),
    # A static embedded graph: model_api letterboxes and swaps the channels in front of it.
    (PreprocessSpec(size=(224, 224), resize="letterbox", pad_value=7, mean=(127, 127, 127),
                    std=(128, 128, 128)), True),
], ids=["imagenet-rgb", "bgr-cubic", "letterbox-nhwc", "embedded-letterbox"])
@pytest.mark.parametrize("photo", ["chelsea.jpg", "grace_hopper.jpg"])  # landscape and portrait
def test_model_api_preprocessing_matches_numpy(mapi, tmp_path, photos_dir, spec, embedded, photo):
    from ov_explain import read_image

    image = read_image(photos_dir / photo)
    height, width = spec.size
    model = identity_model([-1, 3, height, width] if spec.layout == "NCHW" else [-1, height, width, 3])
    model = spec.embed(model) if embedded else model
    add_model_api_info(model, spec, None, embedded=embedded)
    probe = mapi["ImageModel"](_adapter(mapi, save_model(model, tmp_path)), {}, preload=True)
    inputs, _ = probe.base_preprocess(_bgr(image))
    seen = next(iter(probe.infer_sync(inputs).values()))[0]  # the identity graph returns the model input
    expected = spec(image)[0]
    assert seen.shape == expected.shape
    # In pixel units: OpenVINO's resize rounds to uint8 differently from OpenCV's, by at most one level.
    std = np.float32(spec.std).reshape((3, 1, 1) if spec.layout == "NCHW" else (1, 1, 3))
    difference = np.abs(seen - expected) * std
    assert difference.max() <= 1.0 + 1e-3
    assert difference.mean() < 0.2


def test_model_api_swaps_channels_for_an_embedded_dynamic_graph(mapi, tmp_path, chelsea_rgb):
    spec = PreprocessSpec(size=(8, 8), interpolation="cubic", mean=(127, 127, 127), std=(128, 128, 128))
    embedded = spec.embed(tiny_classifier_model(4))
    add_model_api_info(embedded, spec, None, embedded=True)
    # Without an explicit embedded_processing=False, ClassificationModel takes a dynamic-size IR for
    # model_api-embedded and would pass the BGR frame through unswapped.
    model = mapi["ClassificationModel"](_adapter(mapi, save_model(embedded, tmp_path)), {}, preload=False)
    inputs, _ = model.base_preprocess(_bgr(chelsea_rgb))
    # The graph resizes any size itself: model_api passes the whole frame, turned back to RGB.
    np.testing.assert_array_equal(next(iter(inputs.values()))[0], chelsea_rgb)


@pytest.mark.slow
@pytest.mark.parametrize("embedded", [False, True], ids=["plain-ir", "embedded-ir"])
def test_model_api_predicts_like_the_classifier(mapi, tmp_path, photos_dir, embedded):
    import openvino as ov

    from ov_explain import Classifier, read_image
    from ov_explain.core.files import ModelFiles
    from ov_explain.core.resources import default_model_path

    files = ModelFiles.locate(default_model_path())
    model = ov.Core().read_model(str(files.model))
    model = STRETCH_CUBIC.embed(model) if embedded else model
    ours = Classifier(save_model(model, tmp_path / "ours"), device="CPU", cache_dir=None, labels=files.labels,
                      preprocess=None if embedded else STRETCH_CUBIC)
    add_model_api_info(model, STRETCH_CUBIC, ours.labels, embedded=embedded)
    path = save_model(model, tmp_path / "model_api")
    assert isinstance(mapi["Model"].create_model(str(path), device="CPU", preload=False),
                      mapi["ClassificationModel"])  # model_type picks the wrapper
    theirs = mapi["ClassificationModel"](_adapter(mapi, path), {"output_raw_scores": True, "topk": 1},
                                         preload=True)
    with ours:
        for photo in sorted(photos_dir.glob("*.jpg")):
            image = read_image(photo)
            expected = ours.predict(image)
            result = theirs(_bgr(image))
            top = result.top_labels[0]
            best = expected.top[0]
            assert (top.id, top.name) == (best.index, best.name.replace(" ", "_")), photo.name
            np.testing.assert_allclose(result.raw_scores, expected.probabilities, atol=2e-3,
                                       err_msg=photo.name)
