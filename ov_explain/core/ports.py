"""Finding a model's outputs by identity or by name, once, with an error when there is no match.

Python wrappers of OpenVINO nodes are recreated on every access, and on OpenVINO 2024 ``node == other``
builds an ``Equal`` op instead of comparing, so nodes are compared by their unique name.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from ov_explain.core.errors import ModelLoadError

logger = logging.getLogger(__name__)

#: What a classifier outputs: decided from the graph and values (auto), or said by the user.
OUTPUT_KINDS = ("auto", "logits", "probabilities")


def node_key(node: Any) -> str:
    """A stable identity for a node (its unique name)."""
    return node.get_name()


def output_position(outputs: Sequence[Any], port: Any) -> int:
    """Position of ``port`` (an output of the same model) among ``outputs``."""
    wanted = (node_key(port.get_node()), port.get_index())
    for position, candidate in enumerate(outputs):
        if (node_key(candidate.get_node()), candidate.get_index()) == wanted:
            return position
    raise ModelLoadError(f"output {sorted(port.get_names()) or wanted[0]} is not among the model's outputs")


def output_named(outputs: Sequence[Any], name: str) -> int:
    """Position of the output whose tensor is called ``name``."""
    for position, candidate in enumerate(outputs):
        if name in candidate.get_names():
            return position
    found = ", ".join(sorted(n for o in outputs for n in o.get_names())) or "none"
    raise ModelLoadError(f"the model has no output named {name!r} (outputs: {found})")


def classification_output(model: Any, path: Path) -> Any:
    """The output holding class scores: shape (N, C) or (N, C, 1, 1); never a saliency map."""
    candidates = []
    for port in model.outputs:
        names = port.get_names()
        shape = port.get_partial_shape()
        if "saliency_map" in names or shape.rank.is_dynamic:
            continue
        dims = list(shape)[1:]
        if dims and dims[0].is_static and all(d.is_static and d.get_length() == 1 for d in dims[1:]):
            candidates.append(port)
    if not candidates:
        shapes = ", ".join(str(p.get_partial_shape()) for p in model.outputs)
        raise ModelLoadError(f"{path}: no classification output of shape (N, num_classes) (outputs: {shapes})")
    if len(model.inputs) != 1:
        raise ModelLoadError(f"{path}: expected a single image input, the model has {len(model.inputs)}")
    return candidates[0]


def output_softmax(port: Any) -> Any | None:
    """The Softmax node that produces the output ``port`` (through Result / shape ops / Convert), if any."""
    node = port.get_node()
    for _ in range(4):  # walk up through Result / Reshape / Convert to the producing op
        kind = node.get_type_name()
        if kind in ("Softmax", "SoftMax"):
            return node
        if kind not in ("Result", "Reshape", "Squeeze", "Convert", "Unsqueeze"):
            return None
        node = node.input_value(0).get_node()
    return None
