"""An IR with the preprocessing embedded (uint8 RGB pixels in, the graph normalises) is explained by
every method, from Python, the CLI and the audit, with the maps of the same model without embedding.

The black-box methods mask pixels towards the spec's mean colour, which is exactly masking the
normalised tensor towards zero, and run on a float32 copy of the input so nothing is rounded: their
maps are the plain model's. White-box maps differ only by where (x - mean) / std is computed.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from ov_explain import Classifier, PreprocessSpec
from ov_explain.explain import Explainer
from ov_explain.runs.audit.run import run_audit
from ov_explain.runs.dataset import read_dataset

#: Few masks / probes: the comparison needs the same work on both models, not a good map.
METHODS = [("reciprocam", {}), ("activationmap", {}), ("rise", {"num_masks": 160}), ("aise", {"iterations": 12})]


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def save_embedded(classifier: Classifier, folder, spec: PreprocessSpec | None = None):
    import openvino as ov

    spec = spec or classifier.spec
    path = folder / "embedded.xml"
    ov.save_model(spec.embed(ov.Core().read_model(str(classifier.files.model))), str(path), compress_to_fp16=False)
    shutil.copy(classifier.files.labels, folder / "embedded.labels.txt")
    return path


@pytest.fixture(scope="module")
def embedded_ir(tmp_path_factory, classifier):
    return save_embedded(classifier, tmp_path_factory.mktemp("embedded"))


@pytest.fixture(scope="module")
def embedded(embedded_ir):
    return Classifier(embedded_ir, device="CPU", cache_dir=None)


def assert_same_maps(plain, inside, method):
    assert [m.target for m in inside.maps] == [m.target for m in plain.maps]
    assert inside.prediction.top[0].index == plain.prediction.top[0].index
    for mine, theirs in zip(inside.maps, plain.maps):
        assert mine.raw.shape == theirs.raw.shape and mine.on_image.shape == theirs.on_image.shape
        scale = float(np.abs(theirs.raw).max())
        if method in ("rise", "aise"):  # the same float input on both: the same numbers
            np.testing.assert_allclose(mine.raw, theirs.raw, rtol=1e-5, atol=1e-6 * scale)
        else:  # normalised in the graph vs in numpy: float rounding only
            np.testing.assert_allclose(mine.raw, theirs.raw, rtol=1e-3, atol=1e-4 * scale)
            assert pearson(mine.raw, theirs.raw) > 0.99999


@pytest.mark.parametrize("method, options", METHODS)
def test_every_method_explains_an_embedded_ir_like_the_plain_model(classifier, embedded, photos_dir, method,
                                                                    options):
    assert embedded.embedded and embedded.input_layout == "HWC"
    plain = Explainer(classifier, method=method, preset="speed", **options)
    inside = Explainer(embedded, method=method, preset="speed", **options)
    for photo in ("coffee.jpg", "chelsea.jpg"):
        expected = plain.explain(photos_dir / photo, targets="predicted", top_k=2, threshold=0.0)
        got = inside.explain(photos_dir / photo, targets="predicted", top_k=2, threshold=0.0)
        assert got.source == str(photos_dir / photo) and got.method == method
        assert_same_maps(expected, got, method)


@pytest.mark.parametrize("spec", [
    PreprocessSpec(size=224, resize="stretch", interpolation="linear", mean=127.0, std=128.0),
    # Per-channel means in BGR order: the fill must be each channel's own mean, in the input's RGB order.
    PreprocessSpec(size=224, resize="stretch", interpolation="cubic", mean=(100.0, 120.0, 140.0),
                   std=(60.0, 64.0, 68.0), color="BGR"),
], ids=["stretch-rgb", "stretch-bgr-per-channel"])
def test_blackbox_on_a_graph_that_resizes_masks_at_the_model_size(classifier, photos_dir, tmp_path, spec):
    """A stretch spec embeds the resize too: the graph takes any image size, the masks do not."""
    inside = Classifier(save_embedded(classifier, tmp_path, spec), device="CPU", cache_dir=None)
    assert inside.spec.embeds_resize
    plain = Classifier(classifier.files.model, device="CPU", cache_dir=None, preprocess=spec)
    for method, options in METHODS[2:]:
        expected = Explainer(plain, method=method, preset="speed", **options).explain(photos_dir / "camera.jpg")
        got = Explainer(inside, method=method, preset="speed", **options).explain(photos_dir / "camera.jpg")
        assert got.maps[0].raw.shape == (224, 224)
        assert_same_maps(expected, got, method)


def test_prepared_input_of_an_embedded_ir_is_pixels_with_the_mean_as_fill(classifier, chelsea_rgb, tmp_path):
    spec = PreprocessSpec(size=224, mean=(100.0, 120.0, 140.0), std=(60.0, 64.0, 68.0), color="BGR")
    embedded = Classifier(save_embedded(classifier, tmp_path, spec), device="CPU", cache_dir=None)
    prepared = embedded.prepare(chelsea_rgb)
    assert prepared.layout == "HWC" and prepared.tensor.dtype == np.uint8 and prepared.source == "<array>"
    assert prepared.fill == (140.0, 120.0, 100.0)  # the model's B, G, R means, for the input's R, G, B
    masked = prepared.masked(np.zeros((1,) + prepared.spatial_size, np.float32))
    assert masked.dtype == np.float32 and np.all(masked[0] == np.float32([140.0, 120.0, 100.0]))
    # Normalised as the graph does it, a fully masked input is all zeros: masking the tensor to zero.
    np.testing.assert_allclose(spec.normalize(masked[0].astype(np.uint8)), 0.0, atol=1e-6)


def test_other_preprocessing_on_an_embedded_ir_is_refused(embedded_ir):
    from ov_explain.core.errors import PreprocessError

    for preprocess in (PreprocessSpec(size=224), lambda rgb: rgb):
        with pytest.raises(PreprocessError, match="preprocessing is embedded in this IR"):
            Classifier(embedded_ir, device="CPU", cache_dir=None, preprocess=preprocess)


def test_vit_reciprocam_explains_an_embedded_transformer_like_the_plain_one(tmp_path):
    import openvino as ov
    from support import save_model, tiny_vit

    spec = PreprocessSpec(size=32, std=(255.0, 255.0, 255.0))
    path = save_model(tiny_vit(planted=True), tmp_path, "vit")
    plain = Classifier(path, device="CPU", cache_dir=None, preprocess=spec)
    embedded_path = tmp_path / "vit_embedded.xml"
    ov.save_model(spec.embed(ov.Core().read_model(str(path))), str(embedded_path), compress_to_fp16=False)
    inside = Classifier(embedded_path, device="CPU", cache_dir=None)
    image = np.random.default_rng(4).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    expected = Explainer(plain).explain(image, targets="all")
    got = Explainer(inside).explain(image, targets="all")
    assert got.method == expected.method == "vitreciprocam"
    assert_same_maps(expected, got, "vitreciprocam")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["reciprocam", "activationmap", "rise", "aise"])
def test_cli_explains_an_embedded_ir_with_every_method(run, embedded_ir, classifier, photos_dir, tmp_path, method):
    outputs = []
    for name, model in (("plain", classifier.files.model), ("embedded", embedded_ir)):
        result = run("explain", photos_dir / "coffee.jpg", "--model", model, "--device", "CPU", "--method", method,
                     "--preset", "speed", "--raw", "--json", "--out", tmp_path / name)
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["errors"] == [] and report["method"] == method
        outputs.append(np.load(report["explanations"][0]["maps"][0]["raw"]))
    plain, inside = outputs
    assert inside.shape == plain.shape and pearson(inside, plain) > 0.9999


@pytest.mark.slow
@pytest.mark.parametrize("method, options", [("reciprocam", {}), ("rise", {"num_masks": 80}),
                                             ("aise", {"iterations": 8})])
def test_audit_of_an_embedded_ir_gives_the_plain_models_cases_and_maps(classifier, embedded, photos_dir, tmp_path,
                                                                       method, options):
    samples = read_dataset(photos_dir / "ground_truth.csv")
    found = {}
    for name, model in (("plain", classifier), ("embedded", embedded)):
        with Explainer(model, method=method, preset="speed", **options) as explainer:
            summary = run_audit(samples, explainer, tmp_path / name, options=_raw_maps())
        assert summary.errors == 0 and summary.images == len(samples)
        rows = [json.loads(line) for line in (tmp_path / name / "manifest.jsonl").read_text().splitlines()]
        found[name] = {(r["key"], r["target_index"]): (r["case"], np.load(tmp_path / name / r["raw_path"]))
                       for r in rows}
    assert found["embedded"].keys() == found["plain"].keys()
    for key, (case, raw) in found["plain"].items():
        other_case, other_raw = found["embedded"][key]
        assert other_case == case and pearson(raw, other_raw) > 0.9999, key


def _raw_maps():
    from ov_explain.runs.audit.run import AuditOptions

    return AuditOptions(save_raw=True, grids=False, report=False)
