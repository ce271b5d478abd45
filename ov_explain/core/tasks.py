"""Which task a model file is for, read from its graph before it is compiled."""

from __future__ import annotations

import logging
import os
from typing import Any

from ov_explain.core.files import ReadModel, read_model

logger = logging.getLogger(__name__)


def find_task(path: str | os.PathLike | ReadModel | None, core: Any = None) -> tuple[str, ReadModel]:
    """``detection`` when the model's exporter says so or its outputs are a detection format (see
    :func:`ov_explain.core.detector.looks_like_detector`), else ``classification``; and the model as read,
    for the classifier or detector to be built from without reading the file again."""
    import openvino as ov

    from ov_explain.core.detector import looks_like_detector

    read = read_model(path, core if core is not None else ov.Core())
    task = "detection" if looks_like_detector(read.model) else "classification"
    logger.debug("%s: a %s model", read.files.model, task)
    return task, read
