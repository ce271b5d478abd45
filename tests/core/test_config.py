"""Configs: validated when made, JSON round trips, keyword shortcuts put where they belong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ov_explain.core.config import ConfigError, ModelConfig, apply_shortcuts, model_config
from ov_explain.core.errors import DeviceError
from ov_explain.explain.config import ExplainConfig
from ov_explain.runs.audit.run import AuditOptions
from ov_explain.runs.config import DatasetConfig, RunConfig
from ov_explain.runs.ray_engine import RayOptions


def test_model_config_checks_its_values_and_round_trips_through_json(tmp_path):
    config = ModelConfig(tmp_path / "m.xml", device="AUTO:GPU,CPU", precision="BF16", labels=["a", "b"])
    assert config.precision == "bf16"  # normalised as the device layer spells it
    data = json.loads(json.dumps(config.to_dict()))
    assert data["path"] == str(tmp_path / "m.xml") and data["labels"] == ["a", "b"]
    assert ModelConfig.from_dict({**data, "path": Path(data["path"])}) == config
    with pytest.raises(DeviceError, match="precision 'f8'"):
        ModelConfig(precision="f8")
    with pytest.raises(ConfigError, match="output must be one of"):
        ModelConfig(output="scores")
    with pytest.raises(ConfigError, match="ModelConfig: no field 'colour'"):
        ModelConfig.from_dict({"colour": "red"})
    assert ModelConfig(preprocess=len).to_dict()["preprocess"] == "custom:builtins.len"
    assert model_config("m.xml") == ModelConfig(Path("m.xml")) and model_config(None) == ModelConfig()
    with pytest.raises(ConfigError, match="model: expected a ModelConfig"):
        model_config(3)


def test_explain_dataset_and_run_configs_refuse_bad_values():
    with pytest.raises(Exception, match="unknown method 'gradcam'"):
        ExplainConfig(method="gradcam")
    with pytest.raises(Exception, match="method rise is blackbox, but mode 'whitebox'"):
        ExplainConfig(mode="whitebox", method="rise")
    with pytest.raises(Exception, match="readout must be one of"):
        ExplainConfig(readout="softmax")
    assert ExplainConfig(readout="logit", options={"shortcut": False}).method_options == \
        {"shortcut": False, "readout": "logit"}
    assert DatasetConfig(classes="tabby, espresso").classes == ("tabby", "espresso")
    with pytest.raises(ConfigError, match="limit: expected an integer >= 1, got 0"):
        DatasetConfig(limit=0)
    with pytest.raises(ConfigError, match="engine: expected one of local, ray"):
        RunConfig(engine="spark")
    run = RunConfig(engine="ray", ray=RayOptions(actors=3))
    assert RunConfig.from_dict(json.loads(json.dumps(run.to_dict()))) == run


def test_shortcuts_go_to_the_one_config_with_that_field():
    configs = {"model": ModelConfig(), "explain": ExplainConfig(), "data": DatasetConfig(), "run": RunConfig(),
               "options": AuditOptions()}
    done = apply_shortcuts(configs, {"device": "CPU", "method": "reciprocam", "limit": 5, "actors": 2,
                                     "high_confidence": 0.7, "grids": False})
    assert done["model"].device == "CPU" and done["explain"].method == "reciprocam"
    assert done["data"].limit == 5 and done["run"].ray.actors == 2  # one level down: the run's Ray options
    assert done["options"].thresholds.high_confidence == 0.7 and done["options"].grids is False
    assert configs["model"].device == "AUTO"  # the given configs are not changed
    with pytest.raises(ConfigError, match="unknown option 'colour'; options: .*device"):
        apply_shortcuts(configs, {"colour": "red"})
    with pytest.raises(ConfigError, match="limit: expected an integer"):  # values are checked as they land
        apply_shortcuts(configs, {"limit": -1})
    pair = apply_shortcuts({"reference": ModelConfig(), "candidate": ModelConfig()},
                           {"candidate_precision": "device", "cache_dir": None},
                           prefixes={"reference": ["reference"], "candidate": ["candidate"]})
    assert (pair["reference"].precision, pair["candidate"].precision) == ("f32", "device")
    assert pair["reference"].cache_dir is None and pair["candidate"].cache_dir is None
