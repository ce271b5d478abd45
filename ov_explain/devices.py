"""Device discovery, the AUTO selection policy, compile-with-fallback and the compiled-model cache.

Everything takes an OpenVINO ``Core`` (or any object with ``available_devices``, ``get_property``
and ``compile_model``) so the policy can be tested with injected device lists and failures.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .errors import DeviceError, one_line

logger = logging.getLogger(__name__)

#: The AUTO policy's preference when the user gives no list: accelerators first, CPU last.
DEFAULT_PRIORITY: tuple[str, ...] = ("NPU", "GPU", "CPU")
_CAPABILITY_PROPERTIES = ("OPTIMIZATION_CAPABILITIES", "DEVICE_ARCHITECTURE", "DEVICE_TYPE")
CACHE_ENV = "OV_EXPLAIN_CACHE_DIR"


@dataclass(frozen=True)
class DeviceInfo:
    """One OpenVINO device as discovered: name (``GPU.0``), full name and key capabilities."""

    name: str
    full_name: str
    capabilities: tuple[str, ...] = ()
    properties: dict[str, str] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "full_name": self.full_name, "capabilities": list(self.capabilities),
                "properties": dict(self.properties)}


@dataclass(frozen=True)
class DeviceRequest:
    """A parsed ``--device`` value: ``AUTO``, ``AUTO:GPU,CPU`` or one explicit device."""

    candidates: tuple[str, ...]
    auto: bool

    @classmethod
    def parse(cls, text: str | None) -> "DeviceRequest":
        text = (text or "AUTO").strip()
        head, colon, tail = text.partition(":")
        if head.upper() == "AUTO":
            names = tuple(n.strip().upper() for n in tail.split(",") if n.strip()) if colon else DEFAULT_PRIORITY
            if not names:
                raise DeviceError(f"device {text!r}: AUTO: needs a device list such as AUTO:GPU,CPU")
            return cls(names, auto=True)
        if "," in text or not text:
            raise DeviceError(f"device {text!r}: expected AUTO, AUTO:<list> or one device such as CPU or GPU.0")
        return cls((text.upper(),), auto=False)


@dataclass
class Attempt:
    """One compile attempt and why it failed (empty reason = it succeeded)."""

    device: str
    static_shapes: bool
    reason: str = ""


@dataclass
class CompiledModel:
    """A compiled model plus where it really runs and how it got there."""

    compiled: Any
    device: str  # the device we compiled for
    execution_devices: tuple[str, ...]  # what OpenVINO reports actually executes it
    static_shapes: bool  # True if we had to reshape to static shapes to compile
    attempts: list[Attempt]
    config: dict[str, str]


def discover(core: Any) -> list[DeviceInfo]:
    """Every device OpenVINO can see, with its full name and the capabilities we report."""
    devices = []
    for name in core.available_devices:
        full_name = _safe_property(core, name, "FULL_DEVICE_NAME") or name
        properties = {}
        for key in _CAPABILITY_PROPERTIES:
            value = _safe_property(core, name, key)
            if value not in (None, ""):
                properties[key] = value
        caps = properties.get("OPTIMIZATION_CAPABILITIES", "")
        capabilities = tuple(c for c in caps.split() if c)
        devices.append(DeviceInfo(name, full_name, capabilities, properties))
    return devices


def _safe_property(core: Any, device: str, key: str) -> str | None:
    try:
        value = core.get_property(device, key)
    except Exception:  # a plugin may not know a property; discovery must not fail on that
        return None
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


def candidates_for(request: DeviceRequest, available: Sequence[str]) -> list[str]:
    """Concrete devices to try, in order. ``GPU`` matches ``GPU``, ``GPU.0``, ``GPU.1``..."""
    ordered: list[str] = []
    for wanted in request.candidates:
        matches = [d for d in available if d.upper() == wanted or d.upper().startswith(wanted + ".")]
        for match in matches:
            if match not in ordered:
                ordered.append(match)
    if not ordered:
        wanted = ", ".join(request.candidates)
        raise DeviceError(f"no requested device is available (asked for {wanted}; available: "
                          f"{', '.join(available) or 'none'})")
    return ordered


def auto_choice(core: Any, priority: Sequence[str] = DEFAULT_PRIORITY) -> str:
    """The device the AUTO policy would try first on this machine."""
    return candidates_for(DeviceRequest(tuple(priority), auto=True), list(core.available_devices))[0]


def default_cache_dir() -> Path | None:
    """``$OV_EXPLAIN_CACHE_DIR`` (empty or ``off`` disables), else ``$XDG_CACHE_HOME/ov_explain/model_cache``."""
    configured = os.environ.get(CACHE_ENV)
    if configured is not None:
        return None if configured.strip().lower() in ("", "0", "off", "none", "false") else Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ov_explain" / "model_cache"


def compile_config(hint: str, cache_dir: Path | None) -> dict[str, str]:
    """The compile properties: a performance hint and, if enabled, the model cache directory."""
    if hint not in ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT"):
        raise DeviceError(f"performance hint must be LATENCY or THROUGHPUT, got {hint!r}")
    config = {"PERFORMANCE_HINT": hint}
    if cache_dir is not None:
        config["CACHE_DIR"] = str(cache_dir)
    return config


def compile_with_fallback(core: Any, model: Any, device: str | DeviceRequest = "AUTO", *,
                          hint: str = "LATENCY", cache_dir: Path | None | str = "default",
                          static_batch: int = 1) -> CompiledModel:
    """Compile ``model`` on the first device of the request that accepts it.

    On a compile failure with dynamic shapes the model is reshaped to static shapes (batch
    ``static_batch``) and compiled again on the same device; if that fails too, the next device
    is tried, with a warning naming the device and the reason. An explicit device gets no fallback.
    """
    request = device if isinstance(device, DeviceRequest) else DeviceRequest.parse(device)
    cache = default_cache_dir() if cache_dir == "default" else (Path(cache_dir) if cache_dir else None)
    if cache is not None:
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            logger.warning("model cache disabled: cannot create %s (%s)", cache, exc)
            cache = None
    config = compile_config(hint, cache)
    attempts: list[Attempt] = []
    for name in candidates_for(request, list(core.available_devices)):
        compiled, static = _compile_on(core, model, name, config, attempts, static_batch)
        if compiled is not None:
            if attempts[:-1]:
                logger.warning("running on %s after %s", name,
                               "; ".join(f"{a.device} failed: {a.reason}" for a in attempts if a.reason))
            executing = _execution_devices(compiled, name)
            return CompiledModel(compiled, name, executing, static, attempts, config)
        if request.auto:
            logger.warning("could not compile on %s (%s); trying the next device", name, attempts[-1].reason)
    summary = "; ".join(f"{a.device}{' (static shapes)' if a.static_shapes else ''}: {a.reason}" for a in attempts)
    raise DeviceError(f"could not compile the model on any requested device — {summary}")


def _compile_on(core: Any, model: Any, name: str, config: dict[str, str], attempts: list[Attempt],
                static_batch: int) -> tuple[Any, bool]:
    try:
        compiled = core.compile_model(model, name, config)
        attempts.append(Attempt(name, False))
        return compiled, False
    except Exception as exc:  # plugins raise RuntimeError subclasses with long multi-line texts
        attempts.append(Attempt(name, False, one_line(exc)))
    if not _is_dynamic(model):
        return None, False
    try:
        static_model = _static_copy(model, static_batch)
        compiled = core.compile_model(static_model, name, config)
        logger.info("%s needed static shapes; compiled with batch %d", name, static_batch)
        attempts.append(Attempt(name, True))
        return compiled, True
    except Exception as exc:
        attempts.append(Attempt(name, True, one_line(exc)))
        return None, False


def _is_dynamic(model: Any) -> bool:
    try:
        return any(inp.get_partial_shape().is_dynamic for inp in model.inputs)
    except AttributeError:
        return False


def _static_copy(model: Any, batch: int) -> Any:
    import openvino as ov

    clone = model.clone()
    shapes = {}
    for inp in clone.inputs:
        dims = [d.get_length() if d.is_static else (batch if i == 0 else -1)
                for i, d in enumerate(inp.get_partial_shape())]
        if any(d < 0 for d in dims):
            raise DeviceError(f"input {inp.get_any_name()} has dynamic spatial dimensions "
                              f"{inp.get_partial_shape()}; give a static size to run on this device")
        shapes[inp] = ov.PartialShape(dims)
    clone.reshape(shapes)
    return clone


def batch_capacity(compiled: Any) -> int | None:
    """Largest batch one request of a compiled model takes: None when the batch dimension is dynamic."""
    dim = compiled.inputs[0].get_partial_shape()[0]
    return None if dim.is_dynamic else int(dim.get_length())


class ThreadRequests:
    """One infer request per thread for a compiled model.

    A compiled model's own ``__call__`` shares a single request, so two threads calling it race;
    this gives each thread its own, which is what lets decoding, inference and writing overlap.
    """

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled
        self._local = threading.local()

    def infer(self, batch: Any) -> list[Any]:
        """Run one inference; copies of every output, in the compiled model's output order."""
        import numpy as np

        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        request.infer({0: batch})
        return [np.array(request.get_output_tensor(i).data) for i in range(len(self.compiled.outputs))]


def optimal_requests(compiled: Any, default: int = 2) -> int:
    """How many infer requests keep the device busy (OpenVINO's own figure for the compiled model)."""
    try:
        return max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
    except Exception:  # a plugin that does not report it
        return default


def _execution_devices(compiled: Any, fallback: str) -> tuple[str, ...]:
    try:
        value = compiled.get_property("EXECUTION_DEVICES")
    except Exception:
        return (fallback,)
    if isinstance(value, str):
        value = [value]
    return tuple(str(v) for v in value) or (fallback,)
