"""Explanations: white-box (ReciproCAM, ViT-ReciproCAM, ActivationMap) and black-box (RISE, AISE) maps."""

from ov_explain.explain.base import ExplainError, Explanation, SaliencyMap, WhiteboxUnsupportedError, select_targets
from ov_explain.explain.config import BACKENDS, READOUTS, ExplainConfig
from ov_explain.explain.explainer import METHODS, PRESETS, Explainer
from ov_explain.explain.graph import (
    feature_map_candidates,
    find_target_layer,
    find_token_layer,
    is_transformer,
    token_layer_candidates,
)
from ov_explain.explain.whitebox import SALIENCY_OUTPUT, build_xai_model


def create_explainer(classifier, *, backend: str = "native", **options):
    """An explainer on the chosen backend: ``native`` (this package) or ``openvino-xai`` (the library,
    in an environment with the ``xai`` extra). Both have the same interface and return the same
    :class:`Explanation` results, so either can serve ``explain`` and ``audit``."""
    if backend == "native":
        return Explainer(classifier, **options)
    if backend == "openvino-xai":
        from ov_explain.explain.xai_backend import XaiBackendExplainer

        return XaiBackendExplainer(classifier, **options)
    raise ExplainError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")

__all__ = ["BACKENDS", "READOUTS", "ExplainConfig", "create_explainer", "METHODS", "PRESETS", "SALIENCY_OUTPUT",
           "ExplainError", "Explainer", "Explanation", "SaliencyMap", "WhiteboxUnsupportedError", "build_xai_model",
           "feature_map_candidates", "find_target_layer", "find_token_layer", "is_transformer",
           "token_layer_candidates", "select_targets"]
