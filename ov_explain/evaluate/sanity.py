"""The model-randomisation sanity check (Adebayo et al., NeurIPS 2018): a copy of a classifier whose
classification head has random weights. A map that still looks the same on that copy does not
depend on what the head learned.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ov_explain.core.errors import OvExplainError

logger = logging.getLogger(__name__)


def _constant_source(node: Any) -> Any | None:
    """The Constant behind ``node``, looking through Convert (FP16-compressed weights), or None."""
    while node.get_type_name() == "Convert":
        node = node.input_value(0).get_node()
    return node if node.get_type_name() == "Constant" else None


def head_matmul(model: Any) -> tuple[Any, np.ndarray]:
    """The classification head: the last MatMul (in graph order) with constant weights, and those
    weights as float32 (as stored: transposed if the MatMul transposes them)."""
    for node in reversed(model.get_ordered_ops()):
        if node.get_type_name() != "MatMul":
            continue
        constant = _constant_source(node.input_value(1).get_node())
        if constant is not None:
            return node, np.array(constant.get_data(), dtype=np.float32)
    raise OvExplainError(f"model {model.get_friendly_name()!r}: no MatMul with constant weights "
                         "(no linear head)")


def randomize_head(model: Any, *, seed: int = 0) -> Any:
    """A copy of ``model`` whose head MatMul weights are drawn from N(0, std of the trained weights),
    float32, from ``seed``; the bias and every other layer are kept. ``model`` is not changed."""
    from ov_explain.core._compat import opset

    copy = model.clone()
    matmul, weights = head_matmul(copy)
    std = float(weights.std())
    random = np.random.default_rng(seed).normal(0.0, std, weights.shape).astype(np.float32)
    matmul.input(1).replace_source_output(opset.constant(random).output(0))
    copy.validate_nodes_and_infer_types()
    logger.info("randomised head %s: weights %s, std %.4g, seed %d", matmul.get_friendly_name(),
                weights.shape, std, seed)
    return copy


def randomize_detection_head(model: Any, num_classes: int, *, seed: int = 0) -> Any:
    """A copy of a detector whose class branches' last convolutions have weights drawn from N(0, std of the
    trained ones), float32, from ``seed`` (one stream for all scales); boxes, biases and the rest are kept."""
    from ov_explain.core._compat import opset
    from ov_explain.explain.detection_graph import class_branches

    copy = model.clone()
    rng = np.random.default_rng(seed)
    for conv in class_branches(copy, num_classes):
        weights = np.array(_constant_source(conv.input_value(1).get_node()).get_data(), dtype=np.float32)
        random = rng.normal(0.0, float(weights.std()), weights.shape).astype(np.float32)
        conv.input(1).replace_source_output(opset.constant(random).output(0))
        logger.info("randomised class branch %s: weights %s", conv.get_friendly_name(), weights.shape)
    copy.validate_nodes_and_infer_types()
    return copy
