"""The Ray Data engine: the same per-image work as the local engine, on actors across a cluster.

Each actor builds the work once from a recipe (``recipe.build(threads, stems)``: the model compiled with
``INFERENCE_NUM_THREADS`` = the CPUs Ray gives the actor) and runs every sample of its batches through
:func:`ov_explain.runs.engine.sample_result`, the function the local engine's threads run. Actors write the
image files to the output folder (a filesystem every node sees); they send back each sample's rows as
JSON lines, and the driver alone appends them, in dataset order (Ray Data keeps the order), through
:func:`ov_explain.runs.engine.run_rows` — so the folder, its rows and its resume are the local engine's.

A failed actor is restarted by Ray and its batch retried (files are written atomically under the
same names, rows are sent once per sample); an image that fails is an error row, never a lost batch.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ov_explain.core.errors import OvExplainError, one_line
from ov_explain.runs.dataset import Sample
from ov_explain.runs.engine import FolderKind, SampleResult, sample_result

logger = logging.getLogger(__name__)

COLUMNS = ("key", "rows", "error", "message")


class ClusterError(OvExplainError):
    """Ray is missing, or the cluster cannot be reached or used."""


class Recipe(Protocol):
    """How to build a run's per-sample work in another process (the arguments, not the objects)."""

    def build(self, threads: int, stems: dict[str, str]) -> Callable[[Sample], Any]: ...


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide: the cluster (``None``: a local one started for the run; ``auto``: the one
    ``ray start`` runs here; ``ray://host:port``), actors (``None``: the cluster's CPUs / ``actor_cpus``),
    samples per batch, CPUs per actor (= its OpenVINO inference threads)."""

    address: str | None = None
    actors: int | None = None
    batch_size: int = 64
    actor_cpus: int = 1

    def __post_init__(self) -> None:
        for name in ("batch_size", "actor_cpus"):
            if getattr(self, name) < 1:
                raise ClusterError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.actors is not None and self.actors < 1:
            raise ClusterError(f"actors: expected >= 1, got {self.actors}")


#: A private single-machine cluster's environment (read by Ray when first imported and by the processes it
#: starts): nodes on 127.0.0.1 (Ray's switch is named for Windows / macOS; on Linux it keeps ``ray.init``
#: off the machine's network address), and no usage statistics reported to Ray's servers.
PRIVATE_CLUSTER_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def import_ray(private_cluster: bool = False) -> Any:
    """Ray with Ray Data, or one :class:`ClusterError` naming the extra. ``private_cluster``: the run will
    start its own single-machine cluster, on the loopback address only (set before Ray is first imported in
    the process; a variable the user set is left as it is)."""
    quiet = not logging.getLogger("ov_explain").isEnabledFor(logging.DEBUG)
    if private_cluster and "ray" not in sys.modules:
        for name, value in PRIVATE_CLUSTER_ENV.items():
            os.environ.setdefault(name, value)
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Data is the ray[data] part)
    except ImportError:
        raise ClusterError('--engine ray needs Ray Data: pip install "ov-explain[distributed]"') from None
    if quiet:  # Ray logs each start and execution on stderr; the audit's own bar and lines say what happened
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)
    return ray


def actor_core(threads: int) -> Any:
    """An OpenVINO Core for an actor given ``threads`` CPUs: as many inference threads and no pinning (each
    process would pin its threads to the first cores, all actors of a node to the same ones); OpenCV's
    decoding, resizing and encoding threads kept to the same number."""
    import cv2
    import openvino as ov

    core = ov.Core()
    core.set_property("CPU", {"INFERENCE_NUM_THREADS": threads, "ENABLE_CPU_PINNING": False})
    cv2.setNumThreads(threads)
    return core


class _Actor:
    """One Ray actor: builds the work once, then runs batches of samples through it."""

    def __init__(self, recipe: Recipe, kind: FolderKind, threads: int, cwd: str) -> None:
        if not os.path.isdir(cwd):
            raise RuntimeError(f"the folder the audit runs from, {cwd}, is not on this node (the dataset's relative "
                               "paths are read from there): share it at the same path on every node")
        os.chdir(cwd)  # relative dataset paths mean what they meant to the driver
        self.stems: dict[str, str] = {}
        self.work = recipe.build(threads, self.stems)
        self.kind = kind

    def __call__(self, batch: dict[str, Any]) -> Any:
        import pyarrow as pa

        results = []
        for item in batch.to_pylist():
            self.stems[item["key"]] = item["stem"]
            sample = Sample(Path(item["path"]), item["label"], item["key"])
            results.append(sample_result(self.work, sample, self.kind))
        return pa.table({name: [getattr(r, name) for r in results] for name in COLUMNS})


def _check_reachable(address: str | None) -> None:
    """A ``host:port`` that nothing answers is one line now (``ray.init`` would retry for minutes)."""
    if address is None or address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise ClusterError(f"Ray cluster {address}: cannot connect ({getattr(exc, 'strerror', None) or exc}); "
                           "start one with `ray start --head` or leave --ray-address out for a local one") from None


class RayEngine:
    """A :class:`~ov_explain.runs.engine.RowEngine` on Ray Data: ``map_batches`` with an actor pool."""

    def __init__(self, recipe: Recipe, stems: dict[str, str], options: RayOptions = RayOptions()) -> None:
        """Connects (or starts a local cluster) now: a cluster that cannot be reached is one error before
        the output folder is touched."""
        self.recipe, self.stems, self.options = recipe, stems, options
        self.ray = import_ray(private_cluster=options.address is None)
        self._connected_here = not self.ray.is_initialized()
        if self._connected_here:
            _check_reachable(options.address)
            # ray.init installs its own SIGTERM handler (exit at once); ours finishes and records first.
            handler = signal.getsignal(signal.SIGTERM)
            try:
                # "local": a new cluster for this run, never one found through RAY_ADDRESS or an earlier `ray start`.
                self.ray.init(address=options.address or "local", include_dashboard=False, log_to_driver=False,
                              logging_level=logging.WARNING, configure_logging=False)
            except Exception as exc:  # ConnectionError, ValueError for a bad address, ...
                raise ClusterError(f"Ray cluster {options.address or '(local)'}: cannot connect "
                                   f"({type(exc).__name__}: {one_line(exc)})") from None
            finally:
                if threading.current_thread() is threading.main_thread():
                    signal.signal(signal.SIGTERM, handler)

    def close(self) -> None:
        """Disconnect (and stop the run's own cluster); called by :func:`~ov_explain.runs.engine.run_rows`."""
        if self._connected_here and self.ray.is_initialized():
            self.ray.shutdown()

    def results(self, todo: list[Sample], kind: FolderKind, stopping: Callable[[], bool]) -> Iterator[SampleResult]:
        if not todo:
            return
        try:
            yield from self._run(self.ray, todo, kind, stopping)
        except self.ray.exceptions.RayError as exc:  # e.g. actors that cannot start: one line, rows so far kept
            raise ClusterError(f"Ray: {type(exc).__name__}: {one_line(exc)}") from None

    def _run(self, ray: Any, todo: list[Sample], kind: FolderKind,
             stopping: Callable[[], bool]) -> Iterator[SampleResult]:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # rows in dataset order: what resume relies on
        context.enable_progress_bars = False  # the driver's own bar counts images
        cpus = self.options.actor_cpus
        batch = self.options.batch_size
        batches = -(-len(todo) // batch)
        actors = min(batches, self.options.actors or max(1, int(ray.cluster_resources().get("CPU", 1) // cpus)))
        logger.info("Ray: %d actors of %d CPU(s), batches of %d, %d images", actors, cpus, batch, len(todo))
        # One block per batch: an actor gets whole batches, not many tiny blocks to assemble.
        items = ray.data.from_items([{"key": s.key, "path": str(s.path), "label": s.label, "stem": self.stems[s.key]}
                                     for s in todo], override_num_blocks=batches)
        # Ray Data's defaults restart a failed actor without limit and retry its tasks (max_restarts and
        # max_task_retries -1); four batches in flight per actor keep it busy while results travel.
        constructor = {"recipe": self.recipe, "kind": kind, "threads": cpus, "cwd": os.getcwd()}
        mapped = items.map_batches(_Actor, fn_constructor_kwargs=constructor, batch_size=batch, num_cpus=cpus,
                                   compute=ray.data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=4),
                                   batch_format="pyarrow")
        for table in mapped.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=2):
            for row in table.to_pylist():
                yield SampleResult(**row)
            if stopping():  # what has arrived is recorded; batches still running are dropped
                return
