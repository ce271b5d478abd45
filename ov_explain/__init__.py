"""ov_explain: an edge inference explainer on OpenVINO.

Load an image classifier (OpenVINO IR or ONNX) on CPU / GPU / NPU with device auto-selection,
predict, explain, and audit datasets. The library logs through ``logging`` and never prints.
"""

from importlib import import_module
from typing import Any

from ov_explain.core import resources
from ov_explain.core.config import ModelConfig
from ov_explain.core.devices import (
    DEFAULT_PRECISION,
    PRECISIONS,
    DeviceInfo,
    DeviceRequest,
    auto_choice,
    compile_with_fallback,
    discover,
)
from ov_explain.core.errors import (
    DeviceError,
    ImageReadError,
    LabelsError,
    ModelLoadError,
    OvExplainError,
    PreprocessError,
)
from ov_explain.core.files import ModelFiles
from ov_explain.core.images import decode_image, read_image
from ov_explain.core.model import Classifier, ClassScore, Prediction
from ov_explain.core.preprocess import Geometry, PreprocessSpec
from ov_explain.core.resources import default_model_path, sample_images

__version__ = "0.3.0.dev0"

__all__ = [
    "DEFAULT_PRECISION", "PRECISIONS", "Classifier", "ClassScore", "DeviceError", "DeviceInfo", "DeviceRequest",
    "Geometry", "ImageReadError",
    "LabelsError", "ModelConfig", "ModelFiles", "ModelLoadError", "OvExplainError", "Prediction", "PreprocessError",
    "PreprocessSpec", "auto_choice", "compile_with_fallback", "decode_image", "default_model_path", "discover",
    "read_image", "resources", "sample_images",
    # the layers above the core, imported when first used (``import ov_explain`` stays light)
    "AuditOptions", "DatasetConfig", "DriftOptions", "ExplainConfig", "Explainer", "RayOptions", "RunConfig",
    "audit", "check_gate", "drift", "parse_gate", "parse_name", "quantize",
    "sample_images_dir",
]

#: Public names of the upper layers: name -> the module that defines it.
_LAZY = {
    "AuditOptions": "ov_explain.runs.audit.run",
    "DatasetConfig": "ov_explain.runs.config",
    "DriftOptions": "ov_explain.runs.drift.run",
    "ExplainConfig": "ov_explain.explain.config",
    "Explainer": "ov_explain.explain.explainer",
    "RunConfig": "ov_explain.runs.config",
    "RayOptions": "ov_explain.runs.ray_engine",
    "audit": "ov_explain.runs.audit.run",
    "check_gate": "ov_explain.runs.drift.gate",
    "drift": "ov_explain.runs.drift.run",
    "parse_gate": "ov_explain.runs.drift.gate",
    "parse_name": "ov_explain.runs.naming",
    "quantize": "ov_explain.tools.quantize",
    "sample_images_dir": "ov_explain.core.resources",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ov_explain' has no attribute {name!r}")
