"""ViT-Recipro-CAM (Byun & Lee, 2023): Recipro-CAM over the patch tokens of a vision transformer.

The token stream entering the last transformer block is copied once per patch; each copy keeps a
3x3 Gaussian neighbourhood of patches (CLS and other leading tokens untouched) and the rest of the
network scores it. The mask is applied after the block's first LayerNorm for the attention branch
(normalisation would undo it before) and to the raw stream on the skip connection.

Where each family is masked (the block is found in the graph, :func:`~ov_explain.explain.graph.find_token_layer`):

- ViT, DeiT, BEiT, EVA-02: the last block; leading tokens kept (CLS; CLS + distillation; CLS + registers).
  Average-pooled ViTs (``global_pool="avg"``, ``fc_norm``) have none. EVA-02's rotary embeddings are constants.
- CaiT: the last patch block (its class-attention blocks then read the masked patches as keys and values);
  XCiT: the last class-attention block, whose stream is CLS + patches.
- PiT, Twins: the last block of the last stage (the grid of that stage); LeViT (no LayerNorm: BN inside
  the branch): the stream is masked for every consumer.
- CrossViT: the last block found in graph order, one branch; the other branch's tokens reach the tail unmasked.

Values the tail reads from before the cut (a CLS token broadcast to a batch size taken from the patch
embedding, the other branch's tokens) are re-derived at the mosaic's batch (:mod:`ov_explain.explain.tail`).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np

from ov_explain.core._compat import opset
from ov_explain.explain.branches import find_softmax, mosaic_scores_to_maps, resolve_readout, with_dynamic_batch
from ov_explain.explain.graph import TokenLayer, find_token_layer
from ov_explain.explain.method import Inserted, WhiteboxMethod
from ov_explain.explain.tail import TailClone

logger = logging.getLogger(__name__)


def gaussian_patch_masks(height: int, width: int) -> np.ndarray:
    """(H*W, H, W): for each patch a 3x3 Gaussian (1/4 centre, 1/8 edges, 1/16 corners) cut at the borders."""
    kernel = np.outer([0.25, 0.5, 0.25], [0.25, 0.5, 0.25]).astype(np.float32)
    padded = np.zeros((height * width, height + 2, width + 2), np.float32)
    for i in range(height):
        for j in range(width):
            padded[i * width + j, i:i + 3, j:j + 3] = kernel
    return padded[:, 1:-1, 1:-1]


def _branch(work: Any, position: int, layer: TokenLayer, classification_output: Any, readout: str,
            output_kind: str) -> Any:
    """Run a clone of the last block(s) and head on N*H*W masked copies of the token stream."""
    cells = layer.height * layer.width
    keep = np.ones((cells, layer.tokens), np.float32)
    keep[:, layer.aux_tokens:] = gaussian_patch_masks(layer.height, layer.width).reshape(cells, cells)
    keep = keep.reshape(1, cells, layer.tokens, 1)

    def mosaic(value: Any) -> Any:
        copies = opset.multiply(opset.unsqueeze(value, np.array([1], np.int64)), keep)  # (N, HW, T, D)
        return opset.reshape(copies, np.array([-1, layer.tokens, layer.dim], np.int64), special_zero=False)

    stream = mosaic(layer.node.output(0))
    tail = TailClone(work, [layer.name])
    clone_node = tail.node(layer.name)
    if layer.norm_output is not None:
        normalised = mosaic(layer.norm_output)
        norm = layer.norm_output
        clone_norm = tail.node(norm.get_node().get_friendly_name()).output(norm.get_index())
        for consumer in list(clone_norm.get_target_inputs()):
            consumer.replace_source_output(normalised.output(0))
    for consumer in list(clone_node.output(0).get_target_inputs()):
        if layer.norm_output is None or consumer.get_node().get_type_name() != "MVN":
            consumer.replace_source_output(stream.output(0))
    return mosaic_scores_to_maps(tail, position, classification_output, layer.height, layer.width, readout,
                                 output_kind)


class ViTReciproCAM(WhiteboxMethod):
    name = "vitreciprocam"
    summary = ("each patch's 3×3 Gaussian neighbourhood of tokens kept alone (CLS kept) where they enter the last "
               "transformer block, scored by the rest of the network")
    xai_name = "VITRECIPROCAM"
    for_transformers = True
    default = True
    #: ``readout``: ``logit`` (default, before a softmax in the graph) or ``probability``.
    options = {"readout": None}

    def find_target(self, model: Any, name: str | None) -> TokenLayer:
        return find_token_layer(model, name)

    def insert(self, work: Any, position: int, target: TokenLayer, options: Mapping[str, Any], *,
               classes: Any | None = None, output_kind: str = "auto") -> Inserted:
        has_softmax = find_softmax(work.outputs[position]) is not None
        readout = resolve_readout(self.name, options.get("readout"), has_softmax, output_kind)
        output, target = with_dynamic_batch(work, position, target, find_token_layer)
        return Inserted(_branch(work, position, target, output, readout, output_kind), target, readout=readout)


METHOD = ViTReciproCAM()
