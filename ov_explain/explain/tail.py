"""The network's tail run on a mosaic batch: a clone of the graph cut at a layer, fed masked copies.

Mosaic methods (ReciproCAM without its shortcut, ViT-ReciproCAM) rewire a clone's consumers of the
cut layer to an (N * copies)-sized batch built on the original graph, so one inference gives every
masked copy's scores. A tail may also read values from *before* the cut: a CLS token broadcast to
the batch size taken from the patch embedding's shape (CaiT, XCiT), split sizes taken from an
earlier block (EVA-02), another branch's tokens (CrossViT), an outer residual (EdgeNeXt). In the
clone those reach back to the clone's own input, which the new model does not declare.
:meth:`TailClone.feed_from_before_the_cut` re-derives each from the original graph instead: a
tensor is repeated ``copies`` times per image (the copy of image ``n``, cell ``k`` sits at
``n * copies + k``, as in the mosaic), and a shape computed from such a tensor gets its batch
multiplied by ``copies``.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

import numpy as np

from ov_explain.core._compat import opset
from ov_explain.core.ports import node_key
from ov_explain.explain.base import WhiteboxUnsupportedError
from ov_explain.explain.graph import _is_constant_subgraph

logger = logging.getLogger(__name__)


def _downstream(work: Any, cut_names: Iterable[str]) -> set[str]:
    """Friendly names of the nodes of ``work`` that depend on any cut node (the cut nodes excluded)."""
    cut = set(cut_names)
    starts = [n for n in work.get_ordered_ops() if n.get_friendly_name() in cut]
    found: set[str] = set()
    stack = [t.get_node() for n in starts for o in n.outputs() for t in o.get_target_inputs()]
    while stack:
        node = stack.pop()
        name = node.get_friendly_name()
        if name in found:
            continue
        found.add(name)
        stack.extend(t.get_node() for o in node.outputs() for t in o.get_target_inputs())
    return found


def repeat_per_image(value: Any, copies: int) -> Any:
    """(N, ...) -> (N * copies, ...): each image's value ``copies`` times in a row (the mosaic's order)."""
    shape = opset.shape_of(value, "i64")
    batch = opset.gather(shape, np.array([0], np.int64), np.int64(0))
    rest = opset.slice(shape, np.array([1], np.int64), np.array([np.iinfo(np.int64).max], np.int64),
                       np.array([1], np.int64))
    target = opset.concat([batch, opset.constant(np.array([copies], np.int64)), rest], 0)
    repeated = opset.broadcast(opset.unsqueeze(value, np.array([1], np.int64)), target)
    return opset.reshape(repeated, opset.concat([opset.constant(np.array([-1], np.int64)), rest], 0),
                         special_zero=False)


class TailClone:
    """A clone of ``work`` to rewire at the cut; the original graph feeds it."""

    def __init__(self, work: Any, cut_names: Iterable[str]):
        self.work = work
        self.cut_names = tuple(cut_names)
        self.clone = work.clone()
        ops = list(self.clone.get_ordered_ops())
        self._own = {node_key(n) for n in ops}
        self._nodes = {n.get_friendly_name(): n for n in ops}
        self._work_nodes = {n.get_friendly_name(): n for n in work.get_ordered_ops()}
        self._downstream = _downstream(work, self.cut_names)

    def node(self, name: str) -> Any:
        """The clone's node of that friendly name."""
        return self._nodes[name]

    def scores(self, position: int) -> Any:
        """The value the clone's classification Result reads."""
        return self.clone.get_results()[position].input_value(0)

    def feed_from_before_the_cut(self, position: int, copies: int) -> None:
        """Rewire every tail input that still reads the clone's part before the cut (see the module)."""
        stack, seen = [self.clone.get_results()[position]], set()
        fed = 0
        while stack:
            node = stack.pop()
            if node_key(node) in seen:
                continue
            seen.add(node_key(node))
            for port in node.inputs():
                source = port.get_source_output()
                producer = source.get_node()
                if node_key(producer) not in self._own:
                    continue  # built on the original graph (the mosaic): nothing to mend
                if producer.get_friendly_name() in self._downstream:
                    stack.append(producer)
                elif not _is_constant_subgraph(source, limit=1 << 30):  # reads an input: a value from before the cut
                    port.replace_source_output(self._from_work(source, copies))
                    fed += 1
        if fed:
            logger.info("the tail after %s reads %d value(s) from before the cut: fed from the original graph",
                        ", ".join(self.cut_names), fed)

    def _from_work(self, source: Any, copies: int) -> Any:
        """The original graph's value for a clone value from before the cut, at the mosaic's batch."""
        if not source.get_element_type().is_integral():
            return repeat_per_image(self._work_output(source), copies).output(0)
        self._scale_shapes(source, copies)
        return source  # the clone's own shape arithmetic, now computed from the original graph's shapes

    def _work_output(self, source: Any) -> Any:
        name = source.get_node().get_friendly_name()
        if name not in self._work_nodes:
            raise WhiteboxUnsupportedError(f"the tail reads {name!r} from before the cut, which the graph does "
                                           "not name uniquely")
        return self._work_nodes[name].output(source.get_index())

    def _scale_shapes(self, source: Any, copies: int) -> None:
        """Every ShapeOf behind an integer value: the original tensor's shape with its batch times ``copies``."""
        stack, seen, shapes = [source.get_node()], set(), []
        while stack:
            node = stack.pop()
            if node_key(node) in seen or node_key(node) not in self._own:
                continue
            seen.add(node_key(node))
            if node.get_type_name() == "ShapeOf":
                shapes.append(node)
                continue
            if node.get_type_name() == "Parameter":
                raise WhiteboxUnsupportedError(f"the tail reads a value computed from the input's pixels before "
                                               f"the cut ({source.get_node().get_friendly_name()})")
            stack.extend(i.get_source_output().get_node() for i in node.inputs())
        for shape_of in shapes:
            measured = self._work_output(shape_of.input_value(0))
            kind = shape_of.get_output_element_type(0).get_type_name()  # "i64" or "i32"
            original = opset.shape_of(measured, kind)
            rank = measured.get_partial_shape().rank.get_length()
            factor = np.ones(rank, np.int64 if kind == "i64" else np.int32)
            factor[0] = copies
            scaled = opset.multiply(original, factor)
            for consumer in list(shape_of.output(0).get_target_inputs()):
                consumer.replace_source_output(scaled.output(0))
