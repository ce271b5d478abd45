"""What an explanation method is: one object per method, white-box or black-box, behind one registry.

A white-box method says where it attaches in the graph (:meth:`WhiteboxMethod.find_target`) and
which branch it adds there (:meth:`WhiteboxMethod.insert`); the explainer compiles the result and
reads the maps from one inference. A black-box method has presets and a run function that scores
perturbed copies of a :class:`~ov_explain.core.prepared.PreparedInput`. Both declare their options, so
an explainer checks them when it is built instead of ignoring or failing on them later.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from ov_explain.core.prepared import PreparedInput
from ov_explain.explain.base import ExplainError
from ov_explain.explain.blackbox import Progress, ScoreFunction
from ov_explain.explain.graph import TargetLayer, find_target_layer

logger = logging.getLogger(__name__)


class Method:
    """The common part: a name, a mode, a one-line summary, openvino-xai's name for it and its options."""

    name: ClassVar[str]
    mode: ClassVar[str]
    summary: ClassVar[str]
    #: The ``openvino_xai.Method`` member that computes the same maps (None: openvino-xai has none).
    xai_name: ClassVar[str | None] = None
    #: Option name -> openvino-xai's keyword for it (options missing here are refused on that backend).
    xai_options: ClassVar[Mapping[str, str]] = {}
    #: Option name -> default. Black-box defaults of ``None`` come from the preset.
    options: ClassVar[Mapping[str, Any]] = {}
    #: What the method explains: a classifier's classes, or a detector's boxes.
    task: ClassVar[str] = "classification"

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The options, refused with one line naming the method's real options when one is unknown."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            known = ", ".join(self.options) or "none"
            raise ExplainError(f"{self.name} has no option {', '.join(map(repr, unknown))}; its options: {known}")
        return dict(options)

    def __repr__(self) -> str:
        return f"<{self.mode} method {self.name}>"


@dataclass(frozen=True)
class Inserted:
    """What a white-box method added: the maps node, the layer it attached to (found again if the
    method reshaped the graph), whether the algebraic shortcut was used, the score read-out, and
    whether the maps are already only those of the requested classes (else the caller selects them), and
    which maps fell back to the logit read-out."""

    maps: Any
    target: Any
    shortcut: bool = False
    readout: str | None = None
    selected: bool = False
    #: (N, K or k) booleans: maps that fell back to the logit read-out (degenerate probability maps), or None.
    logit_fallback: Any | None = None


class WhiteboxMethod(Method):
    """A method computed by graph insertion: maps (N, K, h, w), or (N, 1, h, w) if class-agnostic."""

    mode = "whitebox"
    #: One map for all classes (ActivationMap) instead of one per class.
    class_agnostic: ClassVar[bool] = False
    #: Whether it attaches to a transformer's token stream (else to a CNN feature map).
    for_transformers: ClassVar[bool] = False
    #: Whether ``mode='auto'`` may pick it for its kind of graph: the first default method (in registry
    #: order) that :meth:`applies` to the graph is picked.
    default: ClassVar[bool] = False
    #: The score read-out when none is asked for (methods that read class scores).
    default_readout: ClassVar[str] = "logit"

    def applies(self, model: Any, position: int = 0, target_layer: str | None = None) -> bool:
        """Whether the method can explain this graph (at ``target_layer``, if named) as it is: checked
        before picking it as the default."""
        return True

    def find_target(self, model: Any, name: str | None) -> Any:
        """The layer the branch attaches to: the named one, or the method's default."""
        raise NotImplementedError

    def insert(self, work: Any, position: int, target: Any, options: Mapping[str, Any], *,
               classes: Any | None = None, output_kind: str = "auto") -> Inserted:
        """Add the saliency branch to ``work`` (a clone the method may change, e.g. its batch).

        ``classes``, when given, is an (N, k) graph value of class indices: a method that can compute
        only those maps does so and says ``selected=True``. ``output_kind`` is what the classifier
        makes of the output (``probabilities`` or logits), for the score read-out.
        """
        raise NotImplementedError


class FeatureMapMethod(WhiteboxMethod):
    """A white-box method that attaches to a CNN's feature map: the named one, or the last spatial map
    before the head (:func:`~ov_explain.explain.graph.find_target_layer`)."""

    def find_target(self, model: Any, name: str | None) -> TargetLayer:
        return find_target_layer(model, name)


class BlackboxMethod(Method):
    """A method that only reads class probabilities of perturbed inputs."""

    mode = "blackbox"
    #: Preset name -> option values; every preset names the same options.
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    #: Whether openvino-xai's version takes the seed.
    xai_seed: ClassVar[bool] = False

    def resolve(self, preset: str, options: Mapping[str, Any]) -> dict[str, Any]:
        """The preset's values with the user's options on top (None keeps the preset's), and the other
        defaults, checked now: a bad value is one line before any image, not an error per image."""
        given = {k: v for k, v in self.check_options(options).items() if v is not None}
        settings = {**self.options, **self.presets[preset], **given}
        self.check(settings)
        return settings

    def check(self, settings: Mapping[str, Any]) -> None:
        """Refuse settings the method cannot run with (``ExplainError`` naming the option)."""

    def run(self, score: ScoreFunction, prepared: PreparedInput, targets: Sequence[int], options: Mapping[str, Any],
            *, seed: int, parallel: int, progress: Progress | None) -> np.ndarray:
        """Maps (T, H, W) at the prepared input's spatial size; ``parallel`` inferences at most in flight."""
        raise NotImplementedError


def require_int(method: str, name: str, value: Any, minimum: int = 1) -> None:
    """One line if an integer option is not an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ExplainError(f"{method}: {name} must be an integer >= {minimum}, got {value!r}")


def require_number(method: str, name: str, value: Any, low: float, high: float | None = None) -> None:
    """One line if a number option is not in (``low``, ``high``)."""
    ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and value > low \
        and (high is None or value < high)
    if not ok:
        bounds = f"between {low} and {high}" if high is not None else f"above {low}"
        raise ExplainError(f"{method}: {name} must be a number {bounds}, got {value!r}")

