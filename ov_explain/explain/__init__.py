"""Explanations: white-box (ReciproCAM, ActivationMap) and black-box (RISE, AISE) saliency maps."""

from .base import ExplainError, Explanation, SaliencyMap, WhiteboxUnsupportedError, select_targets
from .explainer import DEFAULT_METHOD, METHODS, PRESETS, Explainer
from .whitebox import SALIENCY_OUTPUT, build_xai_model, feature_map_candidates, find_target_layer

__all__ = ["DEFAULT_METHOD", "METHODS", "PRESETS", "SALIENCY_OUTPUT", "ExplainError", "Explainer", "Explanation",
           "SaliencyMap", "WhiteboxUnsupportedError", "build_xai_model", "feature_map_candidates",
           "find_target_layer", "select_targets"]
