"""Recipro-CAM (Byun & Lee, 2022): class scores of each feature-map cell kept alone (CNNs).

Every spatial cell of the target feature map is kept alone (one-hot spatial mask) and the rest of
the network scores it. When the head is global average pooling + linear (+ bias, + softmax) the
same maps come from one matrix product over the feature map (the *algebraic shortcut*), so nothing
runs H*W times; otherwise a clone of the head runs on an (N*H*W)-sized mosaic batch.

The cell scores are read as ``logit`` (before a softmax in the graph) or ``probability``; with the
logit read-out the shortcut computes only the requested classes' maps (the probability of one class
needs every class's score, so that read-out computes them all and selects after).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np

from ov_explain.core._compat import opset
from ov_explain.explain.base import WhiteboxUnsupportedError
from ov_explain.explain.branches import (
    class_bias,
    class_weights,
    find_softmax,
    mosaic_scores_to_maps,
    resolve_readout,
    scores_to_maps,
    weighted_cells,
    with_dynamic_batch,
)
from ov_explain.explain.graph import LinearHead, TargetLayer, find_target_layer, match_linear_head
from ov_explain.explain.method import FeatureMapMethod, Inserted
from ov_explain.explain.tail import TailClone

logger = logging.getLogger(__name__)


def _shortcut(target: TargetLayer, head: LinearHead, softmax: bool, classes: Any | None) -> Any:
    """Cell scores from one matrix product: a cell alone through global average pooling is that
    cell's features / (H * W), so its logits are ``cells @ W.T * scale / (H * W) + b``."""
    h, w = target.height, target.width
    scores = weighted_cells(class_weights(head, classes), target, classes is not None)  # (N, K or k, HW)
    scores = opset.multiply(scores, np.float32(head.scale / (h * w)))
    bias = class_bias(head, classes)
    if bias is not None:
        scores = opset.add(scores, bias)
    if softmax:
        scores = opset.softmax(scores, 1)
    return scores_to_maps(scores, h, w)


def _mosaic(work: Any, position: int, target: TargetLayer, classification_output: Any, readout: str,
            output_kind: str) -> Any:
    """Run a clone of the head on N*H*W copies of the feature map, each with one cell kept."""
    c, h, w = target.channels, target.height, target.width
    if target.layout == "NCHW":
        mask = np.eye(h * w, dtype=np.float32).reshape(1, h * w, 1, h, w)
        per_image_shape = [c, h, w]
    else:
        mask = np.eye(h * w, dtype=np.float32).reshape(1, h * w, h, w, 1)
        per_image_shape = [h, w, c]
    expanded = opset.unsqueeze(target.node.output(0), np.array([1], np.int64))  # (N, 1, ...)
    mosaic = opset.multiply(expanded, mask)  # (N, HW, ...)
    mosaic = opset.reshape(mosaic, np.array([-1] + per_image_shape, np.int64), special_zero=False)
    tail = TailClone(work, [target.name])
    for consumer in list(tail.node(target.name).output(0).get_target_inputs()):
        consumer.replace_source_output(mosaic.output(0))
    return mosaic_scores_to_maps(tail, position, classification_output, h, w, readout, output_kind)


class ReciproCAM(FeatureMapMethod):
    name = "reciprocam"
    summary = "each cell of the last feature map kept alone, scored by the head: a map for every class"
    xai_name = "RECIPROCAM"
    default = True
    #: ``shortcut``: None uses the algebraic shortcut when the head allows it; True requires it;
    #: False always runs the mosaic. ``readout``: ``logit`` (default) or ``probability``.
    options = {"shortcut": None, "readout": None}

    def insert(self, work: Any, position: int, target: TargetLayer, options: Mapping[str, Any], *,
               classes: Any | None = None, output_kind: str = "auto") -> Inserted:
        output = work.outputs[position]
        shortcut = options.get("shortcut")
        head = match_linear_head(target, output) if shortcut is not False else None
        if head is not None:
            readout = resolve_readout(self.name, options.get("readout"), head.softmax, output_kind)
            # A head with no softmax whose output the user calls probabilities: its linear output is read.
            softmax = readout == "probability" and (head.softmax or output_kind != "probabilities")
            chosen = None if softmax else classes  # one class's probability needs every class's score
            return Inserted(_shortcut(target, head, softmax, chosen), target, True, readout,
                            selected=chosen is not None)
        if shortcut is True:
            raise WhiteboxUnsupportedError(f"the head after {target.name} is not global pooling + linear; "
                                           "the algebraic shortcut does not apply")
        readout = resolve_readout(self.name, options.get("readout"), find_softmax(output) is not None, output_kind)
        output, target = with_dynamic_batch(work, position, target, find_target_layer)
        return Inserted(_mosaic(work, position, target, output, readout, output_kind), target, readout=readout)


METHOD = ReciproCAM()
