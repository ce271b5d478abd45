"""The preprocessing spec: validation, every resize mode, colour and layout, numpy vs embedded graph."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from support import compile_f32, identity_model

from ov_explain.core.errors import PreprocessError
from ov_explain.core.preprocess import (
    Geometry,
    PreprocessSpec,
    load_preprocess_function,
    read_spec_from_model,
    run_custom,
)


def gradient_image(height: int = 60, width: int = 90) -> np.ndarray:
    """Distinct values per channel and position, so colour swaps and shifts are visible."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // (width - 1), y * 255 // (height - 1), (x + y) % 256], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("data, message", [
    ({"size": 0}, "positive"),
    ({"size": [224]}, "size"),
    ({"size": "big"}, "size"),
    ({"resize": "crop"}, "resize must be one of"),
    ({"interpolation": "spline"}, "interpolation must be one of"),
    ({"std": [1, 0, 1]}, "non-zero"),
    ({"mean": [1, 2]}, "mean must be"),
    ({"color": "HSV"}, "color must be one of"),
    ({"layout": "CHW"}, "layout must be one of"),
    ({"crop_fraction": 1.5}, "crop_fraction"),
    ({"pad_value": 300}, "pad_value"),
    ({"sise": 224}, "unknown key"),
])
def test_invalid_specs_are_refused_with_the_offending_value(data, message):
    with pytest.raises(PreprocessError, match=message):
        PreprocessSpec.from_dict(data, source="spec.json")


@pytest.mark.parametrize("spelling, canonical", [
    ("bilinear", "linear"), ("bicubic", "cubic"), ("box", "area"), ("area", "area"), ("nearest", "nearest"),
    ("lanczos", "lanczos"), ("BICUBIC", "cubic"), ("Image.BICUBIC", "cubic"), ("InterpolationMode.BILINEAR", "linear"),
    ("PIL.Image.Resampling.BICUBIC", "cubic"), ("Image.Resampling.LANCZOS", "lanczos"), (" Bilinear ", "linear"),
    (0, "nearest"), (1, "lanczos"), (2, "linear"), (3, "cubic"), (4, "area"), (np.int64(3), "cubic"),
])
def test_interpolation_aliases_are_stored_as_the_short_name(spelling, canonical, tmp_path):
    spec = PreprocessSpec.from_dict({"interpolation": spelling})
    assert spec.interpolation == canonical
    assert spec.to_dict()["interpolation"] == canonical
    assert spec == PreprocessSpec(interpolation=canonical)
    spec.to_json(tmp_path / "spec.json")
    assert json.loads((tmp_path / "spec.json").read_text())["interpolation"] == canonical


def test_an_alias_resizes_exactly_like_the_short_name():
    image = gradient_image(60, 90)
    for alias, short in (("bicubic", "cubic"), (2, "linear"), ("InterpolationMode.NEAREST", "nearest")):
        a = PreprocessSpec(size=(37, 41), interpolation=alias).fit(image)[0]
        b = PreprocessSpec(size=(37, 41), interpolation=short).fit(image)[0]
        np.testing.assert_array_equal(a, b)
    assert PreprocessSpec(size=(37, 41), interpolation="bicubic").embeds_resize


@pytest.mark.parametrize("value, message", [
    (5, "interpolation 5 is PIL's HAMMING filter, which OpenCV has no equivalent of; accepted: ['nearest'"),
    ("Image.HAMMING", "'Image.HAMMING' is PIL's HAMMING filter"),
    (6, "interpolation must be one of ['nearest', 'linear', 'cubic', 'area', 'lanczos'], an alias"),
    ("random", "got 'random'"),
    (True, "got True"),
    (2.0, "got 2.0"),
])
def test_unknown_interpolations_are_one_line_naming_the_value(value, message):
    with pytest.raises(PreprocessError, match=re.escape(message)) as caught:
        PreprocessSpec(interpolation=value)
    assert "\n" not in str(caught.value) and "bicubic" in str(caught.value)


def test_json_round_trip_and_normalised_fields(tmp_path):
    spec = PreprocessSpec(size=[96, 128], resize="letterbox", mean=127, std=128, color="bgr", layout="nhwc")
    assert spec.size == (96, 128) and spec.mean == (127.0,) * 3 and spec.color == "BGR" and spec.layout == "NHWC"
    path = tmp_path / "spec.json"
    spec.to_json(path)
    assert PreprocessSpec.from_json(path) == spec
    assert json.loads(path.read_text())["size"] == [96, 128]


def test_from_json_reports_file_problems(tmp_path):
    with pytest.raises(PreprocessError, match="not found"):
        PreprocessSpec.from_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PreprocessError, match="bad.json: not valid JSON"):
        PreprocessSpec.from_json(bad)


def test_stretch_resizes_whole_image():
    spec = PreprocessSpec(size=(30, 45), resize="stretch", interpolation="area")
    fitted, geometry = spec.fit(gradient_image(60, 90))
    assert fitted.shape == (30, 45, 3)
    assert geometry.scale == (0.5, 0.5) and geometry.offset == (0.0, 0.0)


def test_center_crop_keeps_the_centre_at_crop_fraction():
    image = gradient_image(100, 200)
    spec = PreprocessSpec(size=50, resize="center_crop", crop_fraction=0.5, interpolation="nearest")
    fitted, geometry = spec.fit(image)
    # short side 100 -> 50 / 0.5 = 100 (no scaling), then a 50x50 window from the centre.
    assert geometry.scale == (1.0, 1.0) and geometry.offset == (-25, -75)
    np.testing.assert_array_equal(fitted, image[25:75, 75:125])


def test_center_crop_of_efficientnet_spec_resizes_short_side_to_256():
    spec = PreprocessSpec(size=224, resize="center_crop", crop_fraction=224 / 256)
    _, geometry = spec.fit(gradient_image(400, 600))
    assert geometry.scale[0] == pytest.approx(256 / 400) and geometry.scale[1] == pytest.approx(384 / 600)
    assert geometry.offset == (-16, -80)


def test_letterbox_pads_and_keeps_aspect():
    spec = PreprocessSpec(size=(100, 100), resize="letterbox", pad_value=7, interpolation="nearest")
    fitted, geometry = spec.fit(gradient_image(50, 100))
    assert fitted.shape == (100, 100, 3)
    assert geometry.scale == (1.0, 1.0) and geometry.offset == (25, 0)
    assert np.all(fitted[:25] == 7) and np.all(fitted[75:] == 7)
    np.testing.assert_array_equal(fitted[25:75], gradient_image(50, 100))


@pytest.mark.parametrize("layout, color", [("NCHW", "RGB"), ("NCHW", "BGR"), ("NHWC", "RGB"), ("NHWC", "BGR")])
def test_normalise_applies_colour_order_mean_std_and_layout(layout, color):
    image = gradient_image(4, 5)
    spec = PreprocessSpec(size=(4, 5), mean=(10, 20, 30), std=(2, 4, 8), color=color, layout=layout)
    tensor, _ = spec(image)
    channels = image[:, :, ::-1] if color == "BGR" else image
    expected = (channels.astype(np.float32) - [10, 20, 30]) / [2, 4, 8]
    if layout == "NCHW":
        expected = expected.transpose(2, 0, 1)
    assert tensor.dtype == np.float32 and tensor.shape == expected.shape
    np.testing.assert_allclose(tensor, expected, rtol=1e-6)


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32),
                                 np.zeros((4, 4, 4), np.uint8), "image.jpg"])
def test_non_rgb_uint8_input_is_refused(bad):
    with pytest.raises(PreprocessError, match=r"expected an RGB uint8 image of shape \(H, W, 3\)"):
        PreprocessSpec()(bad)


def test_preprocessing_does_not_mutate_the_input():
    image = gradient_image()
    before = image.copy()
    for resize in ("stretch", "center_crop", "letterbox"):
        PreprocessSpec(size=32, resize=resize, color="BGR")(image)
    np.testing.assert_array_equal(image, before)


@pytest.mark.parametrize("resize", ["stretch", "center_crop", "letterbox"])
def test_geometry_maps_input_back_onto_the_original(resize):
    """A marker drawn in the model input lands on the matching pixels of the original image."""
    image = gradient_image(120, 200)
    spec = PreprocessSpec(size=(64, 64), resize=resize, crop_fraction=0.8, interpolation="nearest")
    fitted, geometry = spec.fit(image)
    # The red channel encodes x in the original; read it back through the geometry.
    back = geometry.input_to_original(fitted[:, :, 0].astype(np.float32), fill=-1)
    assert back.shape == (120, 200)
    seen = back >= 0
    if resize == "center_crop":
        assert not seen[:, :10].any() and not seen[:, -10:].any(), "cropped-away columns must be unseen"
    else:
        assert seen[5:-5, 5:-5].all()
    original_x = image[:, :, 0].astype(np.float32)
    assert np.median(np.abs(back[seen] - original_x[seen])) <= 4  # within a few grey levels of the truth


@pytest.mark.parametrize("resize", ["stretch", "center_crop", "letterbox"])
@pytest.mark.parametrize("interpolation", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("layout, color", [("NCHW", "RGB"), ("NHWC", "BGR")])
def test_embedded_graph_matches_numpy(resize, interpolation, layout, color, chelsea_rgb):
    spec = PreprocessSpec(size=(96, 128), resize=resize, interpolation=interpolation, crop_fraction=0.875,
                          mean=(120, 110, 100), std=(60, 50, 40), layout=layout, color=color)
    shape = [1, 3, 96, 128] if layout == "NCHW" else [1, 96, 128, 3]
    embedded = spec.embed(identity_model(shape))
    host_input, host_geometry = spec.embedded_input(chelsea_rgb)
    got = compile_f32(embedded)(host_input[None])[0][0]
    expected, geometry = spec(chelsea_rgb)
    assert got.shape == expected.shape
    # Graph and OpenCV resizes may round a pixel to the neighbouring grey level: at most 1 / std.
    np.testing.assert_allclose(got, expected, atol=1.0 / 40 + 1e-5)
    assert host_geometry == geometry
    assert read_spec_from_model(embedded) == (spec, True)


def test_embed_leaves_the_original_model_alone():
    model = identity_model([1, 3, 8, 8])
    PreprocessSpec(size=8).embed(model)
    assert model.inputs[0].get_element_type().get_type_name() == "f32"
    assert read_spec_from_model(model) == (None, False)


def test_custom_function_result_is_normalised():
    image = gradient_image(20, 30)
    tensor, geometry = run_custom(lambda img: np.zeros((1, 3, 10, 12), np.float64), image, None)
    assert tensor.shape == (3, 10, 12) and tensor.dtype == np.float32
    assert geometry == Geometry.stretch((20, 30), (10, 12))
    with pytest.raises(PreprocessError, match="custom preprocessing returned shape"):
        run_custom(lambda img: np.zeros((10,)), image, None)


def test_load_preprocess_function_reports_what_is_wrong():
    assert load_preprocess_function("numpy:ascontiguousarray") is np.ascontiguousarray
    with pytest.raises(PreprocessError, match="expected 'package.module:function'"):
        load_preprocess_function("numpy.ascontiguousarray")
    with pytest.raises(PreprocessError, match="cannot import module 'no_such_mod'"):
        load_preprocess_function("no_such_mod:f")
    with pytest.raises(PreprocessError, match="no callable named 'nope'"):
        load_preprocess_function("numpy:nope")


@pytest.mark.parametrize("resize", ["stretch", "center_crop", "letterbox"])
@pytest.mark.parametrize("height, width", [(300, 451), (451, 300), (17, 1000), (224, 224)])
def test_geometry_without_pixels_is_the_fitted_images(resize, height, width):
    spec = PreprocessSpec(size=(224, 240), resize=resize, crop_fraction=0.875)
    _, fitted = spec.fit(np.zeros((height, width, 3), np.uint8))
    assert spec.geometry(height, width) == fitted
