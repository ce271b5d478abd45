"""White-box methods as graph surgery: a ``saliency_map`` output is added to the classifier's IR.

ReciproCAM (CNN): every spatial cell of the target feature map is kept alone (one-hot spatial mask)
and the rest of the network scores it; the class scores per cell form the maps. When the head is
global average pooling + linear (+ bias, + softmax) the same maps come from one matrix product over
the feature map (the *algebraic shortcut*), so nothing runs H*W times. Otherwise the head is cloned and
runs on an (N*H*W)-sized mosaic batch. Batches of any size work.

ActivationMap: the channel mean of the target feature map (class-agnostic).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._compat import opset
from .base import ExplainError, WhiteboxUnsupportedError

logger = logging.getLogger(__name__)

SALIENCY_OUTPUT = "saliency_map"
RT_INFO_XAI = ["model_info", "ov_explain_xai"]
_SHAPE_OPS = ("Reshape", "Squeeze", "Unsqueeze", "Convert")


@dataclass(frozen=True)
class TargetLayer:
    """A spatial feature map in the graph: its node, layout and (C, H, W)."""

    node: Any
    layout: str  # "NCHW" | "NHWC"
    channels: int
    height: int
    width: int

    @property
    def name(self) -> str:
        return self.node.get_friendly_name()


@dataclass(frozen=True)
class XaiModel:
    """A model with prediction and saliency outputs, and how the saliency was built."""

    model: Any
    method: str
    target_layer: str
    shortcut: bool
    map_size: tuple[int, int]


def _feature_layout(shape: Any) -> tuple[str, int, int, int] | None:
    """(layout, C, H, W) if the static rank-4 shape looks like a spatial feature map."""
    if shape.rank.is_dynamic or shape.rank.get_length() != 4:
        return None
    dims = list(shape)
    if not all(d.is_static for d in dims[1:]):
        return None
    a, b, c = (d.get_length() for d in dims[1:])
    if 1 < b < a and 1 < c < a:
        return "NCHW", a, b, c
    if 1 < a < c and 1 < b < c:
        return "NHWC", c, a, b
    return None


def _depends_on_input(node: Any, memo: dict) -> bool:
    key = id(node)
    if key not in memo:
        memo[key] = False  # guards cycles; graphs are DAGs
        memo[key] = node.get_type_name() == "Parameter" or any(
            _depends_on_input(i.get_source_output().get_node(), memo) for i in node.inputs())
    return memo[key]


def feature_map_candidates(model: Any) -> list[TargetLayer]:
    """Every single-output node producing a spatial feature map from the input, in graph order."""
    memo: dict = {}
    found = []
    for node in model.get_ordered_ops():
        if node.get_type_name() in ("Constant", "Parameter", "Result") or node.get_output_size() != 1:
            continue
        layout = _feature_layout(node.get_output_partial_shape(0))
        if layout is not None and _depends_on_input(node, memo):
            found.append(TargetLayer(node, *layout))
    return found


def find_target_layer(model: Any, name: str | None = None) -> TargetLayer:
    """The named node, or the last spatial feature map (the one global pooling reads).

    A bad name is the user's mistake (ExplainError, no fallback); a graph with no feature map at all
    is WhiteboxUnsupportedError, which ``mode='auto'`` answers with a black-box method.
    """
    candidates = feature_map_candidates(model)
    if name is not None:
        for candidate in candidates:
            if candidate.name == name:
                return candidate
        for node in model.get_ordered_ops():
            if node.get_friendly_name() == name:
                raise ExplainError(
                    f"target layer {name!r} has output {node.get_output_partial_shape(0)}, not a static "
                    f"(N, C, H, W) feature map with 1 < H, W < C; candidates: {_names(candidates)}")
        raise ExplainError(f"no node named {name!r} in the model; candidates: {_names(candidates)}")
    if not candidates:
        raise WhiteboxUnsupportedError("no spatial feature map (static rank-4 output with 1 < H, W < C) found; "
                                       "the model needs a black-box method")
    return candidates[-1]


def _names(candidates: list[TargetLayer], limit: int = 8) -> str:
    tail = candidates[-limit:]
    shown = ", ".join(f"{c.name} [{c.channels}x{c.height}x{c.width}]" for c in reversed(tail))
    return shown + (" ..." if len(candidates) > limit else "") if shown else "none"


def _single_consumer(output: Any) -> Any | None:
    consumers = list(output.get_target_inputs())
    return consumers[0].get_node() if len(consumers) == 1 else None


def _producer(output: Any) -> Any:
    """``model.outputs`` are Result nodes' outputs: the value behind one is its input."""
    node = output.get_node()
    return node.input_value(0) if node.get_type_name() == "Result" else output


def _is_constant(output: Any) -> bool:
    node = output.get_node()
    while node.get_type_name() == "Convert":
        node = node.input_value(0).get_node()
    return node.get_type_name() == "Constant"


@dataclass(frozen=True)
class _LinearHead:
    weights: Any  # output of the (possibly decompressed) weight constant
    transpose_b: bool
    bias: Any | None
    softmax: bool
    result_node: Any  # the producer the classification Result reads


def match_linear_head(target: TargetLayer, classification_output: Any) -> _LinearHead | None:
    """Global average pooling -> shape ops -> MatMul(const) [-> Add(const)] [-> Softmax] -> output."""
    node = _single_consumer(target.node.output(0))
    if node is None or node.get_type_name() != "ReduceMean" or not _is_constant(node.input_value(1)):
        return None
    axes = {int(a) % 4 for a in np.ravel(node.input_value(1).get_node().get_data())}
    if axes != ({2, 3} if target.layout == "NCHW" else {1, 2}):
        return None
    value = node.output(0)
    node = _single_consumer(value)
    while node is not None and node.get_type_name() in _SHAPE_OPS:
        value = node.output(0)
        node = _single_consumer(value)
    if node is None or node.get_type_name() != "MatMul" or node.input_value(0) != value:
        return None
    attributes = node.get_attributes()
    if attributes.get("transpose_a") or not _is_constant(node.input_value(1)):
        return None
    head = dict(weights=node.input_value(1), transpose_b=bool(attributes.get("transpose_b")), bias=None,
                softmax=False, result_node=node)
    after = _single_consumer(node.output(0))
    if after is not None and after.get_type_name() == "Add":
        other = after.input_value(1) if after.input_value(0) == node.output(0) else after.input_value(0)
        if not _is_constant(other):
            return None
        head.update(bias=other, result_node=after)
        after = _single_consumer(after.output(0))
    if after is not None and after.get_type_name() in ("Softmax", "SoftMax"):
        head.update(softmax=True, result_node=after)
        after = _single_consumer(after.output(0))
    if head["result_node"].output(0) != _producer(classification_output):
        return None
    return _LinearHead(**head)


def _as_nchw(target: TargetLayer) -> Any:
    output = target.node.output(0)
    return opset.transpose(output, np.array([0, 3, 1, 2], np.int64)) if target.layout == "NHWC" else output


def _reciprocam_shortcut(target: TargetLayer, head: _LinearHead) -> Any:
    c, h, w = target.channels, target.height, target.width
    features = opset.reshape(_as_nchw(target), np.array([0, c, h * w], np.int64), special_zero=True)
    cells = opset.transpose(features, np.array([0, 2, 1], np.int64))  # (N, HW, C)
    # One cell alone through global average pooling is that cell's features / (H * W).
    scores = opset.matmul(cells, head.weights, False, head.transpose_b)
    scores = opset.multiply(scores, np.float32(1.0 / (h * w)))
    if head.bias is not None:
        scores = opset.add(scores, head.bias)
    if head.softmax:
        scores = opset.softmax(scores, 2)
    return _cells_to_maps(scores, h, w)


def _cells_to_maps(scores: Any, h: int, w: int) -> Any:
    """(N, H*W, K) class scores per cell -> (N, K, H, W)."""
    maps = opset.transpose(scores, np.array([0, 2, 1], np.int64))
    return opset.reshape(maps, np.array([0, -1, h, w], np.int64), special_zero=True)


def _reciprocam_mosaic(model: Any, target: TargetLayer, classification_output: Any) -> Any:
    """Run a clone of the head on N*H*W copies of the feature map, each with one cell kept."""
    c, h, w = target.channels, target.height, target.width
    features = target.node.output(0)
    if target.layout == "NCHW":
        mask = np.eye(h * w, dtype=np.float32).reshape(1, h * w, 1, h, w)
        per_image_shape = [c, h, w]
    else:
        mask = np.eye(h * w, dtype=np.float32).reshape(1, h * w, h, w, 1)
        per_image_shape = [h, w, c]
    expanded = opset.unsqueeze(features, np.array([1], np.int64))  # (N, 1, ...)
    mosaic = opset.multiply(expanded, mask)  # (N, HW, ...)
    mosaic = opset.reshape(mosaic, np.array([-1] + per_image_shape, np.int64), special_zero=False)

    clone = model.clone()
    clone_target = next(n for n in clone.get_ordered_ops() if n.get_friendly_name() == target.name)
    for consumer in list(clone_target.output(0).get_target_inputs()):
        consumer.replace_source_output(mosaic.output(0))
    clone_result = clone.get_results()[_output_position(model, classification_output)]
    scores = clone_result.input_value(0)  # (N*HW, K)
    num_classes = classification_output.get_partial_shape()[-1].get_length()
    scores = opset.reshape(scores, np.array([-1, h * w, num_classes], np.int64), special_zero=False)
    return _cells_to_maps(scores, h, w)


def _output_position(model: Any, output: Any) -> int:
    for index, candidate in enumerate(model.outputs):
        if candidate.get_node() == output.get_node() and candidate.get_index() == output.get_index():
            return index
    return 0


def build_xai_model(model: Any, classification_output: Any, method: str = "reciprocam", *,
                    target_layer: str | None = None, shortcut: bool | None = None) -> XaiModel:
    """A new model: the classifier's outputs plus ``saliency_map`` (N, K, h, w), or (N, 1, h, w) for
    ActivationMap. ``shortcut=None`` uses the algebraic shortcut when the head allows it."""
    import openvino as ov

    work = model.clone()
    work_output = work.outputs[_output_position(model, classification_output)]
    target = find_target_layer(work, target_layer)
    used_shortcut = False
    if method == "activationmap":
        maps = opset.reduce_mean(_as_nchw(target), np.array([1], np.int64), keep_dims=True)
    elif method == "reciprocam":
        head = match_linear_head(target, work_output) if shortcut is not False else None
        if shortcut is True and head is None:
            raise WhiteboxUnsupportedError(f"the head after {target.name} is not global pooling + linear; "
                                           "the algebraic shortcut does not apply")
        if head is not None:
            maps, used_shortcut = _reciprocam_shortcut(target, head), True
        else:
            if work_output.get_partial_shape()[0].is_static:
                _make_batch_dynamic(work)
                work_output = work.outputs[_output_position(model, classification_output)]
                target = find_target_layer(work, target.name)
            maps = _reciprocam_mosaic(work, target, work_output)
    else:
        raise WhiteboxUnsupportedError(f"unknown white-box method {method!r}")
    maps = opset.convert(maps, ov.Type.f32)
    maps.output(0).get_tensor().set_names({SALIENCY_OUTPUT})
    results = [r.output(0) for r in work.get_results()]
    xai = ov.Model([r.input_value(0) for r in work.get_results()] + [maps.output(0)], work.get_parameters(),
                   f"{work.get_friendly_name()}_xai")
    for original, new in zip(results, xai.outputs):
        names = original.get_names()
        if names:
            new.get_tensor().set_names(set(names))
    _copy_rt_info(model, xai)
    info = {"method": method, "target_layer": target.name, "shortcut": used_shortcut,
            "map_size": [target.height, target.width]}
    xai.set_rt_info(json.dumps(info), RT_INFO_XAI)
    logger.info("inserted %s at %s (%dx%d)%s", method, target.name, target.height, target.width,
                " via the algebraic shortcut" if used_shortcut else "")
    return XaiModel(xai, method, target.name, used_shortcut, (target.height, target.width))


def _copy_rt_info(source: Any, destination: Any) -> None:
    """Keep the preprocessing spec (and model name) with the model, as the classifier reads them."""
    from ..preprocess import RT_INFO_EMBEDDED_KEY, RT_INFO_KEY, rt_info_str

    for key in (RT_INFO_KEY, RT_INFO_EMBEDDED_KEY, ["model_info", "model_name"]):
        if source.has_rt_info(key):
            destination.set_rt_info(rt_info_str(source.get_rt_info(key)), key)


def _make_batch_dynamic(model: Any) -> None:
    import openvino as ov

    shapes = {}
    for inp in model.inputs:
        dims = list(inp.get_partial_shape())
        dims[0] = ov.Dimension()
        shapes[inp] = ov.PartialShape(dims)
    try:
        model.reshape(shapes)
    except Exception as exc:
        raise WhiteboxUnsupportedError(f"ReciproCAM needs a dynamic batch through the head, and the model "
                                       f"cannot be reshaped to one ({exc})") from None


def read_xai_info(model: Any) -> dict | None:
    """The method info an exported XAI IR carries, if it has a ``saliency_map`` output."""
    if not any(SALIENCY_OUTPUT in o.get_names() for o in model.outputs):
        return None
    if model.has_rt_info(RT_INFO_XAI):
        from ..preprocess import rt_info_str

        return json.loads(rt_info_str(model.get_rt_info(RT_INFO_XAI)))
    return {"method": "unknown", "target_layer": None, "shortcut": None, "map_size": None}
