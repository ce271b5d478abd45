"""OpenVINO model_api's ``model_info`` rt_info keys for a :class:`PreprocessSpec`.

model_api (pip ``openvino-model-api``, import ``model_api``) reads an IR's preprocessing from
``rt_info/model_info/<key>`` text values. Its conventions, as read from model_api 0.4.7
(``models/parameters.py``, ``models/types.py``, ``models/image_model.py``,
``adapters/openvino_adapter.py::embed_preprocessing``, ``adapters/utils.py``):

* the caller passes a **BGR** uint8 HWC frame (``cv2.imread``); ``reverse_input_channels`` turns it
  into RGB, then ``(x - mean_values) / scale_values`` runs in pixel units (0..255) in the channel order
  the model receives - the same units and order as ``PreprocessSpec.mean`` / ``std``;
* lists are space-separated (``"123.675 116.28 103.53"``), so each label is one whitespace-free token;
  booleans are ``"True"`` / ``"False"`` (anything other than ``True`` / ``YES`` reads as false);
* ``resize_type``: ``standard`` (stretch), ``fit_to_window_letterbox`` (centred, ``pad_value`` around),
  ``fit_to_window`` (padded bottom/right only) and ``crop`` (the largest centred window, then a resize
  that is always linear; its window has the wrong aspect unless the input is square);
  ``interpolation_mode``: LINEAR, CUBIC or NEAREST (model_api 0.2.x ignores it and resizes linearly);
* ``embedded_processing=True`` means "the graph already takes model_api's frames": model_api then
  feeds the caller's array untouched. There is no layout key: model_api reads the input's layout.

ov_explain's embedded IRs (:meth:`PreprocessSpec.embed`) take **RGB** uint8 NHWC, so they are not
model_api-embedded: they are described as a u8 model whose remaining host steps are the colour swap
(and the fit, unless the graph resizes), which model_api then adds itself.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from ov_explain.core.errors import PreprocessError
from ov_explain.core.preprocess import PreprocessSpec

logger = logging.getLogger(__name__)

#: rt_info section model_api reads; every key below lives at ``[MODEL_INFO, key]``.
MODEL_INFO = "model_info"
#: model_api's wrapper name for single-label classifiers (``ClassificationModel.__model__``).
MODEL_TYPE = "Classification"
#: ov_explain's ``interpolation`` -> model_api's ``interpolation_mode`` (area and lanczos: nearest kin).
INTERPOLATION_MODES = {"linear": "LINEAR", "cubic": "CUBIC", "nearest": "NEAREST", "area": "LINEAR",
                       "lanczos": "CUBIC"}


def model_api_info(spec: PreprocessSpec, labels: Sequence[str] | None, *, embedded: bool) -> dict[str, str]:
    """model_api's ``model_info`` keys (``key -> text value``) describing ``spec``.

    ``embedded`` says the IR is ``spec.embed(...)``'s output (the graph normalises); ``labels`` may be
    None (no ``labels`` key). Parts model_api cannot reproduce are mapped to the closest key it has,
    with a logged warning naming the difference; nothing is dropped silently.
    """
    for caveat in model_api_caveats(spec, embedded=embedded):
        logger.warning("model_api metadata: %s", caveat)
    height, width = spec.size
    info = {
        "model_type": MODEL_TYPE,
        # Written even when false: for an IR with dynamic H/W, model_api's ClassificationModel
        # otherwise treats the model as embedded and skips the host steps (the colour swap) entirely.
        "embedded_processing": "False",
        "resize_type": _resize_type(spec),
        "interpolation_mode": INTERPOLATION_MODES[spec.interpolation],
        "pad_value": str(spec.pad_value),
        # model_api gets BGR frames: an RGB model (and every ov_explain-embedded graph) needs the swap.
        "reverse_input_channels": str(embedded or spec.color == "RGB"),
        # The embedded graph subtracts and divides itself: the host must pass pixels through.
        "mean_values": _numbers((0, 0, 0) if embedded else spec.mean),
        "scale_values": _numbers((1, 1, 1) if embedded else spec.std),
        "orig_height": str(height),
        "orig_width": str(width),
    }
    if labels is not None:
        info["labels"] = _labels(labels)
    return info


def model_api_caveats(spec: PreprocessSpec, *, embedded: bool) -> list[str]:
    """Where model_api's preprocessing of an IR described by :func:`model_api_info` differs from ``spec``."""
    if embedded and spec.embeds_resize:
        return []  # the graph resizes, colours and normalises; model_api only swaps BGR -> RGB
    caveats = []
    resize_type = _resize_type(spec)
    if spec.resize == "center_crop":
        if resize_type == "standard":
            caveats.append(f"model_api's 'crop' takes a window of the wrong aspect for a non-square input "
                           f"{spec.size[0]}x{spec.size[1]} (model_api 0.4.7), so resize_type is 'standard': "
                           "model_api stretches the whole image instead of cropping its centre")
        else:
            if spec.crop_fraction != 1:
                caveats.append(f"model_api has no crop fraction: its 'crop' keeps the whole short side, "
                               f"where this spec keeps {spec.crop_fraction:g} of it, so the model sees more "
                               "context")
            if spec.interpolation != "linear":
                caveats.append(f"model_api's 'crop' always resizes linearly, not with {spec.interpolation!r}")
            caveats.append("model_api crops before resizing and ov_explain after: pixels may differ slightly")
    if resize_type != "crop" and spec.interpolation in ("area", "lanczos"):
        caveats.append(f"model_api has no {spec.interpolation!r} interpolation: "
                       f"it resizes with {INTERPOLATION_MODES[spec.interpolation]} instead")
    if resize_type != "crop" and spec.interpolation == "nearest":
        caveats.append("model_api's NEAREST is OpenVINO's, which picks different source pixels than OpenCV's")
    return caveats


def add_model_api_info(model: Any, spec: PreprocessSpec, labels: Sequence[str] | None, *,
                       embedded: bool) -> dict[str, str]:
    """Write :func:`model_api_info`'s keys into ``model``'s rt_info (in place) and return them.

    model_api has no layout key and reads the input's layout, guessing from the shape when it is
    unset, so an unset input layout is set to ``spec.layout`` (NHWC for an embedded graph).
    """
    if len(model.inputs) != 1:
        raise PreprocessError(f"model_api's Classification wrapper takes one input, this model has "
                              f"{len(model.inputs)}")
    info = model_api_info(spec, labels, embedded=embedded)
    for key, value in info.items():
        model.set_rt_info(value, [MODEL_INFO, key])
    parameter = model.get_parameters()[0]
    if parameter.get_layout().empty:
        import openvino as ov

        parameter.set_layout(ov.Layout("NHWC" if embedded else spec.layout))
    shape = model.inputs[0].get_partial_shape()
    if not (embedded and spec.embeds_resize) and shape.rank.is_static and shape.rank.get_length() == 4:
        layout = "NHWC" if embedded else spec.layout
        spatial = (shape[1], shape[2]) if layout == "NHWC" else (shape[2], shape[3])
        if any(dim.is_dynamic for dim in spatial):
            logger.warning("model_api metadata: the input's height/width are dynamic, so model_api will "
                           "not resize images to %dx%d; pass them already fitted", *spec.size)
    return info


def _resize_type(spec: PreprocessSpec) -> str:
    if spec.resize == "letterbox":
        return "fit_to_window_letterbox"
    if spec.resize == "center_crop" and spec.size[0] == spec.size[1]:
        return "crop"
    return "standard"


def _numbers(values: Sequence[float]) -> str:
    """Space-separated, integers without a fraction, others at full float precision."""
    return " ".join(str(int(v)) if float(v).is_integer() else repr(float(v)) for v in values)


def _labels(labels: Sequence[str]) -> str:
    """One token per class: model_api splits ``labels`` on whitespace, so inner spaces become ``_``."""
    tokens, renamed, empty = [], 0, []
    for index, label in enumerate(labels):
        token = re.sub(r"\s+", "_", str(label).strip())
        if not token:
            token = f"#{index}"  # an empty token would shift every later label by one
            empty.append(index)
        elif token != label:
            renamed += 1
        tokens.append(token)
    if renamed:
        logger.info("model_api metadata: %d label(s) have whitespace written as '_' (model_api splits labels "
                    "on whitespace)", renamed)
    if empty:
        logger.warning("model_api metadata: label(s) %s are empty; written as '#<index>'", empty)
    return " ".join(tokens)
