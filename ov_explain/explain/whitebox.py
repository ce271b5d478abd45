"""White-box methods as graph surgery: a ``saliency_map`` output is added to the classifier's IR.

ReciproCAM (CNN): every spatial cell of the target feature map is kept alone (one-hot spatial mask)
and the rest of the network scores it; the class scores per cell form the maps. When the head is
global average pooling + linear (+ bias, + softmax) the same maps come from one matrix product over
the feature map (the *algebraic shortcut*), so nothing runs H*W times. Otherwise the head is cloned and
runs on an (N*H*W)-sized mosaic batch. Batches of any size work.

ViT-ReciproCAM (vision transformers): the same idea over patch tokens. The token stream entering the
last transformer block is copied once per patch; each copy keeps a 3x3 Gaussian neighbourhood of
patches (CLS and other leading tokens untouched) and the rest of the network scores it. The mask is
applied after the block's first LayerNorm for the attention branch (normalisation would undo it
before) and to the raw stream on the skip connection.

ActivationMap: the channel mean of the target feature map (class-agnostic).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._compat import opset
from ..errors import last_line
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


def _key(node: Any) -> str:
    """A stable identity for a node: Python wrappers are recreated on every access, and on OpenVINO
    2024 ``node == other`` builds an Equal op instead of comparing."""
    return node.get_name()


def _depends_on_input(node: Any, memo: dict) -> bool:
    key = _key(node)
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


def _other_input(add: Any, value: Any) -> Any:
    """The input of a two-input node that is not ``value``."""
    return add.input_value(1) if add.input_value(0) == value else add.input_value(0)


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
        other = _other_input(after, node.output(0))
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
    return _mosaic_scores_to_maps(clone, model, classification_output, h, w)


def _mosaic_scores_to_maps(clone: Any, model: Any, classification_output: Any, h: int, w: int) -> Any:
    """The clone's class scores for its (N*H*W)-sized mosaic batch -> (N, K, H, W) maps."""
    scores = clone.get_results()[_output_position(model, classification_output)].input_value(0)
    num_classes = classification_output.get_partial_shape()[-1].get_length()
    scores = opset.reshape(scores, np.array([-1, h * w, num_classes], np.int64), special_zero=False)
    return _cells_to_maps(scores, h, w)


@dataclass(frozen=True)
class TokenLayer:
    """The token stream entering a transformer block: (N, T, D) with T = aux + H*W patch tokens."""

    node: Any
    skip: Any  # the residual Add that adds the block's attention branch back to this stream
    norm_output: Any  # the branch's first LayerNorm output (MVN [* gamma] [+ beta])
    tokens: int
    dim: int
    height: int
    width: int
    aux_tokens: int

    @property
    def name(self) -> str:
        return self.node.get_friendly_name()


def _token_grid(shape: Any) -> tuple[int, int, int, int] | None:
    """(T, D, side, aux) for a static (N, T, D) shape whose T is a few leading tokens plus a square grid."""
    if shape.rank.is_dynamic or shape.rank.get_length() != 3 or not all(d.is_static for d in list(shape)[1:]):
        return None
    tokens, dim = shape[1].get_length(), shape[2].get_length()
    for aux in (1, 0, 2):
        side = math.isqrt(max(tokens - aux, 0))
        if side > 1 and side * side == tokens - aux:
            return tokens, dim, side, aux
    return None


def _branch_has_attention(start: Any, stop: Any, limit: int = 5000) -> bool:
    """Whether the nodes between ``start`` and the residual Add ``stop`` include a Softmax."""
    stack, seen, found = [start], set(), False
    while stack and len(seen) < limit:
        node = stack.pop()
        if _key(node) in seen or _key(node) == _key(stop):
            continue
        seen.add(_key(node))
        found = found or node.get_type_name() in ("Softmax", "SoftMax")
        for output in node.outputs():
            stack.extend(target.get_node() for target in output.get_target_inputs())
    return found


def _norm_end(mvn: Any) -> Any:
    """MVN, then an optional Multiply(const) and Add(const): the LayerNorm's output."""
    value = mvn.output(0)
    for kind in ("Multiply", "Add"):
        node = _single_consumer(value)
        if node is not None and node.get_type_name() == kind and _is_constant(_other_input(node, value)):
            value = node.output(0)
    return value


def token_layer_candidates(model: Any) -> list[TokenLayer]:
    """Every token stream that enters a pre-norm transformer block (LayerNorm -> attention -> residual
    Add back onto the stream), in graph order."""
    memo: dict = {}
    found = []
    for node in model.get_ordered_ops():
        if node.get_type_name() in ("Constant", "Parameter", "Result") or node.get_output_size() != 1:
            continue
        grid = _token_grid(node.get_output_partial_shape(0))
        if grid is None:
            continue
        consumers = [target.get_node() for target in node.output(0).get_target_inputs()]
        norms = [c for c in consumers if c.get_type_name() == "MVN"]
        adds = [c for c in consumers if c.get_type_name() == "Add"]
        if len(norms) != 1 or len(adds) != 1 or _is_constant(_other_input(adds[0], node.output(0))):
            continue
        if not _depends_on_input(node, memo) or not _branch_has_attention(norms[0], adds[0]):
            continue
        tokens, dim, side, aux = grid
        found.append(TokenLayer(node, adds[0], _norm_end(norms[0]), tokens, dim, side, side, aux))
    return found


def find_token_layer(model: Any, name: str | None = None) -> TokenLayer:
    """The named block input, or the stream entering the last transformer block."""
    candidates = token_layer_candidates(model)
    listed = ", ".join(f"{c.name} [{c.tokens}x{c.dim}]" for c in reversed(candidates[-8:])) or "none"
    if name is not None:
        for candidate in candidates:
            if candidate.name == name:
                return candidate
        if any(node.get_friendly_name() == name for node in model.get_ordered_ops()):
            raise ExplainError(f"target layer {name!r} is not a token stream entering a transformer block "
                               f"(LayerNorm -> attention -> residual Add); candidates: {listed}")
        raise ExplainError(f"no node named {name!r} in the model; candidates: {listed}")
    if not candidates:
        raise WhiteboxUnsupportedError("no transformer block found (a static (N, T, D) token stream feeding "
                                       "LayerNorm -> attention -> a residual Add, with T = CLS + a square "
                                       "patch grid); for a CNN use reciprocam, or a black-box method")
    return candidates[-1]


def is_transformer(model: Any) -> bool:
    """Whether the graph has ViT blocks, so ViT-ReciproCAM (not CNN ReciproCAM) is the white-box method."""
    return bool(token_layer_candidates(model))


def default_whitebox_method(model: Any) -> str:
    """ViT-ReciproCAM for vision transformers, ReciproCAM otherwise."""
    return "vitreciprocam" if is_transformer(model) else "reciprocam"


def gaussian_patch_masks(height: int, width: int) -> np.ndarray:
    """(H*W, H, W): for each patch a 3x3 Gaussian (1/4 centre, 1/8 edges, 1/16 corners) cut at the borders."""
    kernel = np.outer([0.25, 0.5, 0.25], [0.25, 0.5, 0.25]).astype(np.float32)
    padded = np.zeros((height * width, height + 2, width + 2), np.float32)
    for i in range(height):
        for j in range(width):
            padded[i * width + j, i:i + 3, j:j + 3] = kernel
    return padded[:, 1:-1, 1:-1]


def _vit_reciprocam(model: Any, layer: TokenLayer, classification_output: Any) -> Any:
    """Run a clone of the last block(s) and head on N*H*W masked copies of the token stream."""
    cells = layer.height * layer.width
    keep = np.ones((cells, layer.tokens), np.float32)
    keep[:, layer.aux_tokens:] = gaussian_patch_masks(layer.height, layer.width).reshape(cells, cells)
    keep = keep.reshape(1, cells, layer.tokens, 1)

    def mosaic(value: Any) -> Any:
        copies = opset.multiply(opset.unsqueeze(value, np.array([1], np.int64)), keep)  # (N, HW, T, D)
        return opset.reshape(copies, np.array([-1, layer.tokens, layer.dim], np.int64), special_zero=False)

    stream, normalised = mosaic(layer.node.output(0)), mosaic(layer.norm_output)
    clone = model.clone()
    by_name = {n.get_friendly_name(): n for n in clone.get_ordered_ops()}
    clone_node = by_name[layer.name]
    clone_norm = by_name[layer.norm_output.get_node().get_friendly_name()].output(layer.norm_output.get_index())
    for consumer in list(clone_norm.get_target_inputs()):
        consumer.replace_source_output(normalised.output(0))
    for consumer in list(clone_node.output(0).get_target_inputs()):
        if consumer.get_node().get_type_name() != "MVN":
            consumer.replace_source_output(stream.output(0))
    return _mosaic_scores_to_maps(clone, model, classification_output, layer.height, layer.width)


def _output_position(model: Any, output: Any) -> int:
    for index, candidate in enumerate(model.outputs):
        if _key(candidate.get_node()) == _key(output.get_node()) and candidate.get_index() == output.get_index():
            return index
    return 0


def build_xai_model(model: Any, classification_output: Any, method: str | None = "reciprocam", *,
                    target_layer: str | None = None, shortcut: bool | None = None) -> XaiModel:
    """A new model: the classifier's outputs plus ``saliency_map`` (N, K, h, w), or (N, 1, h, w) for
    ActivationMap. ``shortcut=None`` uses the algebraic shortcut when the head allows it.
    ``method=None`` picks ViT-ReciproCAM for transformers and ReciproCAM otherwise."""
    import openvino as ov

    method = method or default_whitebox_method(model)
    work = model.clone()
    position = _output_position(model, classification_output)
    work_output = work.outputs[position]
    if method in ("reciprocam", "activationmap") and target_layer is None and is_transformer(work):
        # Its rank-4 tensors are patch embeddings or attention scores, not a CNN feature map.
        raise WhiteboxUnsupportedError(f"{method} needs a CNN feature map, and this model is a vision "
                                       "transformer: use vitreciprocam")
    try:
        maps, work_output, target, used_shortcut = _insert_maps(work, position, work_output, method,
                                                                target_layer, shortcut)
    except RuntimeError as exc:  # OpenVINO refused a reshape of the cloned tail (e.g. a hard-coded batch)
        raise WhiteboxUnsupportedError(f"{method} cannot be built on this graph ({last_line(exc)})") from None
    maps = opset.convert(maps, ov.Type.f32)
    maps.output(0).get_tensor().set_names({SALIENCY_OUTPUT})
    results = [r.output(0) for r in work.get_results()]
    try:
        xai = ov.Model([r.input_value(0) for r in work.get_results()] + [maps.output(0)], work.get_parameters(),
                       f"{work.get_friendly_name()}_xai")
    except RuntimeError as exc:  # the cloned tail still reads something from before the target layer
        raise WhiteboxUnsupportedError(f"{method} cannot cut the graph at {target.name}: "
                                       f"{str(exc).strip().splitlines()[0]}") from None
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


def _insert_maps(work: Any, position: int, work_output: Any, method: str, target_layer: str | None,
                 shortcut: bool | None) -> tuple[Any, Any, Any, bool]:
    """The saliency-map node of ``method`` in ``work``: (maps, classification output, target, shortcut used)."""
    used_shortcut = False
    if method == "vitreciprocam":
        target: TargetLayer | TokenLayer = find_token_layer(work, target_layer)
        work_output, target = _with_dynamic_batch(work, position, target, find_token_layer)
        maps = _vit_reciprocam(work, target, work_output)
    elif method in ("reciprocam", "activationmap"):
        target = find_target_layer(work, target_layer)
        head = match_linear_head(target, work_output) if method == "reciprocam" and shortcut is not False else None
        if method == "activationmap":
            maps = opset.reduce_mean(_as_nchw(target), np.array([1], np.int64), keep_dims=True)
        elif head is not None:
            maps, used_shortcut = _reciprocam_shortcut(target, head), True
        elif shortcut is True:
            raise WhiteboxUnsupportedError(f"the head after {target.name} is not global pooling + linear; "
                                           "the algebraic shortcut does not apply")
        else:
            work_output, target = _with_dynamic_batch(work, position, target, find_target_layer)
            maps = _reciprocam_mosaic(work, target, work_output)
    else:
        raise WhiteboxUnsupportedError(f"unknown white-box method {method!r}")
    return maps, work_output, target, used_shortcut


def _copy_rt_info(source: Any, destination: Any) -> None:
    """Keep the preprocessing spec (and model name) with the model, as the classifier reads them."""
    from ..preprocess import RT_INFO_EMBEDDED_KEY, RT_INFO_KEY, rt_info_str

    for key in (RT_INFO_KEY, RT_INFO_EMBEDDED_KEY, ["model_info", "model_name"]):
        if source.has_rt_info(key):
            destination.set_rt_info(rt_info_str(source.get_rt_info(key)), key)


def _with_dynamic_batch(work: Any, position: int, target: Any, find: Any) -> tuple[Any, Any]:
    """Mosaic methods run the network's tail on a bigger batch: make a static batch dynamic first.
    Returns the (possibly new) classification output and target layer."""
    if work.outputs[position].get_partial_shape()[0].is_dynamic:
        return work.outputs[position], target
    _make_batch_dynamic(work)
    return work.outputs[position], find(work, target.name)


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
