"""CAM on a vision transformer's patch tokens, where the head averages them and applies a linear layer
(average-pooled ViTs without ``fc_norm``, Twins): exactly Grad-CAM at those tokens, in one inference.

Why they are equal. Let ``x_t`` (t = 1..T, T = H·W patches) be the tokens the head reads and the head
``y = W · (1/T) Σ_t x_t + b``. Then for every token ``t`` and channel ``k``::

    ∂y_c / ∂x_tk = W_ck / T

the same for every token, so Grad-CAM's channel weights (the gradient's mean over tokens) are
``α_k = W_ck / T`` and its map at token ``t`` is ``ReLU(Σ_k α_k x_tk) = ReLU(W_c · x_t) / T``: the class
weights applied to each token, laid on the patch grid. For the probability ``p = softmax(y)`` the
gradient is again the same for every token, ``p_c (W_c − pᵀW) / T``. This is :mod:`cam`'s algebra with
tokens for cells, and the same code builds it (a degenerate probability map falls back to the logit
one as there). ``tests/explain/test_vitcam.py`` checks it against gradients taken by torch's autograd
on the same weights.

A LayerNorm *after* the average (timm's ``fc_norm``, the default for ``global_pool="avg"``) makes the
gradient differ from token to token: such heads, and CLS-token heads, are refused in one line (use
``vitreciprocam``, the transformer default).
"""

from __future__ import annotations

import logging
from typing import Any

from ov_explain.explain.graph import TargetLayer, find_pooled_tokens
from ov_explain.explain.methods.cam import CAM

logger = logging.getLogger(__name__)


class ViTCAM(CAM):
    name = "vitcam"
    summary = ("the class's head weights applied to each patch token, where the head averages the tokens and "
               "applies a linear layer: Grad-CAM without a backward pass")
    for_transformers = True
    default = False  # ViT-ReciproCAM stays the transformer default (its faithfulness is what was measured)

    def find_target(self, model: Any, name: str | None) -> TargetLayer:
        return find_pooled_tokens(model, name)

    def graph_for_head(self, model: Any, position: int, target_layer: str | None) -> Any:
        return model  # a transformer's graph is not folded (see build_xai_model)


METHOD = ViTCAM()
