"""ROAD's noisy linear imputation and curves, insertion / deletion batching and the rank correlation,
on cases whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from ov_explain.evaluate.metrics import (
    _NEIGHBOURS,
    insertion_deletion_auc,
    insertion_deletion_curves,
    noisy_linear_impute,
    pointing_game,
    rank_correlation,
    road,
)


def ramp(height: int = 24, width: int = 30) -> np.ndarray:
    """A linear ramp per channel: the 8-neighbour weighted mean of any interior pixel is the pixel."""
    y, x = np.mgrid[:height, :width].astype(np.float64)
    return np.stack([3 * x + 2 * y, 200 - 4 * y, x - y + 60], axis=-1)


def test_a_linear_ramp_with_an_interior_block_removed_is_reproduced():
    image = ramp()
    removed = np.zeros(image.shape[:2], bool)
    removed[5:15, 8:20] = True
    damaged = image.copy()
    damaged[removed] = 0  # the removed values must not leak into the solution
    filled = noisy_linear_impute(damaged, removed, noise=0)
    assert filled.dtype == np.float32
    np.testing.assert_allclose(filled, image, atol=1e-4)


def test_a_uint8_ramp_comes_back_exactly_as_uint8():
    image = ramp().astype(np.uint8)
    removed = np.zeros(image.shape[:2], bool)
    removed[3:20, 2:27] = True
    filled = noisy_linear_impute(np.where(removed[..., None], 255, image).astype(np.uint8), removed, noise=0)
    assert filled.dtype == np.uint8
    np.testing.assert_array_equal(filled, image)


def test_every_removed_pixel_is_the_weighted_mean_of_its_neighbours_border_included():
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 255, (16, 18, 3))
    removed = rng.random((16, 18)) < 0.5
    removed[0, :] = True  # a whole border row: its pixels have only 5 (corners 3) neighbours
    filled = noisy_linear_impute(image, removed, noise=0).astype(np.float64)
    for y, x in zip(*np.nonzero(removed)):
        total, weights = np.zeros(3), 0.0
        for dy, dx, weight in _NEIGHBOURS:
            if 0 <= y + dy < 16 and 0 <= x + dx < 18:
                total += weight * filled[y + dy, x + dx]
                weights += weight
        np.testing.assert_allclose(filled[y, x], total / weights, atol=1e-3)
    assert sorted({w for _, _, w in _NEIGHBOURS}) == pytest.approx([1 / 12, 1 / 6])


def test_only_removed_pixels_change():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (20, 20, 3)).astype(np.uint8)
    removed = rng.random((20, 20)) < 0.3
    filled = noisy_linear_impute(image, removed, noise=0.05, rng=3)
    np.testing.assert_array_equal(filled[~removed], image[~removed])
    assert (filled[removed] != image[removed]).any(axis=-1).mean() > 0.9


def test_the_noise_has_the_asked_std_and_comes_from_the_seed():
    image = np.full((60, 60, 3), 100.0)
    removed = np.zeros((60, 60), bool)
    removed[10:50, 10:50] = True
    filled = noisy_linear_impute(image, removed, noise=0.02, rng=7)
    residual = filled[removed].astype(np.float64) - 100.0  # the noiseless fill of a constant is the constant
    assert residual.std() == pytest.approx(0.02 * 255, rel=0.05)
    assert abs(residual.mean()) < 0.3
    np.testing.assert_array_equal(filled, noisy_linear_impute(image, removed, noise=0.02, rng=7))
    assert not np.array_equal(filled, noisy_linear_impute(image, removed, noise=0.02, rng=8))
    np.testing.assert_array_equal(noisy_linear_impute(image, removed, noise=0), image.astype(np.float32))


def test_imputation_refuses_bad_inputs():
    image = np.zeros((10, 12, 3))
    with pytest.raises(ValueError, match=r"\(10, 11\).*\(10, 12\)"):
        noisy_linear_impute(image, np.zeros((10, 11), bool))
    with pytest.raises(ValueError, match="every pixel"):
        noisy_linear_impute(image, np.ones((10, 12), bool))
    with pytest.raises(ValueError, match="noise"):
        noisy_linear_impute(image, np.zeros((10, 12), bool), noise=-1)
    np.testing.assert_array_equal(noisy_linear_impute(image, np.zeros((10, 12), bool)), image)


# ----- ROAD on a scorer that reads one region ----------------------------------------------------
BRIGHT = 200.0


def region_case():
    """A 30x30 image, bright in the top-left 10x10 region R (100 of 900 pixels), and a scorer whose
    class-0 probability is R's mean / 255: removing R is what hurts, nothing else matters."""
    image = np.zeros((30, 30, 3), np.float32)
    image[:10, :10] = BRIGHT
    perfect = np.zeros((30, 30), np.float32)
    perfect[:10, :10] = 1.0

    def score(batch):
        inside = np.asarray(batch, np.float64)[:, :10, :10].mean(axis=(1, 2, 3)) / 255.0
        return np.stack([inside, 1 - inside], axis=1)

    return image, perfect, score


def test_road_of_a_perfect_map_and_of_its_reverse():
    image, perfect, score = region_case()
    percentiles = (20, 40, 60, 80)  # past R's 11 % and short of the 89 % outside it
    good = road(image, perfect, 0, score, percentiles=percentiles, noise=0)
    # MoRF removes all of R first; its only known neighbours are 0, so it is filled with 0 exactly.
    np.testing.assert_allclose(good.morf, 0.0, atol=1e-9)
    # LeRF removes only pixels outside R: R, and so the score, is untouched.
    np.testing.assert_allclose(good.lerf, BRIGHT / 255, atol=1e-6)
    assert good.score == pytest.approx(BRIGHT / 255 / 2, abs=1e-6)
    assert (good.morf_mean, good.lerf_mean) == pytest.approx((0.0, BRIGHT / 255), abs=1e-6)
    bad = road(image, 1 - perfect, 0, score, percentiles=percentiles, noise=0)
    np.testing.assert_allclose(bad.morf, BRIGHT / 255, atol=1e-6)
    np.testing.assert_allclose(bad.lerf, 0.0, atol=1e-9)
    assert bad.score == pytest.approx(-BRIGHT / 255 / 2, abs=1e-6)
    assert good.percentiles == (20.0, 40.0, 60.0, 80.0)


def test_road_default_percentiles_with_noise_rank_the_maps():
    image, perfect, score = region_case()
    good = road(image, perfect, 0, score, seed=1)
    bad = road(image, 1 - perfect, 0, score, seed=1)
    assert good.percentiles == tuple(float(p) for p in range(10, 100, 10))
    assert len(good.morf) == len(good.lerf) == 9
    assert good.score > 0.3 and bad.score < -0.3
    # From 20 % MoRF has removed all of R: the fill is 0 plus zero-mean noise; LeRF up to 80 % keeps R.
    np.testing.assert_allclose(good.morf[1:], 0.0, atol=0.01)
    np.testing.assert_allclose(good.lerf[:-1], BRIGHT / 255, atol=1e-6)
    assert good.morf[0] < good.lerf[0]
    assert road(image, perfect, 0, score, seed=1).score == good.score  # the seed fixes the noise


def test_road_scores_in_batches_of_the_asked_size():
    image, perfect, score = region_case()
    sizes = []

    def counting(batch):
        sizes.append(len(batch))
        return score(batch)

    whole = road(image, perfect, 0, score, noise=0)
    batched = road(image, perfect, 0, counting, noise=0, batch_size=4)
    assert sizes == [4, 4, 1, 4, 4, 1]  # 9 MoRF images then 9 LeRF images
    np.testing.assert_array_equal(whole.morf, batched.morf)
    np.testing.assert_array_equal(whole.lerf, batched.lerf)


def test_road_refuses_bad_shapes_and_percentiles():
    image, perfect, score = region_case()
    with pytest.raises(ValueError, match=r"\(29, 30\).*\(30, 30\)"):
        road(image, perfect[1:], 0, score)
    with pytest.raises(ValueError, match=r"image shape \(30, 30\)"):
        road(image[..., 0], perfect, 0, score)
    for bad in ((0, 50), (50, 100), ()):
        with pytest.raises(ValueError, match="percentiles"):
            road(image, perfect, 0, score, percentiles=bad)


# ----- insertion / deletion ----------------------------------------------------------------------
def _left_half_world():
    """A 'model' that only looks at the left half of a 20x20 image, the image, and the map of that half."""
    image = np.zeros((20, 20, 3), np.uint8)
    image[:, :10] = 200

    def score(batch):
        left = batch[:, :, :10].mean(axis=(1, 2, 3)) / 200.0
        return np.stack([left, 1 - left], axis=1)

    good = np.zeros((20, 20), np.float32)
    good[:, :10] = 1
    return image, score, good


def test_metric_functions_on_a_known_score():
    """A map on the half the model looks at scores best."""
    image, score, good = _left_half_world()
    insertion, deletion = insertion_deletion_auc(image, good, 0, score, steps=10, blur_sigma=1)
    bad_insertion, bad_deletion = insertion_deletion_auc(image, 1 - good, 0, score, steps=10, blur_sigma=1)
    assert insertion > bad_insertion and deletion < bad_deletion
    assert pointing_game(good, (0, 0, 9, 19), tolerance=0)
    assert not pointing_game(1 - good, (0, 0, 9, 19), tolerance=0)
    with pytest.raises(ValueError, match="must match the image"):
        insertion_deletion_auc(image, good[:5], 0, score)


def test_insertion_deletion_steps_and_batches():
    image, score, good = _left_half_world()
    sizes = []

    def counting(batch):
        sizes.append(len(batch))
        return score(batch)

    insertion, deletion = insertion_deletion_curves(image, good, 0, counting, steps=4, blur_sigma=1,
                                                    batch_size=2)
    assert sizes == [2, 2, 1] * 2
    # Deletion greys the left half in 4 quarters of the image: the first two steps take it all.
    np.testing.assert_allclose(deletion, [1.0, 127 / 200 * 0.5 + 0.5, 127 / 200, 127 / 200, 127 / 200])
    assert insertion[-1] == pytest.approx(1.0) and insertion[2] == pytest.approx(1.0)
    one_batch = insertion_deletion_curves(image, good, 0, score, steps=4, blur_sigma=1)
    np.testing.assert_array_equal(one_batch[0], insertion)
    auc = insertion_deletion_auc(image, good, 0, score, steps=4, blur_sigma=1, batch_size=3)
    trapezoid = 0.25 * (deletion.sum() - (deletion[0] + deletion[-1]) / 2)  # numpy 1.x has no np.trapezoid
    assert auc[1] == pytest.approx(trapezoid)
    with pytest.raises(ValueError, match="steps"):
        insertion_deletion_auc(image, good, 0, score, steps=0)
    with pytest.raises(ValueError, match="batch_size"):
        insertion_deletion_auc(image, good, 0, score, batch_size=0)


# ----- rank correlation --------------------------------------------------------------------------
def test_rank_correlation():
    rng = np.random.default_rng(4)
    a = rng.random((7, 7))
    b = a + rng.normal(0, 0.3, (7, 7))
    assert rank_correlation(a, a) == pytest.approx(1.0)
    assert rank_correlation(a, np.exp(5 * a)) == pytest.approx(1.0)  # ranks only: any increasing map
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    assert rank_correlation(a, b) == pytest.approx(spearmanr(a.ravel(), b.ravel()).statistic)
    ties = np.round(b, 1)
    assert rank_correlation(a, ties) == pytest.approx(spearmanr(a.ravel(), ties.ravel()).statistic)
    assert np.isnan(rank_correlation(a, np.ones((7, 7))))
    with pytest.raises(ValueError, match=r"\(7, 7\) and \(7, 6\)"):
        rank_correlation(a, a[:, :6])
