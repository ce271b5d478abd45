"""White-box methods as graph surgery: a ``saliency_map`` output is added to the classifier's IR.

The method (from :mod:`ov_explain.explain.registry`) finds where it attaches and adds its branch;
this module clones the model, checks the graph is one the method can serve, names the output and
records how the maps were built in the IR's rt_info, so an exported IR explains itself.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from .._compat import opset
from ..errors import last_line
from ..ports import output_position
from .base import ExplainError, WhiteboxUnsupportedError
from .graph import is_transformer
from .method import WhiteboxMethod
from .registry import default_whitebox_method, get_method, method_names

logger = logging.getLogger(__name__)

SALIENCY_OUTPUT = "saliency_map"
RT_INFO_XAI = ["model_info", "ov_explain_xai"]


@dataclass(frozen=True)
class XaiModel:
    """A model with prediction and saliency outputs, and how the saliency was built."""

    model: Any
    method: str
    target_layer: str
    shortcut: bool
    map_size: tuple[int, int]


def whitebox_method(model: Any, method: str | None) -> WhiteboxMethod:
    """The named white-box method, or the graph's default (ViT-ReciproCAM for transformers)."""
    if method is None:
        return default_whitebox_method(model)
    found = get_method(method)
    if not isinstance(found, WhiteboxMethod):
        raise ExplainError(f"{found.name} is a black-box method; white-box ones: "
                           f"{', '.join(method_names('whitebox'))}")
    return found


def build_xai_model(model: Any, classification_output: Any, method: str | None = "reciprocam", *,
                    target_layer: str | None = None, **options: Any) -> XaiModel:
    """A new model: the classifier's outputs plus ``saliency_map`` (N, K, h, w), or (N, 1, h, w) for a
    class-agnostic method. ``method=None`` picks ViT-ReciproCAM for transformers and ReciproCAM
    otherwise; ``options`` are the method's (e.g. ReciproCAM's ``shortcut``)."""
    import openvino as ov

    chosen = whitebox_method(model, method)
    work = model.clone()
    position = output_position(model.outputs, classification_output)
    if not chosen.for_transformers and target_layer is None and is_transformer(work):
        # Its rank-4 tensors are patch embeddings or attention scores, not a CNN feature map.
        raise WhiteboxUnsupportedError(f"{chosen.name} needs a CNN feature map, and this model is a vision "
                                       "transformer: use vitreciprocam")
    target = chosen.find_target(work, target_layer)
    # After the graph search: on a graph with no place for the method, ``auto`` hands them to black-box.
    options = chosen.check_options(options)
    try:
        inserted = chosen.insert(work, position, target, options)
    except RuntimeError as exc:  # OpenVINO refused a reshape of the cloned tail (e.g. a hard-coded batch)
        raise WhiteboxUnsupportedError(f"{chosen.name} cannot be built on this graph ({last_line(exc)})") from None
    target = inserted.target
    maps = opset.convert(inserted.maps, ov.Type.f32)
    maps.output(0).get_tensor().set_names({SALIENCY_OUTPUT})
    results = [r.output(0) for r in work.get_results()]
    try:
        xai = ov.Model([r.input_value(0) for r in work.get_results()] + [maps.output(0)], work.get_parameters(),
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
            "map_size": [target.height, target.width]}
    xai.set_rt_info(json.dumps(info), RT_INFO_XAI)
    logger.info("inserted %s at %s (%dx%d)%s", chosen.name, target.name, target.height, target.width,
                " via the algebraic shortcut" if inserted.shortcut else "")
    return XaiModel(xai, chosen.name, target.name, inserted.shortcut, (target.height, target.width))


def _copy_rt_info(source: Any, destination: Any) -> None:
    """Keep the preprocessing spec (and model name) with the model, as the classifier reads them."""
    from ..preprocess import RT_INFO_EMBEDDED_KEY, RT_INFO_KEY, rt_info_str

    for key in (RT_INFO_KEY, RT_INFO_EMBEDDED_KEY, ["model_info", "model_name"]):
        if source.has_rt_info(key):
            destination.set_rt_info(rt_info_str(source.get_rt_info(key)), key)


def read_xai_info(model: Any) -> dict | None:
    """The method info an exported XAI IR carries, if it has a ``saliency_map`` output."""
    if not any(SALIENCY_OUTPUT in o.get_names() for o in model.outputs):
        return None
    if model.has_rt_info(RT_INFO_XAI):
        from ..preprocess import rt_info_str

        return json.loads(rt_info_str(model.get_rt_info(RT_INFO_XAI)))
    return {"method": "unknown", "target_layer": None, "shortcut": None, "map_size": None}
