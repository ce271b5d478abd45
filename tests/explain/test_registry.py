"""The method registry: one object per method, and everything that lists methods reads it."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from ov_explain.cli import main
from ov_explain.explain import Explainer, ExplainError, registry
from ov_explain.explain.method import BlackboxMethod
from ov_explain.explain.registry import METHODS, get_method, method_names

METHOD_TABLE = Path(__file__).resolve().parents[2] / "docs" / "explaining.md"  # the method table's page


def test_every_registered_method_is_one_object_of_its_mode():
    assert list(METHODS) == ["cam", "reciprocam", "vitreciprocam", "vitcam", "activationmap", "rise", "aise",
                             "detreciprocam", "drise"]
    for name, method in METHODS.items():
        assert method.name == name and method.mode in ("whitebox", "blackbox") and method.summary
        assert method.task == ("detection" if name in ("detreciprocam", "drise") else "classification")
        # every built-in classification method but the two CAMs has an openvino-xai twin (it explains no detector)
        assert (method.xai_name is None) == (name in ("cam", "vitcam", "detreciprocam", "drise"))
    assert method_names("blackbox") == ["rise", "aise", "drise"]
    assert method_names("blackbox", task="classification") == ["rise", "aise"]
    assert get_method("ViT-ReciproCAM") is METHODS["vitreciprocam"]
    with pytest.raises(ExplainError, match="unknown method 'gradcam'; known: cam, reciprocam, vitreciprocam"):
        get_method("gradcam")


def test_the_default_whitebox_method_is_the_most_faithful_one_that_applies(classifier):
    """CAM with the probability read-out where the head is pooling + linear (the faithfulness table's
    choice), ReciproCAM for other heads or a layer CAM cannot use, ViT-ReciproCAM for transformers."""
    from support import tiny_cnn, tiny_vit

    from ov_explain.explain.registry import default_whitebox_method

    assert default_whitebox_method(classifier.model).name == "cam"
    assert default_whitebox_method(tiny_cnn(head="mlp")).name == "reciprocam"
    assert default_whitebox_method(tiny_vit()).name == "vitreciprocam"
    assert default_whitebox_method(classifier.model, xai_only=True).name == "reciprocam"  # openvino-xai has no CAM
    earlier = "__module._blocks.15._swish/aten::hardtanh/Clamp_1"  # a feature map the head does not pool directly
    assert default_whitebox_method(classifier.model, target_layer=earlier).name == "reciprocam"
    explainer = Explainer(classifier)
    assert (explainer.method, explainer.readout, explainer.mode) == ("cam", "probability", "whitebox")
    assert Explainer(classifier, method="reciprocam").readout == "logit"  # openvino-xai's read-out
    on_earlier = Explainer(classifier, target_layer=earlier)
    assert (on_earlier.method, on_earlier.mode, on_earlier.target_layer) == ("reciprocam", "whitebox", earlier)


def test_blackbox_presets_name_the_same_options_as_the_method():
    for name in method_names("blackbox"):
        method = METHODS[name]
        assert set(method.presets) == {"speed", "balance", "quality"}
        for values in method.presets.values():
            assert set(values) <= set(method.options), name


def test_cli_choices_come_from_the_registry():
    commands = {c.name: c for c in main.commands.values()}
    choices = {name: next(p.type.choices for p in commands[name].params if p.name == "method")
               for name in ("explain", "audit", "export-xai")}
    assert list(choices["explain"]) == list(choices["audit"]) == list(METHODS)
    assert list(choices["export-xai"]) == method_names("whitebox")


def test_the_documented_method_table_is_the_registry():
    rows = re.findall(r"^\| `(\w+)`[^|]*\| (white-box|black-box) \| ([^|]+) \|",
                      METHOD_TABLE.read_text(encoding="utf-8"), re.MULTILINE)
    table = [(name, mode.replace("-", ""), summary.strip()) for name, mode, summary in rows]
    assert table == [(m.name, m.mode, m.summary) for m in METHODS.values()]


@pytest.mark.parametrize("method, options, message", [
    ("reciprocam", {"num_masks": 3}, "reciprocam has no option 'num_masks'; its options: shortcut, readout"),
    ("activationmap", {"shortcut": True}, "activationmap has no option 'shortcut'; its options: none"),
    ("rise", {"iterations": 3}, "rise has no option 'iterations'; its options: num_masks, num_cells, probability"),
    ("aise", {"num_masks": 3}, "aise has no option 'num_masks'; its options: iterations, kernel_widths"),
])
def test_options_are_checked_when_the_explainer_is_built(classifier, method, options, message):
    with pytest.raises(ExplainError, match=re.escape(message)):
        Explainer(classifier, method=method, **options)


@pytest.mark.parametrize("method, options, message", [
    ("rise", {"num_masks": 0}, "rise: num_masks must be an integer >= 1, got 0"),
    ("rise", {"num_masks": "100"}, "rise: num_masks must be an integer >= 1, got '100'"),
    ("rise", {"probability": 1.5}, "rise: probability must be a number between 0.0 and 1.0, got 1.5"),
    ("aise", {"weighting": "x"}, "aise: weighting must be one of ['relative', 'raw'], got 'x'"),
    ("aise", {"kernel_widths": []}, "aise: kernel_widths must be a list of numbers, got []"),
    ("aise", {"kernel_widths": [0.1, -1]}, "aise: each kernel width must be a number above 0.0, got -1"),
])
def test_option_values_are_checked_when_the_explainer_is_built(classifier, method, options, message):
    with pytest.raises(ExplainError, match=re.escape(message)):
        Explainer(classifier, method=method, **options)


def test_an_option_of_none_keeps_the_presets_value(classifier):
    explainer = Explainer(classifier, method="rise", preset="speed", num_masks=None)
    assert explainer._runner.settings["num_masks"] == 1000


def test_a_registered_blackbox_method_runs_its_own_code(classifier, monkeypatch, chelsea_rgb):
    """A new method is one object in the registry: the explainer runs it, not another method's code."""
    calls = []

    class Centre(BlackboxMethod):
        name, summary, xai_name = "centre", "a bump in the middle, for this test", None
        options = {"width": 0.2}
        presets = {"speed": {}, "balance": {}, "quality": {}}

        def run(self, score, prepared, targets, options, *, seed, parallel, progress):
            calls.append((options["width"], parallel, prepared.spatial_size))
            probabilities = score.run(score.request(), prepared.masked(np.ones((1,) + prepared.spatial_size)))
            ys, xs = np.mgrid[0:1:224j, 0:1:224j]
            bump = np.exp(-((ys - 0.5) ** 2 + (xs - 0.5) ** 2) / options["width"])
            return np.stack([bump * probabilities[0, t] for t in targets]).astype(np.float32)

    monkeypatch.setitem(registry.METHODS, "centre", Centre())
    explainer = Explainer(classifier, method="centre", width=0.5)
    result = explainer.explain(chelsea_rgb, targets=[281])
    budget = max(8, 2 * explainer.parallel_requests)  # alone, an explanation gets the whole budget
    assert calls == [(0.5, budget, (224, 224))] and result.method == "centre" and result.mode == "blackbox"
    assert result.inferences == 2 and result.maps[0].raw.shape == (224, 224)
    with pytest.raises(ExplainError, match="centre has no option 'num_masks'; its options: width"):
        Explainer(classifier, method="centre", num_masks=4)
