"""Preprocessing written for other tools, read as a :class:`PreprocessSpec`.

Understood: ov_explain's own spec (strict), timm's ``pretrained_cfg`` (alone, or inside a timm hub
``config.json``) and a Hugging Face ``preprocessor_config.json`` (image processors and the legacy
feature extractors). These ecosystems feed RGB; the layout is not in their files, so the caller
passes the model's. ``mean`` / ``std`` come out in pixel units (0..255).

Rounding: timm and Hugging Face compute the resized short side as ``floor(size / crop_pct)``
(``int(...)``); the spec's ``crop_fraction`` is chosen as ``size / that`` so the short side matches
exactly. The long side is rounded by OpenCV's resize here and truncated by torchvision / PIL there:
at most one pixel of difference, before the centre crop.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from ov_explain.core.errors import PreprocessError
from ov_explain.core.preprocess import PreprocessSpec

logger = logging.getLogger(__name__)

FORMATS = ("an ov_explain spec", "a timm pretrained_cfg or hub config.json",
           "a Hugging Face preprocessor_config.json")
SPEC_KEYS = frozenset(f.name for f in dataclasses.fields(PreprocessSpec)) - {"extra"}
#: Keys only a timm pretrained_cfg (or hub config) has.
TIMM_KEYS = frozenset({"input_size", "crop_pct", "crop_mode", "pretrained_cfg", "default_cfg", "test_input_size",
                       "test_crop_pct", "fixed_input_size", "architecture"})
HF_TYPE_KEYS = ("image_processor_type", "feature_extractor_type")
#: timm's default when a pretrained_cfg has no crop_pct (timm.data.DEFAULT_CROP_PCT).
TIMM_DEFAULT_CROP_PCT = 0.875
#: Processors whose integer ``size`` means the shortest edge (transformers' ``default_to_square=False``).
HF_SHORTEST_EDGE_FAMILIES = ("ConvNext", "CLIP", "Bit")
#: Processors whose behaviour was checked against transformers; others are read as the generic
#: resize / centre crop / rescale / normalize, with a warning.
HF_KNOWN_FAMILIES = ("ViT", "DeiT", "Beit", "ConvNext", "CLIP", "Bit")


def detect_format(data: Any) -> str | None:
    """``"ov_explain"``, ``"timm"``, ``"hf"`` or None (unknown) for a parsed JSON value."""
    if not isinstance(data, dict):
        return None
    keys = set(data)
    if keys <= SPEC_KEYS:
        return "ov_explain"
    if any(k in data for k in HF_TYPE_KEYS) or "image_mean" in data or "image_std" in data:
        return "hf"
    if keys & TIMM_KEYS:
        return "timm"
    return None


def describe(data: dict[str, Any], kind: str) -> str:
    """What a file of format ``kind`` is, for messages and origins ("Hugging Face ViTImageProcessor")."""
    if kind == "ov_explain":
        return "ov_explain spec"
    if kind == "timm":
        return "timm pretrained_cfg"
    name = next((str(data[k]) for k in HF_TYPE_KEYS if data.get(k)), "image processor")
    return f"Hugging Face {name}"


def spec_from_dict(data: Any, *, layout: str = "NCHW", source: str = "preprocessing config"
                   ) -> tuple[PreprocessSpec, str]:
    """The spec a parsed config describes and what it was (see :func:`describe`); ``layout`` is the
    model's input layout, used for foreign formats (an ov_explain spec carries its own)."""
    kind = detect_format(data)
    if kind is None and isinstance(data, dict) and not set(data) & SPEC_KEYS:
        raise PreprocessError(f"{source}: not a preprocessing config ov_explain understands (it reads "
                              f"{', '.join(FORMATS[:-1])} or {FORMATS[-1]}); keys: {sorted(data)[:8]}")
    if kind in (None, "ov_explain"):  # a spec with unknown keys: from_dict names them
        return PreprocessSpec.from_dict(data, source=source), describe({}, "ov_explain")
    what = describe(data, kind)
    convert = spec_from_timm if kind == "timm" else spec_from_hf
    try:
        return convert(data, layout=layout), what
    except PreprocessError as exc:
        raise PreprocessError(f"{source}: {what}: {exc}") from None


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file's value, or one PreprocessError line naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PreprocessError(f"{path}: preprocessing spec not found") from None
    except IsADirectoryError:
        raise PreprocessError(f"{path}: is a folder, not a preprocessing spec") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PreprocessError(f"{path}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise PreprocessError(f"{path}: cannot read ({exc.strerror or exc})") from None


def load_spec_file(path: str | os.PathLike, *, layout: str = "NCHW") -> tuple[PreprocessSpec, str]:
    """A file the user named, in any understood format, strictly: the spec and its origin
    ("timm pretrained_cfg config.json")."""
    spec, what = spec_from_dict(read_json(path), layout=layout, source=str(path))
    return spec, f"{what} {path}"


def load_sidecar(path: str | os.PathLike, *, layout: str = "NCHW") -> tuple[PreprocessSpec | None, str]:
    """A spec file found beside a model: (spec, origin), or (None, why) after one warning when it is
    not an ov_explain spec (another tool's config, unknown keys, unreadable JSON).

    An ov_explain spec (only known keys) with a bad value is still an error: the file follows our
    naming and our keys, so it is meant for us, and ignoring it would give wrong results silently.
    """
    try:
        data = read_json(path)
    except PreprocessError as exc:
        logger.warning("%s: ignored (a preprocessing spec beside the model must be valid JSON); pass "
                       "--preprocess to use another file", exc)
        return None, str(exc)
    kind = detect_format(data)
    if kind == "ov_explain":
        return PreprocessSpec.from_dict(data, source=str(path)), f"ov_explain spec {path}"
    if kind is None:
        detail = (f"unknown key(s) {sorted(set(data) - SPEC_KEYS)}" if isinstance(data, dict)
                  else f"a JSON {type(data).__name__}")
        why = f"{path} is not an ov_explain spec ({detail}): ignored"
    else:
        why = (f"{path} is a {describe(data, kind)}, not an ov_explain spec: ignored; pass --preprocess {path} "
               "to use it")
    logger.warning("%s", why)
    return None, why


# ----- timm ---------------------------------------------------------------------------------------
def spec_from_timm(data: dict[str, Any], *, layout: str = "NCHW") -> PreprocessSpec:
    """A timm ``pretrained_cfg`` (or a hub ``config.json`` holding one) as a spec.

    Read: ``input_size``, ``interpolation``, ``mean``, ``std``, ``crop_pct`` (timm's 0.875 when
    absent) and ``crop_mode``. ``test_input_size`` / ``test_crop_pct`` are not used: timm's own
    evaluation uses them only when asked to.
    """
    cfg = dict(data)
    for nested in ("pretrained_cfg", "default_cfg"):
        if isinstance(data.get(nested), dict):
            cfg = {**{k: v for k, v in data.items() if k != nested}, **data[nested]}
            break
    missing = [k for k in ("input_size", "interpolation", "mean", "std") if k not in cfg]
    if missing:
        raise PreprocessError(f"no {missing} (a pretrained_cfg lists input_size, interpolation, mean and std)")
    size = _timm_size(cfg["input_size"])
    crop_pct = cfg.get("crop_pct")
    crop_pct = TIMM_DEFAULT_CROP_PCT if crop_pct is None else crop_pct
    if isinstance(crop_pct, bool) or not isinstance(crop_pct, (int, float)) or not 0 < crop_pct <= 1:
        raise PreprocessError(f"crop_pct must be a number in (0, 1], got {crop_pct!r}")
    mode = cfg.get("crop_mode") or "center"
    common = dict(size=size, interpolation=cfg["interpolation"], mean=_scaled(cfg["mean"], 255.0, "mean"),
                  std=_scaled(cfg["std"], 255.0, "std"), color="RGB", layout=layout)
    if mode == "squash":
        if crop_pct != 1:
            raise PreprocessError(f"crop_mode 'squash' with crop_pct {crop_pct} (stretch to size / crop_pct, then "
                                  "crop) has no PreprocessSpec equivalent; only crop_pct 1.0 (a plain stretch)")
        return PreprocessSpec(resize="stretch", **common)
    if mode != "center":
        raise PreprocessError(f"crop_mode {mode!r} is not supported (supported: 'center', and 'squash' with "
                              "crop_pct 1.0)")
    return PreprocessSpec(resize="center_crop", crop_fraction=_crop_fraction(size, crop_pct), **common)


def _timm_size(value: Any) -> tuple[int, int]:
    """(H, W) from timm's ``input_size`` [C, H, W]."""
    if isinstance(value, (list, tuple)) and len(value) == 3:
        return value[1], value[2]
    raise PreprocessError(f"input_size must be [channels, height, width], got {value!r}")


def _crop_fraction(size: tuple[int, int], crop_pct: float) -> float:
    """The spec's crop_fraction for ``size`` and a timm / HF crop_pct: the resized short side is
    ``floor(size / crop_pct)`` as theirs is (for a non-square size, crop_pct itself)."""
    height, width = size
    if height != width:
        return float(crop_pct)
    return height / max(height, math.floor(height / crop_pct))


# ----- Hugging Face -------------------------------------------------------------------------------
def spec_from_hf(data: dict[str, Any], *, layout: str = "NCHW") -> PreprocessSpec:
    """A Hugging Face ``preprocessor_config.json`` as a spec.

    Read: ``do_resize``, ``size`` (int, {"height", "width"} or {"shortest_edge"}), ``resample``,
    ``do_center_crop``, ``crop_size``, ``crop_pct`` (ConvNext), ``do_rescale``, ``rescale_factor``,
    ``do_normalize``, ``image_mean``, ``image_std``. Missing flags take transformers' defaults
    (resize, rescale by 1/255 and normalize on; centre crop on when a crop_size is given).
    """
    family = _hf_family(data)
    if family not in HF_KNOWN_FAMILIES:
        logger.warning("%s is not one of the image processors ov_explain was checked against (%s): read as "
                       "resize, centre crop, rescale and normalize", family or "an untyped processor",
                       ", ".join(HF_KNOWN_FAMILIES))
    for flag in ("rescale_offset", "do_pad"):
        if data.get(flag):
            raise PreprocessError(f"{flag} is not supported")
    if data.get("do_resize", True) is False:
        raise PreprocessError("do_resize is false: ov_explain needs a resize to the model's fixed input size")
    resample = data.get("resample", 3 if family in ("DeiT", "Beit", "CLIP", "Bit") else 2)
    rescale = data.get("rescale_factor", 1 / 255) if data.get("do_rescale", True) else 1.0
    if isinstance(rescale, bool) or not isinstance(rescale, (int, float)) or not rescale > 0:
        raise PreprocessError(f"rescale_factor must be a positive number, got {rescale!r}")
    if data.get("do_normalize", True):
        if "image_mean" not in data or "image_std" not in data:
            raise PreprocessError("do_normalize without image_mean and image_std")
        mean, std = _scaled(data["image_mean"], 1 / rescale, "image_mean"), _scaled(data["image_std"], 1 / rescale,
                                                                                   "image_std")
    else:
        mean, std = (0.0, 0.0, 0.0), (1 / rescale,) * 3
    common = dict(interpolation=resample, mean=mean, std=std, color="RGB", layout=layout)
    size = _hf_size(data.get("size"), shortest_edge=family in HF_SHORTEST_EDGE_FAMILIES)
    if family == "ConvNext":
        return _hf_convnext(size, data.get("crop_pct"), common)
    crop = data.get("do_center_crop", "crop_size" in data)
    crop_hw = _hf_size(data.get("crop_size"), shortest_edge=False) if crop else None
    if "shortest_edge" in size:
        edge = size["shortest_edge"]
        if crop_hw is None:
            raise PreprocessError(f"size {{'shortest_edge': {edge}}} without a centre crop gives images of varying "
                                  "size; ov_explain needs the model's fixed input size")
        (crop_h, crop_w) = crop_hw["height"], crop_hw["width"]
        if crop_h != crop_w or crop_h > edge:
            raise PreprocessError(f"a {crop_h}x{crop_w} centre crop after resizing the shortest edge to {edge} is not "
                                  "supported (a square crop no larger than the shortest edge is)")
        return PreprocessSpec(size=crop_h, resize="center_crop", crop_fraction=crop_h / edge, **common)
    height, width = size["height"], size["width"]
    if crop_hw is not None and (crop_hw["height"], crop_hw["width"]) != (height, width):
        raise PreprocessError(f"a resize to {height}x{width} (aspect not kept) then a {crop_hw['height']}x"
                              f"{crop_hw['width']} centre crop has no PreprocessSpec equivalent; write an ov_explain "
                              "spec (center_crop keeps the aspect ratio)")
    return PreprocessSpec(size=(height, width), resize="stretch", **common)


def _hf_convnext(size: dict[str, int], crop_pct: Any, common: dict[str, Any]) -> PreprocessSpec:
    """ConvNext: below 384 resize the shortest edge to int(edge / crop_pct), then crop edge x edge;
    from 384 on, warp to edge x edge."""
    if "shortest_edge" not in size:
        raise PreprocessError(f"ConvNext size must give a shortest_edge, got {size}")
    edge = size["shortest_edge"]
    if edge >= 384:
        return PreprocessSpec(size=edge, resize="stretch", **common)
    crop_pct = 224 / 256 if crop_pct is None else crop_pct
    if isinstance(crop_pct, bool) or not isinstance(crop_pct, (int, float)) or not 0 < crop_pct <= 1:
        raise PreprocessError(f"crop_pct must be a number in (0, 1], got {crop_pct!r}")
    return PreprocessSpec(size=edge, resize="center_crop", crop_fraction=_crop_fraction((edge, edge), crop_pct),
                          **common)


def _hf_family(data: dict[str, Any]) -> str:
    """``ViT`` from ``ViTImageProcessor`` / ``ViTImageProcessorFast`` / ``ViTFeatureExtractor``."""
    name = next((str(data[k]) for k in HF_TYPE_KEYS if data.get(k)), "")
    for suffix in ("ImageProcessorFast", "ImageProcessor", "FeatureExtractor"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _hf_size(value: Any, *, shortest_edge: bool) -> dict[str, int]:
    """transformers' size dict: an int is the shortest edge or a square, [H, W] a height and width."""
    if isinstance(value, bool) or value is None:
        raise PreprocessError(f"size must be an int or a dict, got {value!r}")
    if isinstance(value, int):
        return {"shortest_edge": value} if shortest_edge else {"height": value, "width": value}
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return {"height": value[0], "width": value[1]}
    if isinstance(value, dict):
        if set(value) == {"height", "width"} or set(value) == {"shortest_edge"}:
            return dict(value)
    raise PreprocessError(f"size {value!r} is not supported (an int, [H, W], {{'height', 'width'}} or "
                          "{'shortest_edge'})")


def _scaled(value: Any, factor: float, name: str) -> tuple[float, ...]:
    """Three numbers (or one, repeated) times ``factor``."""
    values = [value] * 3 if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    if (not isinstance(values, (list, tuple)) or len(values) != 3
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)):
        raise PreprocessError(f"{name} must be a number or 3 numbers, got {value!r}")
    return tuple(float(v) * factor for v in values)
