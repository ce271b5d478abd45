"""CAM (Zhou et al., 2016), which for a global-average-pooling + linear head *is* Grad-CAM
(Selvaraju et al., 2017), computed in the same single inference as the prediction.

Why they are equal. Let ``A`` be the (C, H, W) feature map and the head ``y = W · GAP(A) + b`` with
``GAP(A)_k = (1 / HW) · Σ_ij A_kij``. Then for every cell (i, j)::

    ∂y_c / ∂A_kij = W_ck / HW

Grad-CAM weighs channel ``k`` by the spatial mean of that gradient, ``α_k = W_ck / HW``, and its map is
``ReLU(Σ_k α_k A_k) = ReLU(Σ_k W_ck A_k) / HW``: the class's head weights applied to the feature map
(CAM), no backward pass needed. With the ``probability`` read-out (``p = softmax(y)``) the gradient
is again the same for every cell::

    ∂p_c / ∂A_kij = p_c · (W_ck − Σ_j p_j W_jk) / HW

so ``α = p_c · (W_c − pᵀW) / HW``: Grad-CAM of the probability, also in one inference.
``tests/explain/test_cam.py`` checks both against gradients taken by finite differences.

A map must never vanish: the probability map of a class whose softmax saturates (``p_c = 1.0`` in f32,
common on confident real models) is exactly zero, and a very unlikely class's map is flat. Such a map
(the same value in every cell before the ReLU) is replaced in the graph by that class's logit map, and the map records
``readout="logit"`` (the graph's ``saliency_logit_fallback`` output says which).

Other heads (an MLP, attention pooling) have gradients that differ from cell to cell: refused with
one line that points to ReciproCAM, which needs no particular head.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np

from ov_explain.core._compat import opset
from ov_explain.explain.base import ExplainError, WhiteboxUnsupportedError
from ov_explain.explain.branches import (
    class_weights,
    copied_class_weights,
    resolve_readout,
    scores_to_maps,
    weighted_cells,
)
from ov_explain.explain.graph import TargetLayer, match_linear_head, with_visible_head
from ov_explain.explain.method import FeatureMapMethod, Inserted

logger = logging.getLogger(__name__)


class CAM(FeatureMapMethod):
    name = "cam"
    summary = ("the class's head weights applied to the last feature map: Grad-CAM without a backward pass "
               "(global-average-pooling + linear heads)")
    #: The CNN default where the head allows it: with the probability read-out, the most faithful
    #: one-inference map in scripts/benchmark_faithfulness.py on both models (docs/explaining.md).
    default = True
    default_readout = "probability"
    #: ``readout``: ``probability`` (default; Grad-CAM of the softmax) or ``logit`` (Grad-CAM of the score).
    options = {"readout": None}

    def graph_for_head(self, model: Any, position: int, target_layer: str | None) -> Any:
        """The graph in which the head is matched: constant-folded where only folding shows it (as built)."""
        return with_visible_head(model, position, target_layer)

    def applies(self, model: Any, position: int = 0, target_layer: str | None = None) -> bool:
        """A pooling + linear head after the target."""
        try:
            visible = self.graph_for_head(model, position, target_layer)
            return match_linear_head(self.find_target(visible, target_layer), visible.outputs[position]) is not None
        except ExplainError:  # no target at all
            return False

    def insert(self, work: Any, position: int, target: TargetLayer, options: Mapping[str, Any], *,
               classes: Any | None = None, output_kind: str = "auto") -> Inserted:
        head = match_linear_head(target, work.outputs[position])
        if head is None:
            raise WhiteboxUnsupportedError(f"{self.name} needs global average pooling + a linear layer right after "
                                           f"{target.name}; this head is different: use reciprocam")
        readout = resolve_readout(self.name, options.get("readout"), head.softmax, output_kind, self.default_readout)
        h, w = target.height, target.width
        scale = np.float32(head.scale / (h * w))
        weights = class_weights(head, classes)  # (K, C) or (N, k, C)
        per_image = classes is not None
        # The scale goes on the weights (a few numbers per class): after the product OpenVINO moves it onto the
        # feature map, a multiply of every cell (measured 20-26 µs of an 8 ms inference, each of two).
        logit_maps = opset.relu(weighted_cells(opset.multiply(weights, scale), target, per_image))  # (N, K or k, HW)
        if readout == "probability" and (head.softmax or output_kind != "probabilities"):
            logits = head.result_node.input_value(0) if head.softmax else head.result_node.output(0)
            logits = opset.reshape(logits, np.array([0, -1], np.int64), special_zero=True)
            probabilities = opset.softmax(logits, 1)  # (N, K)
            copied = copied_class_weights(head)
            if copied is not None:  # Σ_j p_j W_j as a fully-connected layer of its own: read at the head's speed
                expected = opset.matmul(probabilities, copied, False, False)  # (N, C)
            else:  # as (Wᵀ pᵀ)ᵀ, which OpenVINO does not fuse with the head's own layer (see copied_class_weights)
                expected = opset.transpose(opset.matmul(class_weights(head, None), probabilities, True, True),
                                           np.array([1, 0], np.int64))
            expected = opset.unsqueeze(expected, np.array([1], np.int64))  # (N, 1, C) (scale applied below)
            chosen = probabilities if classes is None else opset.gather(probabilities, classes, np.int64(1), 1)
            weights = opset.multiply(opset.multiply(opset.unsqueeze(chosen, np.array([2], np.int64)), scale),
                                     opset.subtract(weights, expected))  # (N, K or k, C)
            before_relu = weighted_cells(weights, target, True)
            maps, degenerate = _logit_where_degenerate(before_relu, logit_maps)
            return Inserted(scores_to_maps(maps, h, w), target, shortcut=True, readout=readout,
                            selected=classes is not None, logit_fallback=degenerate)
        return Inserted(scores_to_maps(logit_maps, h, w), target, shortcut=True, readout=readout,
                        selected=classes is not None)


def _logit_where_degenerate(before_relu: Any, logit_maps: Any) -> tuple[Any, Any]:
    """ReLU of the probability maps, except each one that is the same in every cell before the ReLU (a
    saturated softmax gives p_c (W_c − pᵀW) = 0 exactly at p_c = 1; an underflowed p_c gives 0 too),
    which is replaced by that class's logit map: a saturated softmax does not touch the logits. (A map
    whose cells all differ but are all negative is a real Grad-CAM of zero and is kept.)
    Returns the maps and the (N, K) flags of the replaced ones."""
    axis = np.array([2], np.int64)
    flat = opset.equal(opset.reduce_max(before_relu, axis, True), opset.reduce_min(before_relu, axis, True))
    chosen = opset.select(flat, logit_maps, opset.relu(before_relu))
    return chosen, opset.squeeze(flat, axis).output(0)


METHOD = CAM()
