"""ActivationMap: the channel mean of the last feature map (class-agnostic, one map per image)."""

from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np

from ov_explain.core._compat import opset
from ov_explain.explain.branches import as_nchw
from ov_explain.explain.graph import TargetLayer
from ov_explain.explain.method import FeatureMapMethod, Inserted

logger = logging.getLogger(__name__)


class ActivationMap(FeatureMapMethod):
    name = "activationmap"
    summary = "channel mean of the last feature map (class-agnostic)"
    xai_name = "ACTIVATIONMAP"
    class_agnostic = True

    def insert(self, work: Any, position: int, target: TargetLayer, options: Mapping[str, Any], *,
               classes: Any | None = None, output_kind: str = "auto") -> Inserted:
        maps = opset.reduce_mean(as_nchw(target), np.array([1], np.int64), keep_dims=True)
        return Inserted(maps, target)


METHOD = ActivationMap()
