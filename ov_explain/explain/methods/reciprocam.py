"""Recipro-CAM (Byun & Lee, 2022): class scores of each feature-map cell kept alone (CNNs).

Every spatial cell of the target feature map is kept alone (one-hot spatial mask) and the rest of
the network scores it. When the head is global average pooling + linear (+ bias, + softmax) the
same maps come from one matrix product over the feature map (the *algebraic shortcut*), so nothing
runs H*W times; otherwise a clone of the head runs on an (N*H*W)-sized mosaic batch.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np

from ..._compat import opset
from ..base import WhiteboxUnsupportedError
from ..branches import as_nchw, cells_to_maps, mosaic_scores_to_maps, with_dynamic_batch
from ..graph import LinearHead, TargetLayer, find_target_layer, match_linear_head
from ..method import Inserted, WhiteboxMethod

logger = logging.getLogger(__name__)


def _shortcut(target: TargetLayer, head: LinearHead) -> Any:
    c, h, w = target.channels, target.height, target.width
    features = opset.reshape(as_nchw(target), np.array([0, c, h * w], np.int64), special_zero=True)
    cells = opset.transpose(features, np.array([0, 2, 1], np.int64))  # (N, HW, C)
    # One cell alone through global average pooling is that cell's features / (H * W).
    scores = opset.matmul(cells, head.weights, False, head.transpose_b)
    scores = opset.multiply(scores, np.float32(1.0 / (h * w)))
    if head.bias is not None:
        scores = opset.add(scores, head.bias)
    if head.softmax:
        scores = opset.softmax(scores, 2)
    return cells_to_maps(scores, h, w)


def _mosaic(work: Any, position: int, target: TargetLayer, classification_output: Any) -> Any:
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
    clone = work.clone()
    clone_target = next(n for n in clone.get_ordered_ops() if n.get_friendly_name() == target.name)
    for consumer in list(clone_target.output(0).get_target_inputs()):
        consumer.replace_source_output(mosaic.output(0))
    return mosaic_scores_to_maps(clone, position, classification_output, h, w)


class ReciproCAM(WhiteboxMethod):
    name = "reciprocam"
    summary = "each cell of the last feature map kept alone, scored by the head: a map for every class"
    xai_name = "RECIPROCAM"
    default = True
    #: ``shortcut``: None uses the algebraic shortcut when the head allows it; True requires it;
    #: False always runs the mosaic.
    options = {"shortcut": None}

    def find_target(self, model: Any, name: str | None) -> TargetLayer:
        return find_target_layer(model, name)

    def insert(self, work: Any, position: int, target: TargetLayer, options: Mapping[str, Any]) -> Inserted:
        output = work.outputs[position]
        shortcut = options.get("shortcut")
        head = match_linear_head(target, output) if shortcut is not False else None
        if head is not None:
            return Inserted(_shortcut(target, head), target, shortcut=True)
        if shortcut is True:
            raise WhiteboxUnsupportedError(f"the head after {target.name} is not global pooling + linear; "
                                           "the algebraic shortcut does not apply")
        output, target = with_dynamic_batch(work, position, target, find_target_layer)
        return Inserted(_mosaic(work, position, target, output), target)


METHOD = ReciproCAM()
