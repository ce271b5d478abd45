"""Building blocks the white-box methods' branches share: layouts, mosaic batches, maps from cell
scores, the score read-out (logits before a softmax in the graph, or probabilities) and class selection."""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np

from ov_explain.core._compat import opset
from ov_explain.core.ports import output_softmax as find_softmax
from ov_explain.explain.base import ExplainError, WhiteboxUnsupportedError

logger = logging.getLogger(__name__)

#: What a class-scoring white-box method reads: ``logit`` (the scores before a softmax in the graph,
#: what openvino-xai reads) or ``probability`` (after the softmax, applied here if the graph has none).
READOUTS = ("logit", "probability")
DEFAULT_READOUT = "logit"


def resolve_readout(method: str, requested: Any, has_softmax: bool, output_kind: str,
                    default: str = DEFAULT_READOUT) -> str:
    """The read-out to build: the one asked for, or (``None``) the method's ``default``, with ``probability``
    where the output is probabilities with no softmax to look behind. One line for a bad value, and an
    error for an explicit ``logit`` that the graph cannot give."""
    if requested is not None and requested not in READOUTS:
        raise ExplainError(f"{method}: readout must be one of {list(READOUTS)}, got {requested!r}")
    logit_possible = has_softmax or output_kind != "probabilities"
    if requested is None:
        return default if logit_possible else "probability"
    if requested == "logit" and not logit_possible:
        raise ExplainError(f"{method}: the logit read-out needs the scores before the softmax, and no Softmax "
                           "was found before the output; use readout='probability'")
    return requested


def read_scores(value: Any, readout: str, output_kind: str) -> Any:
    """The class scores to read from a classification value (N, K[, 1, 1]) for a resolved ``readout``:
    ``logit`` looks behind a softmax in the graph; ``probability`` adds one if the output is logits."""
    softmax = find_softmax(value)
    if readout == "logit":
        return softmax.input_value(0) if softmax is not None else value
    if softmax is not None or output_kind == "probabilities":
        return value
    flat = opset.reshape(value, np.array([0, -1], np.int64), special_zero=True)
    return opset.softmax(flat, 1)


def features_of(target: Any) -> Any:
    """A feature map as (N, C, H*W): channels by cells, so that (K, C) weights times it gives (N, K, H*W)
    class scores per cell with no transpose (every small op counts against one inference's time)."""
    c, h, w = target.channels, target.height, target.width
    return opset.reshape(as_nchw(target), np.array([0, c, h * w], np.int64), special_zero=True)


def weighted_cells(weights: Any, target: Any, per_image: bool) -> Any:
    """(N, K, H*W): channel weights applied to every cell of the feature map. ``weights`` is (K, C) for
    every image, or (N, k, C) per image (selected classes). Each orientation is the faster one for its
    shape on CPU: cells by channels against all classes' weights, a few classes' weights against the
    channels-by-cells map with no transpose."""
    if per_image:
        return opset.matmul(weights, features_of(target), False, False)
    cells = opset.transpose(features_of(target), np.array([0, 2, 1], np.int64))  # (N, HW, C)
    return opset.transpose(opset.matmul(cells, weights, False, True), np.array([0, 2, 1], np.int64))


def scores_to_maps(scores: Any, h: int, w: int) -> Any:
    """(N, K, H*W) class scores per cell -> (N, K, H, W)."""
    return opset.reshape(scores, np.array([0, 0, h, w], np.int64), special_zero=True)


def class_weights(head: Any, classes: Any | None) -> Any:
    """A linear head's weights as (K, C), or (N, k, C) for (N, k) class indices."""
    weights = head.weights if head.transpose_b else opset.transpose(head.weights, np.array([1, 0], np.int64))
    return weights if classes is None else opset.gather(weights, classes, np.int64(0))


def copied_class_weights(head: Any) -> Any | None:
    """A linear head's weights as (K, C) from a copy of their constant, or None when they are not a constant
    (through Converts: f16-compressed IRs), e.g. dequantized INT8. A product with the copy is compiled as a
    fully-connected layer of its own, at the speed of the head's; with the head's own constant OpenVINO
    2024.4's CPU plugin fuses the two and cannot compile the graph ("Can not clone with new dims")."""
    node, converts = head.weights.get_node(), []
    while node.get_type_name() == "Convert":
        converts.append(node.get_output_element_type(0))
        node = node.input_value(0).get_node()
    if node.get_type_name() != "Constant":
        return None
    copy = opset.constant(node.get_data().copy()).output(0)
    for element_type in reversed(converts):
        copy = opset.convert(copy, element_type).output(0)
    return copy if head.transpose_b else opset.transpose(copy, np.array([1, 0], np.int64))


def class_bias(head: Any, classes: Any | None) -> Any | None:
    """A linear head's bias as (K, 1), or (N, k, 1) for (N, k) class indices (to add to (N, K or k, cells))."""
    if head.bias is None:
        return None
    bias = opset.reshape(head.bias, np.array([-1], np.int64), special_zero=False)
    if classes is None:
        return opset.unsqueeze(bias, np.array([1], np.int64))
    return opset.unsqueeze(opset.gather(bias, classes, np.int64(0)), np.array([2], np.int64))


def as_nchw(target: Any) -> Any:
    """A feature map's output in NCHW, transposed if the graph keeps it NHWC; a patch-token stream (layout
    ``NLC``: (N, H*W, C)) as (N, C, H*W), which the reshapes that follow treat alike."""
    output = target.node.output(0)
    if target.layout == "NLC":
        return opset.transpose(output, np.array([0, 2, 1], np.int64))
    return opset.transpose(output, np.array([0, 3, 1, 2], np.int64)) if target.layout == "NHWC" else output


def cells_to_maps(scores: Any, h: int, w: int) -> Any:
    """(N, H*W, K) class scores per cell -> (N, K, H, W)."""
    maps = opset.transpose(scores, np.array([0, 2, 1], np.int64))
    return opset.reshape(maps, np.array([0, -1, h, w], np.int64), special_zero=True)


def mosaic_scores_to_maps(tail: Any, position: int, classification_output: Any, h: int, w: int,
                          readout: str = DEFAULT_READOUT, output_kind: str = "auto") -> Any:
    """A rewired :class:`~ov_explain.explain.tail.TailClone`'s class scores (read out as ``readout``) for its
    (N*H*W)-sized mosaic batch -> (N, K, H, W). Values the tail reads from before the cut are fed first."""
    tail.feed_from_before_the_cut(position, h * w)
    scores = read_scores(tail.scores(position), readout, output_kind)
    num_classes = classification_output.get_partial_shape()[1].get_length()
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
