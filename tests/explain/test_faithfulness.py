"""Explanations must mean something: insertion beats deletion, and a random head changes the maps."""

from __future__ import annotations

import numpy as np
import pytest

from ov_explain import Classifier, read_image
from ov_explain.evaluate.metrics import insertion_deletion_auc
from ov_explain.explain import Explainer

PHOTOS = ["coffee.jpg", "camera.jpg", "chelsea.jpg", "motorcycle.jpg", "astronaut.jpg", "rocket.jpg",
          "grace_hopper.jpg"]


@pytest.mark.slow
def test_insertion_beats_deletion_for_reciprocam_on_most_photos(classifier, photos_dir):
    explainer = Explainer(classifier)
    wins = []
    for name in PHOTOS:
        image = read_image(photos_dir / name)
        result = explainer.explain(image, top_k=1)
        target = result.maps[0].target
        insertion, deletion = insertion_deletion_auc(image, result.maps[0].on_image, target,
                                                     classifier.probabilities)
        wins.append(insertion > deletion)
    assert sum(wins) >= 5, f"insertion > deletion on only {sum(wins)} of {len(wins)} photos: {wins}"


@pytest.mark.slow
def test_randomising_the_head_changes_the_maps(classifier, photos_dir, tmp_path):
    import openvino as ov

    from ov_explain.core._compat import opset

    model = ov.Core().read_model(str(classifier.files.model))
    fc = next(n for n in model.get_ordered_ops() if n.get_type_name() == "MatMul")
    weights_node = fc.input_value(1).get_node()
    shape = list(weights_node.get_output_shape(0))
    rng = np.random.default_rng(0)
    random_weights = opset.constant(rng.normal(0, 0.05, shape).astype(np.float32))
    fc.input(1).replace_source_output(random_weights.output(0))
    path = tmp_path / "random_head.xml"
    ov.save_model(model, str(path), compress_to_fp16=False)
    randomised = Classifier(path, device="CPU", labels=classifier.labels, cache_dir=None)
    correlations = []
    for name in ("coffee.jpg", "camera.jpg", "chelsea.jpg"):
        real = Explainer(classifier).explain(photos_dir / name, targets=[967])
        fake = Explainer(randomised).explain(photos_dir / name, targets=[967])
        correlations.append(np.corrcoef(real.maps[0].raw.ravel(), fake.maps[0].raw.ravel())[0, 1])
    assert max(abs(c) for c in correlations) < 0.5, correlations


@pytest.mark.slow
def test_road_ranks_reciprocam_above_a_random_map_on_real_photos(classifier, photos_dir):
    """At model-input resolution, as the faithfulness benchmark scores: removing ReciproCAM's top
    pixels hurts the top class more than removing its bottom ones, and more than a random map does."""
    import cv2

    from ov_explain.evaluate.metrics import road

    spec = classifier.spec

    def score(batch):
        tensors = np.stack([spec.normalize(image) for image in batch])
        return classifier.to_probabilities(classifier.infer(tensors))[0]

    explainer = Explainer(classifier, method="reciprocam")
    rng = np.random.default_rng(0)
    for name in ("coffee.jpg", "chelsea.jpg", "motorcycle.jpg"):
        image = read_image(photos_dir / name)
        fitted, _ = spec.fit(image)
        target = int(np.argmax(score(fitted[None])[0]))
        raw = explainer.explain(image, targets=[target]).maps[0].raw
        saliency = cv2.resize(raw, spec.size[::-1], interpolation=cv2.INTER_LINEAR)
        real = road(fitted, saliency, target, score, percentiles=(20, 50, 80))
        noise = road(fitted, cv2.resize(rng.random((7, 7)).astype(np.float32), spec.size[::-1]), target, score,
                     percentiles=(20, 50, 80))
        assert real.morf_mean < real.lerf_mean, (name, real)
        assert real.score > noise.score + 0.05, (name, real.score, noise.score)
