"""Which task a model file is for, read from its graph before it is compiled."""

from __future__ import annotations

import logging
import os

from ov_explain.core.errors import ModelLoadError, one_line
from ov_explain.core.files import ModelFiles

logger = logging.getLogger(__name__)


def find_task(path: str | os.PathLike | None) -> str:
    """``detection`` when the model's exporter says so or its outputs are a detection format (see
    :func:`ov_explain.core.detector.looks_like_detector`), else ``classification``."""
    import openvino as ov

    from ov_explain.core.detector import looks_like_detector

    files = ModelFiles.locate(path)
    try:
        model = ov.Core().read_model(str(files.model))
    except Exception as exc:  # OpenVINO raises RuntimeError with the parser's text
        raise ModelLoadError(f"{files.model}: cannot read model ({one_line(exc)})") from None
    task = "detection" if looks_like_detector(model) else "classification"
    logger.debug("%s: a %s model", files.model, task)
    return task
