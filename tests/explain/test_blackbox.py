"""RISE and AISE: determinism, cancellation, bounded work, and maps that land on the object."""

from __future__ import annotations

import numpy as np
import pytest

from ov_explain.explain import Explainer
from ov_explain.explain.blackbox import Cancelled
from ov_explain.explain.methods.rise import rise_masks

# Where the objects are in the bundled photos, (x0, y0, x1, y1) in original pixels.
COFFEE_CUP = (100, 20, 480, 330)


def test_rise_masks_are_smooth_bounded_and_seeded():
    a = rise_masks(np.random.default_rng(3), 4, (32, 48), 4, 0.5)
    b = rise_masks(np.random.default_rng(3), 4, (32, 48), 4, 0.5)
    c = rise_masks(np.random.default_rng(4), 4, (32, 48), 4, 0.5)
    assert a.shape == (4, 32, 48) and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 1 and 0.2 < a.mean() < 0.8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.fixture(scope="module")
def rise_explainer(classifier):
    return Explainer(classifier, method="rise", seed=1, num_masks=96, num_cells=6)


@pytest.mark.slow
def test_rise_is_deterministic_for_a_seed_and_records_its_work(rise_explainer, classifier, photos_dir):
    first = rise_explainer.explain(photos_dir / "coffee.jpg", targets=[967, 968])
    second = rise_explainer.explain(photos_dir / "coffee.jpg", targets=[967, 968])
    np.testing.assert_allclose(first.maps[0].raw, second.maps[0].raw, rtol=1e-6)
    assert (first.mode, first.method, first.target_layer) == ("blackbox", "rise", None)
    assert first.maps[0].raw.shape == (224, 224) and first.maps[0].on_image.shape == (400, 600)
    assert first.inferences == 96 // 8 + 1  # batches of 8 masks + the prediction
    assert first.images_inferred == 96 + 1  # every mask, and the prediction
    alone = rise_explainer.explain(photos_dir / "coffee.jpg", targets=[968])
    assert np.array_equal(alone.maps[0].raw, first.maps[1].raw)  # a map does not depend on the targets beside it
    other_seed = Explainer(classifier, method="rise", seed=2, num_masks=96, num_cells=6)
    assert not np.allclose(other_seed.explain(photos_dir / "coffee.jpg", targets=[967]).maps[0].raw,
                           first.maps[0].raw)


@pytest.mark.slow
def test_rise_peak_is_on_the_cup(classifier, photos_dir):
    from ov_explain.evaluate.metrics import pointing_game

    explainer = Explainer(classifier, method="rise", preset="speed", seed=0)
    result = explainer.explain(photos_dir / "coffee.jpg", targets=["espresso"])
    assert pointing_game(result.maps[0].on_image, COFFEE_CUP)


@pytest.mark.slow
def test_aise_is_deterministic_and_lands_on_the_cup(classifier, photos_dir):
    from ov_explain.evaluate.metrics import pointing_game

    explainer = Explainer(classifier, method="aise", preset="speed")
    first = explainer.explain(photos_dir / "coffee.jpg", targets=[967])
    second = explainer.explain(photos_dir / "coffee.jpg", targets=[967])
    np.testing.assert_allclose(first.maps[0].raw, second.maps[0].raw, rtol=1e-5, atol=1e-6)
    assert first.method == "aise" and first.maps[0].raw.max() == pytest.approx(1.0)
    assert 20 <= first.inferences <= 3 * 40  # about 20 probes per kernel width, each one batch of two
    assert first.images_inferred == 2 * (first.inferences - 1) + 1  # a preserve/delete pair per probe
    assert pointing_game(first.maps[0].on_image, COFFEE_CUP)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["rise", "aise"])
def test_progress_reports_and_cancels(classifier, photos_dir, method):
    seen = []

    def stop_after_two(done, total):
        seen.append((done, total))
        return done >= 2

    explainer = Explainer(classifier, method=method, preset="speed")
    with pytest.raises(Cancelled):
        explainer.explain(photos_dir / "coffee.jpg", targets=[967], progress=stop_after_two)
    assert seen[0][0] == 1 and seen[-1][0] >= 2 and seen[0][1] > 2


@pytest.mark.slow
def test_aise_relative_weighting_is_more_faithful_than_openvino_xais_raw_weighting(classifier, photos_dir):
    """On a confident photo every probe's preserve-minus-delete score is negative. Raw weights (what
    openvino-xai does, kept for parity) then sum to a negative map divided by its negative maximum:
    values run from exactly 1 upwards and the brightest area is where probes scored worst."""
    from ov_explain import read_image
    from ov_explain.evaluate.metrics import insertion_deletion_auc

    image = read_image(photos_dir / "camera.jpg")
    gaps = {}
    for weighting in ("relative", "raw"):
        result = Explainer(classifier, method="aise", preset="speed", weighting=weighting).explain(image, top_k=1)
        saliency = result.maps[0]
        assert saliency.name == "tripod"
        insertion, deletion = insertion_deletion_auc(image, saliency.on_image, saliency.target,
                                                     classifier.probabilities)
        gaps[weighting] = insertion - deletion
        if weighting == "raw":
            assert saliency.raw.min() == pytest.approx(1.0) and saliency.raw.max() > 2
        else:
            assert 0 <= saliency.raw.min() < 0.1 and saliency.raw.max() == pytest.approx(1.0)
    assert gaps["relative"] > gaps["raw"] + 0.3, gaps  # measured 0.84 vs 0.08


def test_unknown_aise_weighting_is_a_clear_error_before_any_image(classifier):
    from ov_explain.explain.base import ExplainError

    with pytest.raises(ExplainError, match=r"aise: weighting must be one of \['relative', 'raw'\], got 'softmax'"):
        Explainer(classifier, method="aise", preset="speed", weighting="softmax")


@pytest.mark.slow
def test_rise_with_a_baseline_is_its_definition_over_the_same_masks(classifier, photos_dir):
    """sum((w - mean w) * mask) / (N p) + mean w over the seed's masks, scored here one batch at a time."""
    explainer = Explainer(classifier, method="rise", seed=5, num_masks=64, num_cells=4, converged=1)
    found = explainer.explain(photos_dir / "coffee.jpg", targets=[967]).maps[0].raw
    prepared = explainer.prepare(photos_dir / "coffee.jpg")
    masks = rise_masks(np.random.default_rng(5), 64, prepared.spatial_size, 4, 0.5)
    request = explainer._runner.compiled.create_infer_request()
    weights = []
    for start in range(0, 64, 8):
        request.infer({0: prepared.masked(masks[start:start + 8])})
        raw = np.array(request.get_output_tensor(classifier.output_index).data).reshape(8, -1)
        weights.append(classifier.to_probabilities(raw)[0][:, 967])
    w = np.concatenate(weights).astype(np.float64)
    expected = np.tensordot(w - w.mean(), masks.astype(np.float64), 1) / (64 * 0.5) + w.mean()
    np.testing.assert_allclose(found, expected, atol=1e-5)
    classic = Explainer(classifier, method="rise", seed=5, num_masks=64, num_cells=4, converged=1, baseline=False)
    np.testing.assert_allclose(classic.explain(photos_dir / "coffee.jpg", targets=[967]).maps[0].raw,
                               np.tensordot(w, masks.astype(np.float64), 1) / (64 * 0.5), atol=1e-5)


@pytest.mark.slow
def test_rise_stops_once_converged_the_same_way_whatever_the_timing(classifier, photos_dir):
    explainer = Explainer(classifier, method="rise", preset="speed", seed=0)
    prepared = explainer.prepare(photos_dir / "coffee.jpg")
    one = explainer.explain_prepared(prepared, targets=[967], parallel=1)
    many = explainer.explain_prepared(prepared, targets=[967], parallel=6)
    assert one.images_inferred == many.images_inferred < 1000 + 1  # stopped at a checkpoint, before the preset's masks
    assert (one.images_inferred - 1) % 128 == 0
    assert np.array_equal(one.maps[0].raw, many.maps[0].raw)
    every = Explainer(classifier, method="rise", preset="speed", seed=0, converged=1).explain_prepared(
        prepared, targets=[967])
    assert every.images_inferred == 1000 + 1
    assert np.corrcoef(every.maps[0].raw.ravel(), one.maps[0].raw.ravel())[0, 1] > 0.95


@pytest.mark.parametrize("options, message", [
    ({"converged": 0}, r"converged must be a number in \(0, 1\]"),
    ({"converged": 1.5}, r"converged must be a number in \(0, 1\]"),
    ({"baseline": "yes"}, "baseline must be true or false"),
])
def test_rise_refuses_bad_convergence_options(classifier, options, message):
    from ov_explain.explain.base import ExplainError

    with pytest.raises(ExplainError, match=message):
        Explainer(classifier, method="rise", **options)
