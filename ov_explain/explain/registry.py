"""The one list of explanation methods: the explainer, the CLI, the explorer, the openvino-xai
backend and the documentation's method table (docs/explaining.md) all read it.

Adding a method is one module in :mod:`ov_explain.explain.methods` that defines ``METHOD`` (a
:class:`~ov_explain.explain.method.WhiteboxMethod` or
:class:`~ov_explain.explain.method.BlackboxMethod`) and one line in :data:`_METHOD_MODULES`.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from ov_explain.explain.base import ExplainError, check_mode
from ov_explain.explain.graph import is_transformer
from ov_explain.explain.method import Method, WhiteboxMethod

logger = logging.getLogger(__name__)

#: Modules of :mod:`ov_explain.explain.methods`, in the order methods are listed.
_METHOD_MODULES = (
    "cam",
    "reciprocam",
    "vitreciprocam",
    "vitcam",
    "activationmap",
    "rise",
    "aise",
    "detreciprocam",
    "drise",
)

def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


METHODS: dict[str, Method] = {}
for _module in _METHOD_MODULES:
    _method = importlib.import_module(f"{__package__}.methods.{_module}").METHOD
    if _method.name != _key(_method.name) or _method.name in METHODS:
        raise ImportError(f"method {_method.name!r}: names are unique, lower case, without '-' or '_'")
    METHODS[_method.name] = _method

#: The black-box default; the white-box default depends on the graph (:func:`default_whitebox_method`).
DEFAULT_BLACKBOX = "aise"
#: The defaults for detectors (``auto``: white-box where the graph has a neck to cut, else black-box).
DEFAULT_DETECTION_BLACKBOX = "drise"
DEFAULT_DETECTION_WHITEBOX = "detreciprocam"
PRESETS = ("speed", "balance", "quality")


def method_names(mode: str | None = None, task: str | None = None) -> list[str]:
    """Registered method names, of one mode and task if given."""
    return [name for name, method in METHODS.items()
            if (mode is None or method.mode == mode) and (task is None or method.task == task)]


def get_method(name: str) -> Method:
    """The method called ``name`` (case, ``-`` and ``_`` ignored), or one line listing the known ones."""
    key = _key(name)
    if key not in METHODS:
        raise ExplainError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    return METHODS[key]


def default_whitebox_method(model: Any, position: int = 0, *, target_layer: str | None = None,
                            xai_only: bool = False) -> WhiteboxMethod:
    """The white-box method ``auto`` picks for this graph: for transformers or for CNNs, the first default
    method (in registry order) that applies — CAM where the head is pooling + linear, else ReciproCAM.
    ``xai_only``: among methods openvino-xai also has."""
    transformer = is_transformer(model)
    candidates = [m for m in METHODS.values()
                  if isinstance(m, WhiteboxMethod) and m.default and m.task == "classification"
                  and m.for_transformers == transformer and (m.xai_name is not None or not xai_only)]
    return next((m for m in candidates if m.applies(model, position, target_layer)), candidates[-1])


def resolve(mode: str, method: str | None, task: str | None = "classification") -> tuple[str, Method | None]:
    """(mode, method) for a request on a ``task`` model (None: any); a white-box method of ``None`` is chosen
    later from the graph."""
    check_mode(mode)
    if method is None:
        default = DEFAULT_DETECTION_BLACKBOX if task == "detection" else DEFAULT_BLACKBOX
        return mode, METHODS[default] if mode == "blackbox" else None
    found = get_method(method)
    if task is not None and found.task != task:
        raise ExplainError(f"method {found.name} explains {found.task} models, not {task} models "
                           f"(methods for {task}: {', '.join(method_names(task=task)) or 'none'})")
    if mode not in ("auto", found.mode):
        raise ExplainError(f"method {found.name} is {found.mode}, but mode {mode!r} was asked for")
    return found.mode, found


def check_preset(preset: str) -> str:
    if preset not in PRESETS:
        raise ExplainError(f"preset must be one of {list(PRESETS)}, got {preset!r}")
    return preset
