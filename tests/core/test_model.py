"""The classifier wrapper on the real bundled model and photos, and on small graphs for edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from support import tiny_classifier_model

from ov_explain import Classifier, PreprocessSpec
from ov_explain.core.errors import ImageReadError, LabelsError, ModelLoadError, OvExplainError, PreprocessError
from ov_explain.core.images import read_image

# Top-1 of the bundled EfficientNet-Lite0 on the bundled photos (see DESIGN.md's measured figures).
EXPECTED_TOP1 = {
    "coffee.jpg": ("espresso", 0.90),
    "camera.jpg": ("tripod", 0.90),
    "chelsea.jpg": ("tiger cat", 0.30),
    "motorcycle.jpg": ("moped", 0.40),
    "astronaut.jpg": ("football helmet", 0.10),
}


def save(model, folder, name="tiny"):
    import openvino as ov

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.xml"
    ov.save_model(model, str(path), compress_to_fp16=False)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("photo", sorted(EXPECTED_TOP1))
def test_real_model_top1_on_real_photos(classifier, photos_dir, photo):
    name, at_least = EXPECTED_TOP1[photo]
    prediction = classifier.predict(photos_dir / photo, top_k=5)
    assert prediction.top[0].name == name and prediction.top[0].probability >= at_least
    assert prediction.device == "CPU" and prediction.output_kind == "logits"
    assert prediction.probabilities.shape == (1000,)
    assert prediction.probabilities.sum() == pytest.approx(1.0, abs=1e-4)
    assert len(prediction.top) == 5 and prediction.timings_ms["infer"] > 0


@pytest.mark.slow
def test_predict_many_keeps_order_and_matches_single_predictions(classifier, photos_dir):
    photos = sorted(photos_dir.glob("*.jpg"))
    streamed = list(classifier.predict_many(photos, top_k=3))
    assert [p.source for p in streamed] == [str(p) for p in photos]
    for path, result in zip(photos, streamed):
        single = classifier.predict(path, top_k=3)
        assert [c.index for c in single.top] == [c.index for c in result.top]
        np.testing.assert_allclose(single.probabilities, result.probabilities, atol=1e-5)


@pytest.mark.slow
def test_predict_many_reports_bad_images_and_goes_on(classifier, photos_dir, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    errors = []
    results = list(classifier.predict_many([photos_dir / "coffee.jpg", broken, tmp_path / "gone.png",
                                            photos_dir / "camera.jpg"],
                                           on_error=lambda source, error: errors.append((source, str(error)))))
    assert [r.top[0].name for r in results] == ["espresso", "tripod"]
    assert [s for s, _ in errors] == [str(broken), str(tmp_path / "gone.png")]
    assert "not a readable image" in errors[0][1] and "file not found" in errors[1][1]
    with pytest.raises(ImageReadError):
        list(classifier.predict_many([broken]))


@pytest.mark.slow
def test_batched_infer_equals_single_infer(classifier, photos_dir):
    tensors = [classifier.prepare(p).tensor for p in sorted(photos_dir.glob("*.jpg"))[:4]]
    batch = classifier.infer(np.stack(tensors))
    singles = np.concatenate([classifier.infer(t[None]) for t in tensors])
    assert batch.shape == (4, 1000)
    np.testing.assert_allclose(batch, singles, atol=1e-3)


@pytest.mark.slow
def test_embedded_preprocessing_ir_predicts_like_numpy_path(classifier, photos_dir, tmp_path):
    import openvino as ov

    embedded = classifier.spec.embed(ov.Core().read_model(str(classifier.files.model)))
    path = tmp_path / "embedded.xml"
    ov.save_model(embedded, str(path))
    on_device = Classifier(path, device="CPU", labels=classifier.labels, cache_dir=None)
    assert on_device.embedded and on_device.spec == classifier.spec
    for photo in ("coffee.jpg", "chelsea.jpg", "camera.jpg"):
        host, graph = classifier.predict(photos_dir / photo), on_device.predict(photos_dir / photo)
        assert [c.index for c in host.top[:3]] == [c.index for c in graph.top[:3]]
        np.testing.assert_allclose(host.probabilities, graph.probabilities, atol=2e-3)
    with pytest.raises(PreprocessError, match="embedded"):
        Classifier(path, device="CPU", preprocess=PreprocessSpec(size=224), cache_dir=None)


@pytest.mark.slow
def test_custom_preprocessing_callable_and_module_reference(classifier, photos_dir, tmp_path, monkeypatch):
    spec = classifier.spec
    calls = []

    def custom(image):
        calls.append(image.shape)
        return spec(image)[0][None]  # with a batch axis: accepted too

    model = classifier.files.model
    custom_classifier = Classifier(model, device="CPU", preprocess=custom, cache_dir=None)
    assert custom_classifier.predict(photos_dir / "coffee.jpg").top[0].name == "espresso"
    assert calls == [(400, 600, 3)]

    (tmp_path / "my_prep.py").write_text(
        "import numpy as np\n"
        "def wrong_colours(image):\n"
        "    x = (image[:, :, ::-1].astype(np.float32) - 127) / 128\n"
        "    import cv2\n"
        "    return cv2.resize(x, (224, 224)).transpose(2, 0, 1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from_module = Classifier(model, device="CPU", preprocess="my_prep:wrong_colours", cache_dir=None)
    reference = classifier.predict(photos_dir / "coffee.jpg")
    swapped = from_module.predict(photos_dir / "coffee.jpg")
    assert not np.allclose(reference.probabilities, swapped.probabilities, atol=1e-3)


def test_logits_vs_probabilities_detection(tmp_path):
    image = np.full((8, 8, 3), 100, np.uint8)
    spec = PreprocessSpec(size=8)
    logits_model = Classifier(save(tiny_classifier_model(), tmp_path / "a"), device="CPU", preprocess=spec,
                              cache_dir=None)
    softmax_model = Classifier(save(tiny_classifier_model(softmax=True), tmp_path / "b"), device="CPU",
                               preprocess=spec, cache_dir=None)
    assert softmax_model.output_kind == "probabilities" and logits_model.output_kind == "auto"
    from_logits, from_probs = logits_model.predict(image), softmax_model.predict(image)
    assert from_logits.output_kind == "logits" and from_probs.output_kind == "probabilities"
    np.testing.assert_allclose(from_logits.probabilities, from_probs.probabilities, atol=1e-5)
    # The user can override: reading softmax outputs as logits would soften them again.
    forced = Classifier(save(tiny_classifier_model(softmax=True), tmp_path / "c"), device="CPU", preprocess=spec,
                        output="logits", cache_dir=None).predict(image)
    assert forced.probabilities.max() < from_probs.probabilities.max()
    with pytest.raises(OvExplainError, match="output must be one of"):
        Classifier(tmp_path / "a" / "tiny.xml", output="scores", cache_dir=None)


def test_expected_values_of_a_known_graph(tmp_path):
    """mean over pixels @ W, with W[c, k] = (c * 4 + k) / 10; (x - 0) / 1 keeps raw pixel values."""
    model = Classifier(save(tiny_classifier_model(), tmp_path), device="CPU", preprocess=PreprocessSpec(size=8),
                       cache_dir=None)
    image = np.zeros((8, 8, 3), np.uint8)
    image[..., 0] = 10
    raw = model.infer(model.prepare(image).tensor[None])
    np.testing.assert_allclose(raw[0], [0.0, 1.0, 2.0, 3.0], atol=1e-4)


def test_sidecar_spec_and_labels_are_found(tmp_path):
    path = save(tiny_classifier_model(), tmp_path)
    PreprocessSpec(size=8, mean=5).to_json(tmp_path / "tiny.preprocess.json")
    (tmp_path / "tiny.labels.txt").write_text("ant\nbee\ncat\ndog\n")
    model = Classifier(tmp_path, device="CPU", cache_dir=None)  # a folder with one model
    assert model.files.model == path and model.spec.mean == (5.0, 5.0, 5.0)
    assert model.labels == ["ant", "bee", "cat", "dog"]
    assert model.predict(np.full((3, 3, 3), 200, np.uint8)).top[0].name == "dog"


def test_missing_spec_falls_back_to_input_shape_with_a_warning(tmp_path, caplog):
    model = Classifier(save(tiny_classifier_model(layout="NHWC"), tmp_path), device="CPU", cache_dir=None)
    assert model.spec.size == (8, 8) and model.spec.layout == "NHWC"
    assert "no preprocessing spec found" in caplog.text


def test_labels_must_match_the_number_of_classes(tmp_path):
    path = save(tiny_classifier_model(), tmp_path)
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    with pytest.raises(LabelsError, match="three.txt: 3 class names for a model with 4 classes"):
        Classifier(path, device="CPU", labels=tmp_path / "three.txt", cache_dir=None)


def test_onnx_model_loads_and_predicts(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weights = np.arange(12, dtype=np.float32).reshape(3, 4) / 10.0
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("MatMul", ["flat", "W"], ["logits"])],
        "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(weights, "W")])
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    model = Classifier(path, device="CPU", preprocess=PreprocessSpec(size=8), cache_dir=None)
    image = np.zeros((8, 8, 3), np.uint8)
    image[..., 2] = 10
    assert model.predict(image).top[0].index == 3
    np.testing.assert_allclose(model.infer(model.prepare(image).tensor[None])[0], [8.0, 9.0, 10.0, 11.0], atol=1e-4)


@pytest.mark.parametrize("setup, message", [
    (lambda d: d / "missing.xml", "model file not found"),
    (lambda d: (d / "model.txt").write_text("x") and d / "model.txt", "expected an OpenVINO IR"),
    (lambda d: (d / "bad.xml").write_text("<net><broken") and d / "bad.xml", "cannot read model"),
    (lambda d: d, "expected exactly one .xml or .onnx"),
])
def test_bad_model_paths_get_one_clear_line(tmp_path, setup, message):
    with pytest.raises(ModelLoadError) as info:
        Classifier(setup(tmp_path), device="CPU", cache_dir=None)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_prediction_validates_its_shapes():
    from ov_explain.core.model import ClassScore, Prediction

    with pytest.raises(ValueError, match=r"expected shape \(num_classes,\)"):
        Prediction("x", [ClassScore(0, None, 1.0)], np.zeros((2, 2)), "CPU", "logits")
    with pytest.raises(ValueError, match="sorted"):
        Prediction("x", [ClassScore(0, None, 0.1), ClassScore(1, None, 0.9)], np.zeros(2), "CPU", "logits")


def test_array_input_must_be_rgb_uint8(tmp_path):
    model = Classifier(save(tiny_classifier_model(), tmp_path), device="CPU", preprocess=PreprocessSpec(size=8),
                       cache_dir=None)
    with pytest.raises(PreprocessError, match="RGB uint8"):
        model.predict(np.zeros((8, 8), np.float32))


def test_real_photo_through_read_image_is_what_predict_sees(classifier, photos_dir):
    tensor_from_path = classifier.prepare(photos_dir / "chelsea.jpg").tensor
    tensor_from_array = classifier.prepare(read_image(photos_dir / "chelsea.jpg")).tensor
    np.testing.assert_array_equal(tensor_from_path, tensor_from_array)


# ----- where the preprocessing came from (Classifier.preprocess_origin) ---------------------------
TIMM_TINY = {"architecture": "tiny", "num_classes": 4,
             "pretrained_cfg": {"input_size": [3, 8, 8], "interpolation": "bicubic", "crop_pct": 1.0,
                                "crop_mode": "center", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}


def test_preprocess_origin_says_where_the_preprocessing_came_from(tmp_path, classifier):
    import json

    path = save(tiny_classifier_model(), tmp_path / "plain")
    assert Classifier(path, device="CPU", preprocess=PreprocessSpec(size=8), cache_dir=None
                      ).preprocess_origin == "a PreprocessSpec object"

    def my_prep(rgb):
        return np.zeros((3, 8, 8), np.float32)

    assert Classifier(path, device="CPU", preprocess=my_prep, cache_dir=None).preprocess_origin == \
        f"custom function {__name__}:test_preprocess_origin_says_where_the_preprocessing_came_from.<locals>.my_prep"
    assert Classifier(path, device="CPU", cache_dir=None).preprocess_origin == "none found: plain resize to 8x8"
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TIMM_TINY))
    from_timm = Classifier(path, device="CPU", preprocess=config, cache_dir=None)
    assert from_timm.preprocess_origin == f"timm pretrained_cfg {config}"
    assert from_timm.spec.mean == (127.5,) * 3 and from_timm.spec.std == (63.75,) * 3
    assert from_timm.spec.interpolation == "cubic" and from_timm.spec.layout == "NCHW"
    PreprocessSpec(size=8).to_json(tmp_path / "plain" / "tiny.preprocess.json")
    assert Classifier(path, device="CPU", cache_dir=None).preprocess_origin == \
        f"ov_explain spec {tmp_path / 'plain' / 'tiny.preprocess.json'}"
    assert classifier.preprocess_origin == "ov_explain spec in model rt_info"
    import openvino as ov

    embedded = tmp_path / "embedded" / "tiny.xml"
    embedded.parent.mkdir()
    ov.save_model(PreprocessSpec(size=8).embed(tiny_classifier_model()), str(embedded))
    assert Classifier(embedded, device="CPU", cache_dir=None).preprocess_origin == "embedded in the IR"


def test_a_dict_is_read_as_a_spec_or_a_foreign_config_and_a_wrong_one_is_named(tmp_path, classifier, photos_dir):
    as_dict = Classifier(preprocess=classifier.spec.to_dict(), device="CPU", cache_dir=None)
    assert as_dict.spec == classifier.spec and as_dict.preprocess_origin == "a dict (ov_explain spec)"
    photo = photos_dir / "coffee.jpg"
    np.testing.assert_array_equal(as_dict.predict(photo).probabilities, classifier.predict(photo).probabilities)
    path = save(tiny_classifier_model(), tmp_path / "plain")
    from_timm = Classifier(path, device="CPU", preprocess=dict(TIMM_TINY), cache_dir=None)
    assert from_timm.preprocess_origin == "a dict (timm pretrained_cfg)"
    assert from_timm.spec.mean == (127.5,) * 3 and from_timm.spec.interpolation == "cubic"
    with pytest.raises(PreprocessError, match=r"^preprocess: unknown key\(s\) \['sise'\]"):
        Classifier(path, device="CPU", preprocess={"size": 8, "sise": 8}, cache_dir=None)
    with pytest.raises(PreprocessError, match=r"^preprocess: not a preprocessing config .*keys: \['sise'\]"):
        Classifier(path, device="CPU", preprocess={"sise": 8}, cache_dir=None)
    with pytest.raises(PreprocessError, match="expected a spec, a dict, .* got int"):
        Classifier(path, device="CPU", preprocess=8, cache_dir=None)


def test_a_foreign_config_takes_the_models_nhwc_layout(tmp_path):
    import json

    path = save(tiny_classifier_model(layout="NHWC"), tmp_path)
    config = tmp_path / "preprocessor_config.json"
    config.write_text(json.dumps({"image_processor_type": "ViTImageProcessor", "do_resize": True,
                                  "size": {"height": 8, "width": 8}, "resample": 2, "do_rescale": True,
                                  "rescale_factor": 1 / 255, "do_normalize": False}))
    model = Classifier(path, device="CPU", preprocess=str(config), cache_dir=None)
    assert model.spec.layout == "NHWC" and model.spec.size == (8, 8) and model.input_layout == "HWC"
    assert model.preprocess_origin == f"Hugging Face ViTImageProcessor {config}"
    image = np.full((8, 8, 3), 255, np.uint8)
    np.testing.assert_allclose(model.prepare(image).tensor, 1.0, atol=1e-6)  # x / 255, HWC


def test_a_foreign_sidecar_is_ignored_with_one_warning_and_can_be_named(tmp_path, caplog):
    import json
    import logging

    path = save(tiny_classifier_model(), tmp_path)
    sidecar = tmp_path / "tiny.preprocess.json"
    sidecar.write_text(json.dumps(TIMM_TINY))
    with caplog.at_level(logging.WARNING, logger="ov_explain"):
        model = Classifier(path, device="CPU", cache_dir=None)
    ignored = [r.getMessage() for r in caplog.records if "not an ov_explain spec" in r.getMessage()]
    assert ignored == [f"{sidecar} is a timm pretrained_cfg, not an ov_explain spec: ignored; pass --preprocess "
                       f"{sidecar} to use it"]
    assert model.preprocess_origin == "none found: plain resize to 8x8" and model.spec == PreprocessSpec(size=8)
    assert model.predict(np.full((4, 4, 3), 9, np.uint8)).top  # still runs
    named = Classifier(path, device="CPU", preprocess=sidecar, cache_dir=None)
    assert named.preprocess_origin == f"timm pretrained_cfg {sidecar}" and named.spec.mean == (127.5,) * 3


def test_a_broken_own_sidecar_still_stops_and_a_named_foreign_file_stays_strict(tmp_path):
    import json

    path = save(tiny_classifier_model(), tmp_path)
    sidecar = tmp_path / "preprocess.json"
    sidecar.write_text(json.dumps({"size": 8, "resize": "crop"}))
    with pytest.raises(PreprocessError, match=f"^{sidecar}: resize must be one of"):
        Classifier(path, device="CPU", cache_dir=None)
    sidecar.unlink()
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({"pretrained_cfg": {**TIMM_TINY["pretrained_cfg"], "crop_mode": "border"}}))
    with pytest.raises(PreprocessError, match=f"^{bad}: timm pretrained_cfg: crop_mode 'border' is not supported"):
        Classifier(path, device="CPU", preprocess=bad, cache_dir=None)
    wrong_size = tmp_path / "big.json"
    wrong_size.write_text(json.dumps({"pretrained_cfg": {**TIMM_TINY["pretrained_cfg"], "input_size": [3, 16, 16]}}))
    with pytest.raises(PreprocessError, match="16x16 does not fit tiny.xml"):
        Classifier(path, device="CPU", preprocess=wrong_size, cache_dir=None)
