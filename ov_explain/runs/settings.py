"""What an audit's settings file and summary record of the model, the explainer and the drawing style, for
classifier and detector audits alike (a resumed run compares the settings key by key)."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

logger = logging.getLogger(__name__)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def model_settings(model: Any) -> dict[str, Any]:
    """The model file, its digest and its preprocessing (a custom function by its qualified name)."""
    custom = model.custom_fn
    return {"model": str(model.files.model.resolve()), "model_sha256": model.files.digest(),
            "preprocess": (f"custom:{getattr(custom, '__qualname__', repr(custom))}" if custom is not None
                           else model.spec.to_dict())}


def method_settings(explainer: Any) -> dict[str, Any]:
    """The method as chosen, and the precision asked for and executed: resuming on a machine whose 'device'
    precision differs would mix results."""
    return {"mode": explainer.mode, "method": explainer.method, "target_layer": explainer.target_layer,
            "requested_precision": explainer.classifier.requested_precision,
            "executed_precision": explainer.precision,
            "preset": explainer.preset if explainer.mode == "blackbox" else None,
            "seed": explainer.seed if explainer.mode == "blackbox" else None,
            "method_options": {k: repr(v) for k, v in sorted(explainer.options.items())}}


def style_settings(options: Any) -> dict[str, Any]:
    """Which files are written and how maps are drawn."""
    return {"save_raw": options.save_raw, "save_rgba": options.save_rgba, "colormap": options.colormap,
            "overlay_weight": options.overlay_weight, "jpeg_quality": options.jpeg_quality}


def run_record(explainer: Any, seconds: float, ran: int, resumed: int) -> dict[str, Any]:
    """What a summary says of the run that the rows do not: model, method, where and how fast."""
    return {"resumed": resumed, "model": str(explainer.classifier.files.model), "method": explainer.method,
            "mode": explainer.mode, "device": explainer.device, "precision": explainer.precision,
            "readout": explainer.readout, "target_layer": explainer.target_layer, "seconds": round(seconds, 3),
            "images_per_second": round(ran / seconds, 3) if seconds > 0 else 0.0}
