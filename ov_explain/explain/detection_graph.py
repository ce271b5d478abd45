"""Graph matching and insertion for detectors: the class branches of the head, the backbone's outputs where
the neck begins, and the mosaic (ReciproCAM for detectors) that scores every anchor with one backbone cell kept.

A YOLO-family graph is backbone -> neck (FPN / PAN: upsampled, concatenated) -> head (per scale: a box branch
and a class branch). The backbone's outputs at the head's scales are the tensors made before the neck's first
upsampling (``Interpolate``) that the neck reads after it: that is where the whole neck and head still lie
downstream, so a cell's contribution reaches every anchor through the neck's context, not only the head's
5 x 5 receptive field.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ov_explain.core._compat import opset
from ov_explain.core.detection import MOSAIC_OUTPUT
from ov_explain.explain.base import WhiteboxUnsupportedError
from ov_explain.explain.tail import TailClone

logger = logging.getLogger(__name__)



def _constant(node: Any, depth: int = 6) -> Any | None:
    """``node`` when it computes from constants alone (weights: a Constant, or an INT8 IR's Constant -> Convert
    -> Subtract / Multiply by its scale -> FakeQuantize chain), else None."""
    if node.get_type_name() == "Constant":
        return node
    if depth == 0 or node.get_type_name() == "Parameter" or node.get_input_size() == 0:
        return None
    return node if all(_constant(v.get_node(), depth - 1) is not None for v in node.input_values()) else None


def class_branches(model: Any, num_classes: int) -> list[Any]:
    """A detector's class branches: the Convolutions with constant weights and ``num_classes`` output channels
    nearest its outputs (YOLOv8: the last 1 x 1 convolution of each scale's class branch), by name."""
    found, seen = [], set()
    frontier = [o.get_node() for o in model.outputs]
    while frontier:
        node = frontier.pop()
        if node.get_friendly_name() in seen:
            continue
        seen.add(node.get_friendly_name())
        if node.get_type_name() == "Convolution":
            weights = _constant(node.input_value(1).get_node())
            if weights is not None and list(weights.get_output_shape(0))[0] == num_classes:
                found.append(node)
                continue  # a class branch's last layer: what lies before it is not the head
            if weights is not None:
                continue  # another branch's convolution (the box branch, DFL): not followed further
        frontier.extend(value.get_node() for value in node.input_values())
    if not found:
        raise WhiteboxUnsupportedError(f"model {model.get_friendly_name()!r}: no convolution with {num_classes} "
                                       "output channels near the outputs (no class branch found)")
    return sorted(found, key=lambda n: n.get_friendly_name())


@dataclass(frozen=True)
class Cut:
    """A backbone output the mosaic masks: its node's friendly name, channels and spatial size."""

    name: str
    channels: int
    height: int
    width: int


def _spatial(node: Any) -> list[int] | None:
    if node.get_output_size() != 1 or not node.get_output_element_type(0).is_real():
        return None
    shape = node.get_output_partial_shape(0)
    if shape.rank.is_dynamic or shape.rank.get_length() != 4 or not all(d.is_static for d in list(shape)[1:]):
        return None
    return [d.get_length() for d in list(shape)[1:]]


def neck_cuts(model: Any, num_classes: int) -> list[Cut]:
    """The backbone's outputs at each of the head's scales (see the module), finest first; a
    :class:`WhiteboxUnsupportedError` when the graph has no such neck (no upsampling before the head)."""
    scales = sorted({tuple(_spatial(c)[1:]) for c in class_branches(model, num_classes) if _spatial(c)},
                    reverse=True)
    ops = list(model.get_ordered_ops())
    order = {n.get_friendly_name(): i for i, n in enumerate(ops)}
    upsampling = [i for i, n in enumerate(ops) if n.get_type_name() == "Interpolate"]
    if not scales or not upsampling:
        raise WhiteboxUnsupportedError("no FPN / PAN neck found (no upsampling before the detection head)")
    first = upsampling[0]
    cuts = []
    for height, width in scales:
        candidates = []
        for node in ops[:first]:
            dims = _spatial(node)
            if node.get_type_name() == "Constant" or dims is None or dims[1:] != [height, width]:
                continue
            if any(order[t.get_node().get_friendly_name()] >= first for t in node.output(0).get_target_inputs()):
                candidates.append(Cut(node.get_friendly_name(), dims[0], height, width))
        if not candidates:
            raise WhiteboxUnsupportedError(f"no backbone output at the head's {height}x{width} scale read by the neck")
        cuts.append(candidates[-1])
    return cuts


def cell_masks(cut: Cut, grid: tuple[int, int]) -> np.ndarray:
    """(K, 1, H, W) float32: mask k keeps the block of ``cut`` under cell k of the ``grid`` (row-major)."""
    rows, columns = grid
    masks = np.zeros((rows * columns, 1, cut.height, cut.width), np.float32)
    ys = np.linspace(0, cut.height, rows + 1).round().astype(int)
    xs = np.linspace(0, cut.width, columns + 1).round().astype(int)
    for r in range(rows):
        for c in range(columns):
            masks[r * columns + c, 0, ys[r]:ys[r + 1], xs[c]:xs[c + 1]] = 1.0
    return masks


def class_logits(tail: TailClone, work: Any, num_classes: int) -> Any | None:
    """The clone's class scores before their Sigmoid, (N * K, C, A), when the output's class scores come from
    one Sigmoid (YOLOv8 / v11): a copy whose face is masked away has a logit far below zero, where its
    sigmoid has already flushed to 0 and every such copy would look the same."""
    for node in work.get_ordered_ops():
        if node.get_type_name() != "Sigmoid":
            continue
        shape = node.get_output_partial_shape(0)
        if shape.rank.is_static and shape.rank.get_length() == 3 and shape[1].is_static \
                and shape[1].get_length() == num_classes:
            return tail.node(node.get_friendly_name()).input_value(0)
    return None


def build_detection_mosaic(model: Any, cuts: list[Cut], grid: tuple[int, int], num_classes: int = 0) -> Any:
    """``model`` plus :data:`MOSAIC_OUTPUT`: every output of the network re-run from the cuts on K = rows x
    columns copies per image, copy k with only grid cell k of every cut kept (at image n, copy k: row
    n * K + k). Its first output's scores at anchor a, class c over the copies are that box's map."""
    import openvino as ov

    copies = grid[0] * grid[1]
    work = model.clone()
    nodes = {n.get_friendly_name(): n for n in work.get_ordered_ops()}
    tail = TailClone(work, [cut.name for cut in cuts])
    for cut in cuts:
        value = nodes[cut.name].output(0)
        masks = opset.constant(cell_masks(cut, grid)[None])  # (1, K, 1, H, W)
        masked = opset.multiply(opset.unsqueeze(value, np.array([1], np.int64)), masks)  # (N, K, C, H, W)
        batch = opset.reshape(masked, np.array([-1, cut.channels, cut.height, cut.width], np.int64),
                              special_zero=False)
        for consumer in list(tail.node(cut.name).output(0).get_target_inputs()):
            consumer.replace_source_output(batch.output(0))
    tail.feed_from_before_the_cut(0, copies)
    mosaic = class_logits(tail, work, num_classes) if num_classes else None
    if mosaic is None:
        mosaic = tail.scores(0)
    mosaic.get_tensor().set_names({MOSAIC_OUTPUT})
    result = ov.Model([*work.outputs, mosaic], work.get_parameters(), f"{model.get_friendly_name()}_mosaic")
    result.validate_nodes_and_infer_types()
    return result
