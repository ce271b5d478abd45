"""Device discovery, the AUTO selection policy, compile-with-fallback and the compiled-model cache.

Everything takes an OpenVINO ``Core`` (or any object with ``available_devices``, ``get_property``
and ``compile_model``) so the policy can be tested with injected device lists and failures.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ov_explain.core.errors import DeviceError, one_line

logger = logging.getLogger(__name__)

#: The AUTO policy's preference when the user gives no list: accelerators first, CPU last.
DEFAULT_PRIORITY: tuple[str, ...] = ("NPU", "GPU", "CPU")
_CAPABILITY_PROPERTIES = ("OPTIMIZATION_CAPABILITIES", "DEVICE_ARCHITECTURE", "DEVICE_TYPE")
CACHE_ENV = "OV_EXPLAIN_CACHE_DIR"

#: Working precisions a user can ask for: an explicit one, or ``device`` = whatever the device runs by
#: default (bf16 on CPUs with AMX / AVX512-BF16, f16 on GPU and NPU, f32 on other CPUs).
PRECISIONS: tuple[str, ...] = ("f32", "bf16", "f16", "device")
#: f32 wherever the device has it: the same numbers on every CPU, so audits are reproducible.
DEFAULT_PRECISION = "f32"
_PRECISION_CAPABILITY = {"f32": "FP32", "bf16": "BF16", "f16": "FP16"}
_PRECISION_ALIASES = {"f32": "f32", "float32": "f32", "fp32": "f32", "bf16": "bf16", "bfloat16": "bf16",
                      "f16": "f16", "float16": "f16", "fp16": "f16"}


@dataclass(frozen=True)
class DeviceInfo:
    """One OpenVINO device as discovered: name (``GPU.0``), full name and key capabilities."""

    name: str
    full_name: str
    capabilities: tuple[str, ...] = ()
    properties: dict[str, str] = field(default_factory=dict, compare=False)
    default_precision: str | None = None  # what the device computes in when nobody asks (None: not reported)
    precisions: tuple[str, ...] = ()  # the working precisions it offers, from its capabilities

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "full_name": self.full_name, "capabilities": list(self.capabilities),
                "default_precision": self.default_precision, "precisions": list(self.precisions),
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
    precision: str = "unknown"  # the working precision the compiled model reports (f32, bf16, f16)
    requested_precision: str = DEFAULT_PRECISION  # what was asked for (``device``: the device's default)
    # Read once, when compiled: a compiled model's property read waits on its executor while inferences run,
    # holding the GIL; read per image, it stalled every thread of an audit (py-spy, 2 cores: 7.7 ms an image).
    optimal_requests: int = 2  # infer requests that keep the device busy (OpenVINO's figure)
    max_batch: int | None = None  # the largest batch one request takes (None: a dynamic batch dimension)


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
        devices.append(DeviceInfo(name, full_name, capabilities, properties, default_precision(core, name),
                                  precisions_from_capabilities(capabilities)))
    return devices


def precision_name(value: Any) -> str | None:
    """``f32`` / ``bf16`` / ``f16`` for an OpenVINO element type or its text; None if it is none of them."""
    text = value.to_string() if hasattr(value, "to_string") else str(value)
    text = text.strip().lower()
    if text.startswith("<type:"):  # str() of an ov.Type: "<Type: 'bfloat16'>"
        text = text[len("<type:"):].strip(" '>\"")
    return _PRECISION_ALIASES.get(text)


def precisions_from_capabilities(capabilities: Sequence[str]) -> tuple[str, ...]:
    """The working precisions a device's OPTIMIZATION_CAPABILITIES offer, in :data:`PRECISIONS` order."""
    offered = {c.upper() for c in capabilities}
    return tuple(p for p, capability in _PRECISION_CAPABILITY.items() if capability in offered)


def default_precision(core: Any, device: str) -> str | None:
    """The precision ``device`` computes in by default (its INFERENCE_PRECISION_HINT), None if unknown."""
    try:
        return precision_name(core.get_property(device, "INFERENCE_PRECISION_HINT"))
    except Exception:  # a plugin that does not report it
        return None


def check_precision(precision: str) -> str:
    """``precision`` lower-cased if it is one of :data:`PRECISIONS`, else a :class:`DeviceError`."""
    text = str(precision).strip().lower()
    if text not in PRECISIONS:
        raise DeviceError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    return text


def precision_config(core: Any, device: str, precision: str) -> dict[str, str]:
    """The compile property that asks ``device`` for ``precision`` (none for ``device``).

    A device that cannot compute in the requested precision (an NPU has no f32) runs in its own
    default instead, with a one-line warning, as a device fallback does.
    """
    precision = check_precision(precision)
    if precision == "device":
        return {}
    offered = precisions_from_capabilities((_safe_property(core, device, "OPTIMIZATION_CAPABILITIES") or "").split())
    if offered and precision not in offered:
        default = default_precision(core, device) or "its default precision"
        logger.warning("%s cannot compute in %s (it offers %s); running in %s", device, precision,
                       ", ".join(offered), default)
        return {}
    return {"INFERENCE_PRECISION_HINT": precision}


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
                          static_batch: int = 1, precision: str = DEFAULT_PRECISION) -> CompiledModel:
    """Compile ``model`` on the first device of the request that accepts it, in ``precision``.

    ``precision`` is one of :data:`PRECISIONS`; what actually executes is read back from the compiled
    model into :attr:`CompiledModel.precision`. On a compile failure with dynamic shapes the model is
    reshaped to static shapes (batch ``static_batch``) and compiled again on the same device; if that
    fails too, the next device is tried, with a warning naming the device and the reason. An explicit
    device gets no fallback.
    """
    request = device if isinstance(device, DeviceRequest) else DeviceRequest.parse(device)
    precision = check_precision(precision)
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
        device_config = {**config, **precision_config(core, name, precision)}
        compiled, static = _compile_on(core, model, name, device_config, attempts, static_batch)
        if compiled is not None:
            if attempts[:-1]:
                logger.warning("running on %s after %s", name,
                               "; ".join(f"{a.device} failed: {a.reason}" for a in attempts if a.reason))
            executing = _execution_devices(compiled, name)
            executed = executed_precision(compiled, device_config.get("INFERENCE_PRECISION_HINT"))
            logger.info("compiled on %s in %s (asked for %s)", name, executed, precision)
            return CompiledModel(compiled, name, executing, static, attempts, device_config, executed, precision,
                                 optimal_requests(compiled), batch_capacity(compiled))
        if request.auto:
            logger.warning("could not compile on %s (%s); trying the next device", name, attempts[-1].reason)
    summary = "; ".join(f"{a.device}{' (static shapes)' if a.static_shapes else ''}: {a.reason}" for a in attempts)
    error = DeviceError(f"could not compile the model on any requested device — {summary}")
    error.attempts = attempts  # each device's reasons, for callers that report per device
    raise error


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

    def infer(self, batch: Any, *more: Any) -> list[Any]:
        """Run one inference (``more``: values of the second, third, ... inputs); copies of every output,
        in the compiled model's output order."""
        import numpy as np

        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        request.infer({i: value for i, value in enumerate((batch,) + more)})
        return [np.array(request.get_output_tensor(i).data) for i in range(len(self.compiled.outputs))]

    def close(self) -> None:
        """Drop the calling thread's request now (worker threads' requests go with their threads)."""
        self._local.__dict__.pop("request", None)


class RequestRing:
    """A few infer requests used in turn and waited for in submission order: async, with no callback.

    OpenVINO's ``AsyncInferQueue`` runs its Python callback on the device's worker threads; a queue
    torn down while such a thread still wants the GIL deadlocks or aborts the process at exit
    ("Resource deadlock avoided", measured 8 of 30 ``ov-explain predict`` runs on a 2-core Xeon). Here
    only the calling thread touches Python objects: ``read`` copies a finished request's outputs
    before the request is used again, and results come back in the order the inputs went in.
    """

    def __init__(self, compiled: Any, size: int, read: Callable[[Any], Any]) -> None:
        self._idle = deque(compiled.create_infer_request() for _ in range(max(1, int(size))))
        self._busy: deque[tuple[Any, Any]] = deque()  # (request, userdata), oldest first
        self._read = read

    def start(self, inputs: Any, userdata: Any) -> list[tuple[Any, Any]]:
        """Start one inference; returns ``(userdata, result)`` of the oldest job if its request was needed."""
        finished = [self._collect()] if not self._idle else []
        request = self._idle.popleft()
        request.start_async(inputs)
        self._busy.append((request, userdata))
        return finished

    def ready(self) -> list[tuple[Any, Any]]:
        """Results of the oldest jobs that have already finished, without waiting."""
        finished = []
        while self._busy and self._busy[0][0].wait_for(0):
            finished.append(self._collect())
        return finished

    def drain(self) -> list[tuple[Any, Any]]:
        """Wait for every job in flight; their results in submission order."""
        return [self._collect() for _ in range(len(self._busy))]

    def close(self) -> None:
        """Wait for the jobs in flight (their results are dropped) and release the requests."""
        for request, _ in self._busy:
            request.wait()
        self._busy.clear()
        self._idle.clear()

    def __enter__(self) -> "RequestRing":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _collect(self) -> tuple[Any, Any]:
        request, userdata = self._busy.popleft()
        request.wait()
        try:
            return userdata, self._read(request)
        finally:
            self._idle.append(request)


def optimal_requests(compiled: Any, default: int = 2) -> int:
    """How many infer requests keep the device busy (OpenVINO's own figure for the compiled model)."""
    try:
        return max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
    except Exception:  # a plugin that does not report it
        return default


def executed_precision(compiled: Any, asked: str | None = None) -> str:
    """The working precision a compiled model reports; what was asked for (or ``unknown``) if it does not."""
    try:
        name = precision_name(compiled.get_property("INFERENCE_PRECISION_HINT"))
    except Exception:  # a plugin (or a test double) that does not report it
        name = None
    return name or asked or "unknown"


def _execution_devices(compiled: Any, fallback: str) -> tuple[str, ...]:
    try:
        value = compiled.get_property("EXECUTION_DEVICES")
    except Exception:
        return (fallback,)
    if isinstance(value, str):
        value = [value]
    return tuple(str(v) for v in value) or (fallback,)
