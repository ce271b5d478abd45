"""White-box methods as graph surgery: a ``saliency_map`` output is added to the classifier's IR.

The method (from :mod:`ov_explain.explain.registry`) finds where it attaches and adds its branch;
this module clones the model, checks the graph is one the method can serve, names the output and
records how the maps were built in the IR's rt_info, so an exported IR explains itself.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from ov_explain.core._compat import opset
from ov_explain.core.errors import last_line
from ov_explain.core.ports import output_position
from ov_explain.explain.base import ExplainError, WhiteboxUnsupportedError
from ov_explain.explain.graph import is_transformer, with_visible_head
from ov_explain.explain.method import WhiteboxMethod
from ov_explain.explain.registry import default_whitebox_method, get_method, method_names

logger = logging.getLogger(__name__)

SALIENCY_OUTPUT = "saliency_map"
#: (N, k) class indices of the rows of ``saliency_map`` when maps were selected in the graph.
CLASSES_OUTPUT = "saliency_classes"
#: (N, K or k) booleans (u8): maps whose probability read-out was degenerate and that hold the logit read-out.
FALLBACK_OUTPUT = "saliency_logit_fallback"
RT_INFO_XAI = ["model_info", "ov_explain_xai"]


@dataclass(frozen=True)
class MapSelection:
    """Which classes get maps in the graph: all of them, each image's top ``k``, fixed classes, or
    classes ``given`` with each inference (a second input, ``saliency_classes``, (N, k) int32: for the
    explainer's own graphs; an exported IR has the one image input, so ``parse`` never gives it)."""

    kind: str = "all"  # "all" | "top" | "classes" | "given"
    k: int = 0
    classes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("all", "top", "classes", "given"):
            raise ExplainError(f"expected all, top-K or class indices, got kind {self.kind!r}")
        if self.kind == "top" and self.k < 1:
            raise ExplainError(f"top-K needs K >= 1, got {self.k}")
        if self.kind == "classes" and not self.classes:
            raise ExplainError("an empty class list")

    @property
    def selects(self) -> bool:
        return self.kind != "all"

    def describe(self) -> str:
        if self.kind in ("top", "given"):
            return f"top-{self.k}" if self.kind == "top" else "given"
        return "all" if self.kind == "all" else ",".join(map(str, self.classes))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "k": self.k, "classes": list(self.classes)}

    @classmethod
    def parse(cls, text: str, resolve: Any = int) -> "MapSelection":
        """``all``, ``top-K`` or comma-separated classes (``resolve`` turns one into an index)."""
        text = text.strip()
        if text.lower() == "all":
            return cls()
        if text.lower().startswith("top-"):
            try:
                return cls("top", k=int(text[4:]))
            except ValueError:
                raise ExplainError(f"expected top-K with an integer K, got {text!r}") from None
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise ExplainError(f"expected all, top-K or class indices, got {text!r}")
        return cls("classes", classes=tuple(dict.fromkeys(resolve(item) for item in items)))


ALL_MAPS = MapSelection()
MapsArg = Union[MapSelection, str, None]


@dataclass(frozen=True)
class XaiModel:
    """A model with prediction and saliency outputs, and how the saliency was built."""

    model: Any
    method: str
    target_layer: str
    shortcut: bool
    map_size: tuple[int, int]
    readout: str | None = None
    maps: MapSelection = ALL_MAPS
    #: Whether the method itself computed only the selected classes' maps (else all, then gathered).
    selected_in_method: bool = False


def whitebox_method(model: Any, method: str | None, position: int = 0,
                    target_layer: str | None = None) -> WhiteboxMethod:
    """The named white-box method, or the graph's default: ViT-ReciproCAM for transformers; for CNNs,
    CAM where the head after the feature map is pooling + linear, else ReciproCAM."""
    if method is None:
        return default_whitebox_method(model, position, target_layer=target_layer)
    found = get_method(method)
    if not isinstance(found, WhiteboxMethod):
        raise ExplainError(f"{found.name} is a black-box method; white-box ones: "
                           f"{', '.join(method_names('whitebox', task='classification'))}")
    if found.task != "classification":
        known = ", ".join(method_names("whitebox", "classification"))
        raise ExplainError(f"method {found.name} explains {found.task} models, not classification models "
                           f"(white-box methods for classification: {known})")
    return found


def _class_indices(scores: Any, selection: MapSelection) -> Any:
    """(N, k) int32 class indices in the graph: each image's top k (by score), fixed classes, or an input."""
    import openvino as ov

    if selection.kind == "given":
        given = opset.parameter([-1, -1], ov.Type.i32, name=CLASSES_OUTPUT)
        given.output(0).get_tensor().set_names({CLASSES_OUTPUT})
        return given.output(0)
    flat = opset.reshape(scores, np.array([0, -1], np.int64), special_zero=True)
    if selection.kind == "top":
        return opset.topk(flat, np.int64(selection.k), -1, "max", "value", ov.Type.i32).output(1)
    fixed = np.array(selection.classes, np.int32)
    batch = opset.gather(opset.shape_of(flat), np.array([0], np.int64), np.int64(0))
    shape = opset.concat([batch, opset.constant(np.array([len(fixed)], np.int64))], 0)
    return opset.broadcast(opset.constant(fixed), shape).output(0)


def _scores(work: Any, position: int) -> Any:
    """The value the classification Result reads (a Result's own output cannot feed other nodes)."""
    return work.get_results()[position].input_value(0)


def _check_selection(selection: MapSelection, num_classes: int) -> None:
    if selection.kind == "top" and selection.k > num_classes:
        raise ExplainError(f"maps: top-{selection.k} asked of a model with {num_classes} classes")
    bad = [c for c in selection.classes if not 0 <= c < num_classes]
    if bad:
        raise ExplainError(f"maps: class index {bad[0]} is out of range for {num_classes} classes")


def build_xai_model(model: Any, classification_output: Any, method: str | None = "reciprocam", *,
                    target_layer: str | None = None, maps: MapsArg = None, output_kind: str = "auto",
                    **options: Any) -> XaiModel:
    """A new model: the classifier's outputs plus ``saliency_map`` (N, K, h, w), or (N, 1, h, w) for a
    class-agnostic method. ``method=None`` picks the graph's default (:func:`whitebox_method`);
    ``options`` are the method's (e.g. ReciproCAM's ``shortcut``, ``readout``).

    ``maps`` (a :class:`MapSelection`, ``"all"``, ``"top-K"`` or ``"3,7"``) selects the classes in the
    graph: ``saliency_map`` is then (N, k, h, w) and ``saliency_classes`` (N, k) says whose maps they
    are. Methods that can (ReciproCAM's shortcut with the logit read-out, CAM) compute only those
    maps; the others compute all and the graph keeps the selected ones. ``output_kind`` is the
    classifier's reading of the output (``probabilities`` or logits), for the read-out.
    """
    import openvino as ov

    selection = maps if isinstance(maps, MapSelection) else MapSelection.parse(maps) if maps else ALL_MAPS

    position = output_position(model.outputs, classification_output)
    chosen = whitebox_method(model, method, position, target_layer)
    work = model.clone()
    if not chosen.for_transformers and options.get("shortcut") is not False:
        # Only when the head can be used as a formula: folding would bake a static batch into shape
        # computations that the mosaic makes dynamic.
        work = with_visible_head(work, position, target_layer)
    if not chosen.for_transformers and target_layer is None and is_transformer(work):
        # Its rank-4 tensors are patch embeddings or attention scores, not a CNN feature map.
        raise WhiteboxUnsupportedError(f"{chosen.name} needs a CNN feature map, and this model is a vision "
                                       "transformer: use vitreciprocam")
    target = chosen.find_target(work, target_layer)
    # After the graph search: on a graph with no place for the method, ``auto`` hands them to black-box.
    options = chosen.check_options(options)
    if chosen.class_agnostic:
        selection = ALL_MAPS  # one map per image: nothing to select
    _check_selection(selection, work.outputs[position].get_partial_shape()[1].get_length())
    classes = _class_indices(_scores(work, position), selection) if selection.selects else None
    try:
        inserted = chosen.insert(work, position, target, options, classes=classes, output_kind=output_kind)
        target = inserted.target
        saliency = inserted.maps
        if classes is not None and not inserted.selected:
            # The method computed every class (a mosaic, or probabilities that need all scores): keep the asked ones.
            # Top-k indices come from the graph the method may have reshaped, so they are taken again from it.
            if selection.kind == "top":
                classes = _class_indices(_scores(work, position), selection)
            saliency = opset.gather(saliency, classes, np.int64(1), 1)
    except RuntimeError as exc:  # OpenVINO refused a reshape of the cloned tail (e.g. a hard-coded batch)
        raise WhiteboxUnsupportedError(f"{chosen.name} cannot be built on this graph ({last_line(exc)})") from None
    saliency = opset.convert(saliency, ov.Type.f32)
    saliency.output(0).get_tensor().set_names({SALIENCY_OUTPUT})
    extra, parameters = [saliency.output(0)], list(work.get_parameters())
    if selection.kind == "given":
        parameters.append(classes.get_node())
    elif classes is not None:
        extra.append(opset.convert(classes, ov.Type.i32).output(0))
        extra[-1].get_tensor().set_names({CLASSES_OUTPUT})
    if inserted.logit_fallback is not None:
        fallback = inserted.logit_fallback
        if classes is not None and not inserted.selected:
            fallback = opset.gather(fallback, classes, np.int64(1), 1)
        extra.append(opset.convert(fallback, ov.Type.u8).output(0))
        extra[-1].get_tensor().set_names({FALLBACK_OUTPUT})
    results = [r.output(0) for r in work.get_results()]
    try:
        xai = ov.Model([r.input_value(0) for r in work.get_results()] + extra, parameters,
                       f"{work.get_friendly_name()}_xai")
    except RuntimeError as exc:  # the cloned tail still reads something from before the target layer
        raise WhiteboxUnsupportedError(f"{chosen.name} cannot cut the graph at {target.name}: "
                                       f"{last_line(exc)}") from None
    for original, new in zip(results, xai.outputs):
        names = original.get_names()
        if names:
            new.get_tensor().set_names(set(names))
    _copy_rt_info(model, xai)
    info = {"method": chosen.name, "target_layer": target.name, "shortcut": inserted.shortcut,
            "map_size": [target.height, target.width], "readout": inserted.readout, "maps": selection.to_dict()}
    xai.set_rt_info(json.dumps(info), RT_INFO_XAI)
    logger.info("inserted %s at %s (%dx%d, %s maps, %s read-out)%s", chosen.name, target.name, target.height,
                target.width, selection.describe(), inserted.readout or "no", " via the algebraic shortcut"
                if inserted.shortcut else "")
    return XaiModel(xai, chosen.name, target.name, inserted.shortcut, (target.height, target.width),
                    inserted.readout, selection, inserted.selected)


def _copy_rt_info(source: Any, destination: Any) -> None:
    """Keep the preprocessing spec (and model name) with the model, as the classifier reads them."""
    from ov_explain.core.preprocess import RT_INFO_EMBEDDED_KEY, RT_INFO_KEY, rt_info_str

    for key in (RT_INFO_KEY, RT_INFO_EMBEDDED_KEY, ["model_info", "model_name"]):
        if source.has_rt_info(key):
            destination.set_rt_info(rt_info_str(source.get_rt_info(key)), key)


def read_xai_info(model: Any) -> dict | None:
    """The method info an exported XAI IR carries, if it has a ``saliency_map`` output."""
    if not any(SALIENCY_OUTPUT in o.get_names() for o in model.outputs):
        return None
    if model.has_rt_info(RT_INFO_XAI):
        from ov_explain.core.preprocess import rt_info_str

        return json.loads(rt_info_str(model.get_rt_info(RT_INFO_XAI)))
    return {"method": "unknown", "target_layer": None, "shortcut": None, "map_size": None, "readout": None}


def selection_from_info(info: dict) -> MapSelection:
    """The map selection an exported XAI IR was built with (older exports: all maps)."""
    maps = info.get("maps") or {}
    return MapSelection(maps.get("kind", "all"), int(maps.get("k", 0)), tuple(maps.get("classes", ())))
