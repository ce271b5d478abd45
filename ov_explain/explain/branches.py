"""Building blocks the white-box methods' branches share: layouts, mosaic batches, maps from cell scores."""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np

from .._compat import opset
from .base import WhiteboxUnsupportedError

logger = logging.getLogger(__name__)


def as_nchw(target: Any) -> Any:
    """A feature map's output in NCHW, transposed if the graph keeps it NHWC."""
    output = target.node.output(0)
    return opset.transpose(output, np.array([0, 3, 1, 2], np.int64)) if target.layout == "NHWC" else output


def cells_to_maps(scores: Any, h: int, w: int) -> Any:
    """(N, H*W, K) class scores per cell -> (N, K, H, W)."""
    maps = opset.transpose(scores, np.array([0, 2, 1], np.int64))
    return opset.reshape(maps, np.array([0, -1, h, w], np.int64), special_zero=True)


def mosaic_scores_to_maps(clone: Any, position: int, classification_output: Any, h: int, w: int) -> Any:
    """A clone's class scores for its (N*H*W)-sized mosaic batch -> (N, K, H, W) maps."""
    scores = clone.get_results()[position].input_value(0)
    num_classes = classification_output.get_partial_shape()[-1].get_length()
    scores = opset.reshape(scores, np.array([-1, h * w, num_classes], np.int64), special_zero=False)
    return cells_to_maps(scores, h, w)


def with_dynamic_batch(work: Any, position: int, target: Any, find: Callable[[Any, str], Any]) -> tuple[Any, Any]:
    """Mosaic methods run the network's tail on a bigger batch: make a static batch dynamic first.
    Returns the (possibly new) classification output and target layer (found again by name)."""
    if work.outputs[position].get_partial_shape()[0].is_dynamic:
        return work.outputs[position], target
    import openvino as ov

    shapes = {}
    for inp in work.inputs:
        dims = list(inp.get_partial_shape())
        dims[0] = ov.Dimension()
        shapes[inp] = ov.PartialShape(dims)
    try:
        work.reshape(shapes)
    except Exception as exc:
        raise WhiteboxUnsupportedError(f"the mosaic needs a dynamic batch through the head, and the model "
                                       f"cannot be reshaped to one ({exc})") from None
    return work.outputs[position], find(work, target.name)
