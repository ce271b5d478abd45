"""Finding a model's outputs by identity or by name, once, with an error when there is no match.

Python wrappers of OpenVINO nodes are recreated on every access, and on OpenVINO 2024 ``node == other``
builds an ``Equal`` op instead of comparing, so nodes are compared by their unique name.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from ov_explain.core.errors import ModelLoadError

logger = logging.getLogger(__name__)


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
