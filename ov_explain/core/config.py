"""Options declared once: validated dataclasses that the CLI builds, the Python API takes, Ray actors
receive and settings files are written from.

Every run option is a field of exactly one config, so :func:`apply_shortcuts` can take a keyword
(``device="CPU"``, ``limit=10``) and put it where it belongs.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ov_explain.core.devices import DEFAULT_PRECISION, DeviceRequest, check_precision
from ov_explain.core.errors import OvExplainError
from ov_explain.core.ports import OUTPUT_KINDS

logger = logging.getLogger(__name__)



#: What a model does: class scores for the image, or boxes with classes.
TASKS = ("auto", "classification", "detection")


class ConfigError(OvExplainError, TypeError):
    """An option that no config has, or a value a config refuses."""


@dataclass(frozen=True)
class ModelConfig:
    """Which model and how it runs: everything a :class:`~ov_explain.core.model.Classifier` is built from.

    ``path``: an IR .xml, an .onnx or a folder with one (None: the bundled EfficientNet-Lite0).
    ``precision`` is the *requested* precision (``device``: what the device runs by default); the one
    that executed is the classifier's ``precision``. ``preprocess``: a spec (object, dict or .json), a
    function or ``module:function`` (None: the model's own). ``cache_dir``: the compiled-model cache
    (``default``: the user cache folder; None: no cache).
    """

    path: str | os.PathLike | None = None
    device: str = "AUTO"
    precision: str = DEFAULT_PRECISION
    preprocess: Any = None
    labels: Sequence[str] | str | os.PathLike | None = None
    output: str = "auto"
    cache_dir: str | os.PathLike | None = "default"
    task: str = "auto"
    output_format: str = "auto"
    confidence: float = 0.25
    iou: float = 0.45

    def __post_init__(self) -> None:
        from ov_explain.core.detection import OUTPUT_FORMATS

        DeviceRequest.parse(self.device)
        object.__setattr__(self, "precision", check_precision(self.precision))
        if self.output not in OUTPUT_KINDS:
            raise ConfigError(f"output must be one of {list(OUTPUT_KINDS)}, got {self.output!r}")
        if self.task not in TASKS:
            raise ConfigError(f"task must be one of {list(TASKS)}, got {self.task!r}")
        if self.output_format != "auto" and self.output_format not in OUTPUT_FORMATS:
            raise ConfigError(f"output format must be auto or one of {list(OUTPUT_FORMATS)}, got "
                              f"{self.output_format!r}")
        if not 0.0 <= self.confidence <= 1.0 or not 0.0 < self.iou <= 1.0:
            raise ConfigError(f"confidence must be in 0..1 and iou in (0, 1], got {self.confidence}, {self.iou}")

    def load(self, *, hint: str = "LATENCY", core: Any = None) -> Any:
        """The classifier or detector (``hint``: LATENCY for one image at a time, THROUGHPUT for datasets)."""
        import openvino as ov

        core = core if core is not None else ov.Core()
        task, source = self._task(core)  # source: the path, or the model already read to find the task
        common = dict(device=self.device, preprocess=self.preprocess, labels=self.labels, hint=hint,
                      cache_dir=self.cache_dir, core=core, precision=self.precision)
        if task == "detection":
            from ov_explain.core.detector import Detector

            return Detector(source, output_format=self.output_format, confidence=self.confidence, iou=self.iou,
                            **common)
        from ov_explain.core.model import Classifier

        return Classifier(source, output=self.output, **common)

    def load_classifier(self, *, hint: str = "LATENCY", core: Any = None, purpose: str = "this") -> Any:
        """The classifier; a detector is one line saying ``purpose`` needs a classifier."""
        model = self.load(hint=hint, core=core)
        if getattr(model, "output_format", None) is not None:
            model.close()
            raise ConfigError(f"{model.files.model}: a detector ({model.output_format} outputs); {purpose} needs "
                              "an image classifier")
        return model

    def resolved_task(self) -> str:
        """The task asked for, or the model's own: a detector when its exporter says so or its outputs are
        a detection format (an output format named means detection too)."""
        return self._task(None)[0]

    def _task(self, core: Any) -> tuple[str, Any]:
        """(task, what to build the model from): the path, or, when the file had to be read to find the
        task, the model as read (read once)."""
        if self.task != "auto":
            return self.task, self.path
        if self.output_format != "auto":
            return "detection", self.path
        from ov_explain.core.tasks import find_task

        return find_task(self.path, core)

    def resolved(self, classifier: Any) -> "ModelConfig":
        """This config with the model file the classifier found (absolute): what another process loads."""
        return dataclasses.replace(self, path=classifier.files.model.resolve())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: paths as text, a preprocessing function by its qualified name."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelConfig":
        return from_dict(cls, data)


def _plain(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return str(value)
    if callable(value):
        return f"custom:{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', repr(value))}"
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return value.to_dict() if hasattr(value, "to_dict") else dataclasses.asdict(value)
    return value


def from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """``cls(**data)``, refusing keys that are not its fields with one line naming them."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{cls.__name__}: no field {', '.join(map(repr, unknown))}; its fields: "
                          f"{', '.join(sorted(names))}")
    return cls(**data)


def to_dict(config: Any) -> dict[str, Any]:
    """Any config as JSON-ready values (nested configs as dicts)."""
    return {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def apply_shortcuts(configs: dict[str, Any], shortcuts: Mapping[str, Any], *,
                    prefixes: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """Each keyword put into the one config (or the config inside a config) that has a field of that name.

    ``configs``: role -> config. ``prefixes``: a keyword ``<prefix>_<field>`` goes to those roles only
    (``reference_device`` to the reference model); an unprefixed model field goes to all of them. A
    keyword no config has is a :class:`ConfigError` naming the ones there are.
    """
    result = dict(configs)
    for keyword, value in shortcuts.items():
        roles, field = list(result), keyword
        for prefix, targets in (prefixes or {}).items():
            if keyword.startswith(prefix + "_"):
                roles, field = list(targets), keyword[len(prefix) + 1:]
                break
        placed = False
        for role in roles:
            updated = _set_field(result[role], field, value)
            if updated is not None:
                result[role], placed = updated, True
        if not placed:
            known = sorted({name for config in configs.values() for name in _field_names(config)})
            raise ConfigError(f"unknown option {keyword!r}; options: {', '.join(known)}")
    return result


def _set_field(config: Any, name: str, value: Any) -> Any | None:
    """``config`` with ``name`` set (searched one level down too), or None if it has no such field."""
    fields = {f.name for f in dataclasses.fields(config)}
    if name in fields:
        return dataclasses.replace(config, **{name: value})
    for field in fields:
        inner = getattr(config, field)
        if dataclasses.is_dataclass(inner) and not isinstance(inner, type) and name in _field_names(inner, 0):
            return dataclasses.replace(config, **{field: dataclasses.replace(inner, **{name: value})})
    return None


def _field_names(config: Any, depth: int = 1) -> list[str]:
    names = []
    for field in dataclasses.fields(config):
        inner = getattr(config, field.name)
        if depth and dataclasses.is_dataclass(inner) and not isinstance(inner, type):
            names += _field_names(inner, 0)
        else:
            names.append(field.name)
    return names


def model_config(model: "ModelConfig | str | os.PathLike | None") -> ModelConfig:
    """A model given as a config, a path or None (the bundled one)."""
    if isinstance(model, ModelConfig):
        return model
    if model is None or isinstance(model, (str, os.PathLike)):
        return ModelConfig(Path(model) if model is not None else None)
    raise ConfigError(f"model: expected a ModelConfig, a path or None, got {type(model).__name__}")
