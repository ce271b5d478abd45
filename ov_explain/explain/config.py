"""How to explain, declared once: what builds an explainer here, in a Ray actor, and in the settings files."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

from ov_explain.core.config import from_dict, to_dict
from ov_explain.explain.base import ExplainError
from ov_explain.explain.registry import METHODS, check_preset, resolve

logger = logging.getLogger(__name__)

#: Where maps are computed: this package, or the openvino-xai library (the ``xai`` extra).
BACKENDS = ("native", "openvino-xai")
#: White-box score read-outs: before a softmax in the graph, or after it.
READOUTS = ("logit", "probability")


@dataclass(frozen=True)
class ExplainConfig:
    """The explanation method and its settings.

    ``mode``: auto (white-box where the graph allows, else black-box), whitebox or blackbox; ``method``:
    a registered name (None: the default for the mode and graph); ``target_layer``: the white-box node
    (None: found in the graph); ``readout``: the white-box class score (None: the method's default);
    ``preset`` / ``seed``: black-box quality and randomness; ``options``: the method's own options.
    """

    backend: str = "native"
    mode: str = "auto"
    method: str | None = None
    target_layer: str | None = None
    readout: str | None = None
    preset: str = "balance"
    seed: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ExplainError(f"backend must be one of {list(BACKENDS)}, got {self.backend!r}")
        if self.readout is not None and self.readout not in READOUTS:
            raise ExplainError(f"readout must be one of {list(READOUTS)}, got {self.readout!r}")
        resolve(self.mode, self.method, task=None)  # which task: known when the model is
        check_preset(self.preset)
        object.__setattr__(self, "options", dict(self.options))

    @property
    def method_options(self) -> dict[str, Any]:
        """The method's keyword options, the read-out among them when one is asked for."""
        return {**self.options, **({} if self.readout is None else {"readout": self.readout})}

    def create(self, classifier: Any) -> Any:
        """The explainer for ``classifier`` on this backend (both have the same interface and results)."""
        arguments = dict(mode=self.mode, method=self.method, target_layer=self.target_layer, preset=self.preset,
                         seed=self.seed, **self.method_options)
        if getattr(classifier, "output_format", None) is not None:  # a detector
            if self.backend != "native":
                raise ExplainError("openvino-xai explains classifiers only: use --backend native for a detector")
            from ov_explain.explain.detection import DetectionExplainer

            return DetectionExplainer(classifier, **arguments)
        if self.backend == "native":
            from ov_explain.explain.explainer import Explainer

            return Explainer(classifier, **arguments)
        from ov_explain.explain.xai_backend import XaiBackendExplainer

        return XaiBackendExplainer(classifier, **arguments)

    def resolved(self, explainer: Any) -> "ExplainConfig":
        """What ``explainer`` chose (mode, method, layer): another process builds the same one without
        searching again. Options the chosen method has no use for (a read-out after a fall-back to
        black-box) are dropped, as the explainer dropped them."""
        method = METHODS[explainer.method]
        kept = {k: v for k, v in self.options.items() if k in method.options}
        readout = self.readout if "readout" in method.options else None
        # A detector's cut is found in its graph again (the same graph gives the same cut), not named.
        layer = None if method.task == "detection" else explainer.target_layer
        return dataclasses.replace(self, mode=explainer.mode, method=explainer.method, target_layer=layer,
                                   readout=readout, options=kept)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ExplainConfig":
        return from_dict(cls, data)
