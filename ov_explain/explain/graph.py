"""Pattern matching in a classifier's graph: where the white-box methods attach.

Feature maps (static rank-4 outputs with 1 < H, W < C), the global-pooling + linear head after one
(for ReciproCAM's algebraic shortcut), and the token streams entering pre-norm transformer blocks
(for ViT-ReciproCAM). Nothing here changes a graph; the branch builders live with their methods.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ov_explain.core.ports import node_key as _key
from ov_explain.explain.base import ExplainError, WhiteboxUnsupportedError

logger = logging.getLogger(__name__)

_SHAPE_OPS = ("Reshape", "Squeeze", "Unsqueeze", "Convert")
#: Attention as OpenVINO holds it: explicit softmax attention, or (OpenVINO 2025+ fuses both explicit and
#: ``F.scaled_dot_product_attention`` into it) one ScaledDotProductAttention node.
ATTENTION_OPS = ("Softmax", "SoftMax", "ScaledDotProductAttention")
#: Ops that move an attention tensor's values around without mixing them with anything else.
_ATTENTION_PLUMBING = ("Reshape", "Squeeze", "Unsqueeze", "Convert", "Transpose", "Gather", "Split",
                       "VariadicSplit", "StridedSlice", "Slice", "Concat")


def _is_plumbing(node: Any) -> bool:
    """Moves values around, or scales / shifts them by a constant (the query's scale, a bias); a residual
    Add of two computed values is not plumbing (it would lead from a CNN stage's output into its attention)."""
    kind = node.get_type_name()
    if kind in ("Multiply", "Add"):
        return any(_is_constant(node.input_value(i)) for i in (0, 1))
    return kind in _ATTENTION_PLUMBING


@dataclass(frozen=True)
class TargetLayer:
    """A spatial feature map in the graph: its node, layout and (C, H, W)."""

    node: Any
    layout: str  # "NCHW" | "NHWC" | "NLC" (patch tokens (N, H*W, C) that a head averages: vitcam)
    channels: int
    height: int
    width: int

    @property
    def name(self) -> str:
        return self.node.get_friendly_name()


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
    key = _key(node)
    if key not in memo:
        memo[key] = False  # guards cycles; graphs are DAGs
        memo[key] = node.get_type_name() == "Parameter" or any(
            _depends_on_input(i.get_source_output().get_node(), memo) for i in node.inputs())
    return memo[key]


def _is_attention_op(node: Any) -> bool:
    """Attention itself: softmax, fused attention, or a product of two computed values (Q·Kᵀ, A·V)."""
    kind = node.get_type_name()
    if kind in ATTENTION_OPS:
        return True
    return kind == "MatMul" and not any(_is_constant_subgraph(node.input_value(i)) for i in (0, 1))


def _is_attention_tensor(node: Any, hops: int = 4) -> bool:
    """Whether a rank-4 value is part of an attention computation: queries, keys or values on their way
    into attention, attention scores, or heads on their way out (within ``hops`` plumbing ops), never a
    spatial feature map however its (N, heads, tokens, dim) shape looks."""
    def near(start: Any, forward: bool) -> bool:
        frontier = [start]
        for _ in range(hops + 1):
            following = []
            for current in frontier:
                if _is_attention_op(current):
                    return True
                if current is not start and not _is_plumbing(current):
                    continue
                if forward:
                    following.extend(t.get_node() for o in current.outputs() for t in o.get_target_inputs())
                else:
                    following.extend(i.get_source_output().get_node() for i in current.inputs())
            frontier = following
        return False

    return near(node, True) or near(node, False)


def _one_used_output(node: Any) -> bool:
    """Whether only the first output is read: a MaxPool's unused indices output (VGG's last pooling, which
    its head reads) does not make it a multi-output node."""
    return node.get_output_size() >= 1 and not any(node.output(i).get_target_inputs()
                                                   for i in range(1, node.get_output_size()))


def feature_map_candidates(model: Any) -> list[TargetLayer]:
    """Every single-output node producing a spatial feature map from the input, in graph order (attention
    tensors excluded: their rank-4 shapes are heads and tokens, not space)."""
    memo: dict = {}
    found = []
    for node in model.get_ordered_ops():
        if node.get_type_name() in ("Constant", "Parameter", "Result") or not _one_used_output(node):
            continue
        layout = _feature_layout(node.get_output_partial_shape(0))
        if layout is not None and _depends_on_input(node, memo) and not _is_attention_tensor(node):
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


def _is_constant_subgraph(output: Any, limit: int = 64) -> bool:
    """Whether a value depends on no input: a constant, or one decompressed or dequantized from constants
    (an INT8 IR's weights are Multiply(Convert(int8 constant), scale)). Walked without recursion and at
    most ``limit`` nodes deep: a weight subgraph is a few nodes, a branch of the network is not."""
    stack, seen = [output.get_node()], set()
    while stack:
        node = stack.pop()
        if _key(node) in seen:
            continue
        seen.add(_key(node))
        if node.get_type_name() == "Parameter" or len(seen) > limit:
            return False
        stack.extend(i.get_source_output().get_node() for i in node.inputs())
    return True


def _is_fake_quantize(node: Any) -> bool:
    """A FakeQuantize with constant ranges: it rounds a value to 8-bit levels, it does not change its meaning."""
    return node.get_type_name() == "FakeQuantize" and all(_is_constant_subgraph(node.input_value(i))
                                                          for i in range(1, 5))


@dataclass(frozen=True)
class LinearHead:
    weights: Any  # output of the (possibly decompressed) weight constant
    transpose_b: bool
    bias: Any | None
    softmax: bool
    result_node: Any  # the producer the classification Result reads
    scale: float = 1.0  # a constant factor after the MatMul (ONNX Gemm's alpha)


def _scalar(output: Any) -> float | None:
    """The value of a one-element constant (through Converts), else None."""
    node = output.get_node()
    while node.get_type_name() == "Convert":
        node = node.input_value(0).get_node()
    if node.get_type_name() != "Constant":
        return None
    data = np.asarray(node.get_data())
    return float(data.reshape(-1)[0]) if data.size == 1 else None


def match_linear_head(target: TargetLayer, classification_output: Any) -> LinearHead | None:
    """Global average pooling -> shape ops -> MatMul(const) [-> Multiply(scalar)] [-> Add(const)] [-> Softmax]
    -> output. "const" includes constant subgraphs (dequantized INT8 weights); a FakeQuantize among the shape
    ops (an INT8 IR rounding the pooled vector) is passed over: the maps use the head's (dequantized)
    weights on the feature map, which is where a quantized model's attention is read."""
    node = _single_consumer(target.node.output(0))
    if node is None or node.get_type_name() != "ReduceMean" or not _is_constant(node.input_value(1)):
        return None
    rank = 3 if target.layout == "NLC" else 4
    axes = {int(a) % rank for a in np.ravel(node.input_value(1).get_node().get_data())}
    if axes != {"NCHW": {2, 3}, "NHWC": {1, 2}, "NLC": {1}}[target.layout]:
        return None
    value = node.output(0)
    node = _single_consumer(value)
    while node is not None and (node.get_type_name() in _SHAPE_OPS or _is_fake_quantize(node)):
        value = node.output(0)
        node = _single_consumer(value)
    if node is None or node.get_type_name() != "MatMul" or node.input_value(0) != value:
        return None
    attributes = node.get_attributes()
    if attributes.get("transpose_a") or not _is_constant_subgraph(node.input_value(1)):
        return None
    head = dict(weights=node.input_value(1), transpose_b=bool(attributes.get("transpose_b")), bias=None,
                softmax=False, result_node=node)
    after = _single_consumer(node.output(0))
    if after is not None and after.get_type_name() == "Multiply":
        scale = _scalar(_other_input(after, node.output(0)))
        if scale is None:
            return None
        head.update(scale=scale, result_node=after)
        node, after = after, _single_consumer(after.output(0))
    if after is not None and after.get_type_name() == "Add":
        other = _other_input(after, node.output(0))
        if not _is_constant_subgraph(other):
            return None
        head.update(bias=other, result_node=after)
        after = _single_consumer(after.output(0))
    if after is not None and after.get_type_name() in ("Softmax", "SoftMax"):
        head.update(softmax=True, result_node=after)
        after = _single_consumer(after.output(0))
    if head["result_node"].output(0) != _producer(classification_output):
        return None
    return LinearHead(**head)


def folded(model: Any) -> Any:
    """A copy of ``model`` with constant subgraphs folded: an ONNX model's pooling axes computed from
    ShapeOf -> Range become the constant the head pattern needs."""
    from ov_explain.core._compat import ConstantFolding, PassManager

    copy = model.clone()
    manager = PassManager()
    manager.register_pass(ConstantFolding())
    manager.run_passes(copy)
    return copy


def with_visible_head(model: Any, position: int, target_name: str | None) -> Any:
    """``model``, or its constant-folded copy when only folding reveals a pooling + linear head after the
    target (folding is not the default: it would bake a static batch into shape computations that the
    mosaic path later makes dynamic; the shortcut the head allows needs no mosaic)."""
    def has_head(graph: Any) -> bool:
        try:
            return match_linear_head(find_target_layer(graph, target_name), graph.outputs[position]) is not None
        except ExplainError:  # no target here: the caller reports it
            return False

    if has_head(model):
        return model
    candidate = folded(model)
    return candidate if has_head(candidate) else model


@dataclass(frozen=True)
class TokenLayer:
    """The token stream entering a transformer block: (N, T, D) with T = aux + H*W patch tokens."""

    node: Any
    skip: Any  # the residual Add that adds the block's attention branch back to this stream
    norm_output: Any | None  # the branch's first LayerNorm output (MVN [* gamma] [+ beta]); None: no norm
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
    for aux in (1, 0, 2, 5, 3, 4, 6, 7, 8):  # CLS; none; CLS + distillation; CLS + 4 registers; ...
        side = math.isqrt(max(tokens - aux, 0))
        if side > 1 and side * side == tokens - aux:
            return tokens, dim, side, aux
    return None


def _mixes_tokens(node: Any) -> bool:
    """A product of constant weights over the token axis of a (N, T, D) value: an MLP-Mixer's or ResMLP's
    token-mixing layer (the transpose it applies before the layer is folded into the MatMul)."""
    if node.get_type_name() != "MatMul" or not _is_constant_subgraph(node.input_value(1)):
        return False
    value = node.input_value(0)
    if node.get_attributes().get("transpose_a"):
        return value.get_partial_shape().rank.get_length() == 3
    producer = value.get_node()
    if producer.get_type_name() != "Transpose" or not _is_constant(producer.input_value(1)):
        return False
    order = [int(v) for v in np.ravel(producer.input_value(1).get_node().get_data())]
    return order == [0, 2, 1]


def _branch_has_attention(start: Any, stop: Any, limit: int = 5000) -> bool:
    """Whether the nodes between ``start`` and the residual Add ``stop`` include attention (or token mixing)."""
    stack, seen, found = [start], set(), False
    while stack and len(seen) < limit:
        node = stack.pop()
        if _key(node) in seen or _key(node) == _key(stop):
            continue
        seen.add(_key(node))
        found = found or _is_attention_op(node) or _mixes_tokens(node)
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
        branches = norms or [c for c in consumers if c.get_type_name() != "Add"]  # no norm: LeViT's BN blocks
        if len(norms) > 1 or len(adds) != 1 or not branches or _is_constant(_other_input(adds[0], node.output(0))):
            continue
        if not _depends_on_input(node, memo) or not any(_branch_has_attention(b, adds[0]) for b in branches):
            continue
        tokens, dim, side, aux = grid
        norm_output = _norm_end(norms[0]) if norms else None
        found.append(TokenLayer(node, adds[0], norm_output, tokens, dim, side, side, aux))
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


def pooled_token_candidates(model: Any) -> list[TargetLayer]:
    """Patch-token streams (N, H*W, C) with a square grid and no leading tokens that a head averages over
    the tokens (ReduceMean over axis 1, the value's only consumer), in graph order: where ``vitcam`` attaches."""
    found = []
    for node in model.get_ordered_ops():
        if node.get_type_name() in ("Constant", "Parameter", "Result") or not _one_used_output(node):
            continue
        grid = _token_grid(node.get_output_partial_shape(0))
        if grid is None or grid[3] != 0:
            continue
        consumer = _single_consumer(node.output(0))
        if consumer is None or consumer.get_type_name() != "ReduceMean" or not _is_constant(consumer.input_value(1)):
            continue
        axes = {int(a) % 3 for a in np.ravel(consumer.input_value(1).get_node().get_data())}
        if axes == {1}:
            tokens, dim, side, _ = grid
            found.append(TargetLayer(node, "NLC", dim, side, side))
    return found


def find_pooled_tokens(model: Any, name: str | None = None) -> TargetLayer:
    """The named (or the last) patch-token stream a head averages."""
    candidates = pooled_token_candidates(model)
    for candidate in reversed(candidates):
        if name is None or candidate.name == name:
            return candidate
    listed = _names(candidates)
    if name is not None:
        raise ExplainError(f"{name!r} is not a patch-token stream (N, H*W, C) that the head averages; "
                           f"candidates: {listed}")
    raise WhiteboxUnsupportedError("no patch-token stream that the head averages (tokens -> mean over tokens -> "
                                   "linear); use vitreciprocam")


def is_transformer(model: Any) -> bool:
    """Whether the classifier reads a transformer's tokens, so ViT-ReciproCAM (not a CNN method) is the
    white-box method: the graph has transformer blocks and the last of them comes after the last spatial
    feature map (a ViT's only feature map is its patch embedding; a hybrid that ends in convolutions,
    such as MobileViT, is explained at its last feature map)."""
    tokens = token_layer_candidates(model)
    if not tokens:
        return False
    counts = {t.tokens for t in tokens} | {t.tokens - t.aux_tokens for t in tokens}
    # A rank-4 value with the token (or patch) count as a dimension is heads x tokens (rotary embeddings mix queries
    # with Adds that hide them from the attention-tensor test), not space.
    maps = [m for m in feature_map_candidates(model)
            if not counts & {m.channels, m.height, m.width}]
    if not maps:
        return True
    order = {_key(node): index for index, node in enumerate(model.get_ordered_ops())}
    return order[_key(tokens[-1].node)] > order[_key(maps[-1].node)]

