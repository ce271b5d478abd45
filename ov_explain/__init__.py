"""ov_explain: an edge inference explainer on OpenVINO.

Load an image classifier (OpenVINO IR or ONNX) on CPU / GPU / NPU with device auto-selection,
predict, explain, and audit datasets. The library logs through ``logging`` and never prints.
"""

from .devices import DEFAULT_PRECISION, PRECISIONS, DeviceInfo, DeviceRequest, auto_choice, compile_with_fallback, \
    discover
from .errors import (DeviceError, ImageReadError, LabelsError, ModelLoadError, OvExplainError,
                     PreprocessError)
from .images import decode_image, read_image
from .model import Classifier, ClassScore, ModelFiles, Prediction
from .preprocess import Geometry, PreprocessSpec
from .resources import default_model_path, sample_images

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_PRECISION", "PRECISIONS", "Classifier", "ClassScore", "DeviceError", "DeviceInfo", "DeviceRequest",
    "Geometry", "ImageReadError",
    "LabelsError", "ModelFiles", "ModelLoadError", "OvExplainError", "Prediction", "PreprocessError",
    "PreprocessSpec", "auto_choice", "compile_with_fallback", "decode_image", "default_model_path", "discover",
    "read_image", "sample_images",
]
