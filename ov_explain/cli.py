"""The ``ov-explain`` command line: the only module that imports everything and talks to the terminal.

Exit status: 0 all good; 1 some inputs failed (the others were processed); 2 bad usage or a setup
error (model, preprocessing spec, labels, device) before anything ran; 3 an unexpected error (a bug:
one line, and the full trace in a file it names); 130 / 143 interrupted by SIGINT / SIGTERM (an audit
records what was finished first: re-run to resume).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from ov_explain import __version__
from ov_explain.core.devices import (
    DEFAULT_PRECISION,
    DEFAULT_PRIORITY,
    PRECISIONS,
    DeviceRequest,
    auto_choice,
    default_cache_dir,
    discover,
)
from ov_explain.core.errors import OvExplainError, one_line
from ov_explain.explain import BACKENDS
from ov_explain.explain.base import MODES
from ov_explain.explain.registry import PRESETS, method_names

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_PARTIAL, EXIT_SETUP = 0, 1, 2
EXIT_UNEXPECTED = 3
EXIT_GATE = 4  # drift --fail-on: a limit was crossed
EXIT_INTERRUPTED, EXIT_TERMINATED = 128 + signal.SIGINT, 128 + signal.SIGTERM


class _OneLineFormatter(logging.Formatter):
    """``level: message``; with ``traces`` (-vv) a record's exception trace follows it."""

    def __init__(self, traces: bool = False) -> None:
        super().__init__()
        self.traces = traces

    def format(self, record: logging.LogRecord) -> str:
        line = f"{record.levelname.lower()}: {record.getMessage()}"
        return line + "\n" + self.formatException(record.exc_info) if self.traces and record.exc_info else line


def _configure_logging(verbose: int, quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter(traces=verbose > 1 and not quiet))
    root = logging.getLogger("ov_explain")
    root.handlers[:] = [handler]
    root.propagate = False
    root.setLevel(logging.ERROR if quiet else logging.DEBUG if verbose > 1 else
                  logging.INFO if verbose else logging.WARNING)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so work in flight ends as cleanly as on Ctrl-C."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


@contextmanager
def _stop_on_signals() -> Iterator[tuple[threading.Event, list[int]]]:
    """While inside, SIGINT / SIGTERM set an event the audit checks between images (it finishes those
    in flight) and land in the list; a second signal interrupts at once. The old handlers come back after."""
    stop, received = threading.Event(), []

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
        received.append(signum)
        stop.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop, received
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _interrupt_status(cause: BaseException) -> int:
    """The shell's convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
    return EXIT_TERMINATED if isinstance(cause, Terminated) else EXIT_INTERRUPTED


def _save_trace() -> str:
    """Write the current exception's traceback to a file and return its path."""
    import tempfile
    import traceback

    with tempfile.NamedTemporaryFile("w", prefix="ov-explain-error-", suffix=".log", delete=False,
                                     encoding="utf-8") as handle:
        traceback.print_exc(file=handle)
    return handle.name


def _run_stoppable(bar: Any, work: Callable[[threading.Event], Any]) -> Any:
    """Run a dataset command's work with the signal handlers of :func:`_stop_on_signals`: a setup error
    is one line (exit 2); a signal ends it with the count of images saved and 128 + signal."""
    from ov_explain.runs.engine import RunInterrupted

    with _stop_on_signals() as (stop, signals):
        try:
            result = work(stop)
        except OvExplainError as exc:
            bar.close()
            _fail(str(exc))
        except RunInterrupted as stopped:
            bar.close()
            click.echo(f"interrupted: {stopped.saved} of {stopped.total} images saved in {stopped.out_dir}; run the "
                       "same command to resume", err=True)
            sys.exit(128 + signals[0])
    bar.close()
    return result


def _fail(message: str, code: int = EXIT_SETUP) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _core() -> Any:
    import openvino as ov

    return ov.Core()


class _Commands(click.Group):
    """The command group: SIGTERM ends work as Ctrl-C does, and either exits 128 + signal, quietly."""

    def invoke(self, ctx: click.Context) -> Any:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as stop:
            click.echo("interrupted", err=True)
            sys.exit(_interrupt_status(stop))
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:  # a bug: one line for the user, the whole trace in a file
            trace = _save_trace()
            logger.debug("unexpected error", exc_info=True)
            click.echo(f"error: unexpected {type(exc).__name__}: {one_line(exc)} (full trace in {trace}; "
                       "-vv also prints it)", err=True)
            sys.exit(EXIT_UNEXPECTED)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ov-explain")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
def main(verbose: int, quiet: bool) -> None:
    """Predict, explain and audit image classifiers on OpenVINO (CPU / GPU / NPU)."""
    _configure_logging(verbose, quiet)


# ----- devices --------------------------------------------------------------------------------------
@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--priority", default=",".join(DEFAULT_PRIORITY), show_default=True,
              help="AUTO policy order to evaluate.")
def devices(as_json: bool, priority: str) -> None:
    """List OpenVINO devices, their capabilities, and what AUTO would pick."""
    core = _core()
    found = discover(core)
    order = tuple(p.strip().upper() for p in priority.split(",") if p.strip())
    if not order:
        _fail(f"--priority {priority!r}: expected device names such as NPU,GPU,CPU")
    try:
        choice = auto_choice(core, order)
    except OvExplainError as exc:
        _fail(f"--priority {priority}: {exc}")
    cache = default_cache_dir()
    if as_json:
        click.echo(json.dumps({"devices": [d.to_dict() for d in found], "auto_priority": list(order),
                               "auto_choice": choice, "cache_dir": str(cache) if cache else None}, indent=2))
        return
    for device in found:
        mark = "*" if device.name == choice else " "
        click.echo(f"{mark} {device.name:8s} {device.full_name}")
        if device.capabilities:
            click.echo(f"  {'':8s} capabilities: {', '.join(device.capabilities)}")
        if device.precisions or device.default_precision:
            click.echo(f"  {'':8s} precision: {device.default_precision or 'unknown'} by default; offers "
                       f"{', '.join(device.precisions) or 'unknown'}")
        arch = device.properties.get("DEVICE_ARCHITECTURE")
        if arch:
            click.echo(f"  {'':8s} architecture: {arch}")
    click.echo(f"AUTO ({','.join(order)}) picks: {choice or 'nothing available'}")
    click.echo(f"compiled-model cache: {cache or 'off'}")


# ----- shared model options -------------------------------------------------------------------------
def model_options(command: Any) -> Any:
    options = [
        click.option("--model", "model_path", type=click.Path(path_type=Path),
                     help="IR .xml, .onnx, or a folder with one. Default: the bundled EfficientNet-Lite0."),
        click.option("--preprocess", help="A .json: an ov_explain spec, a timm pretrained_cfg / hub config.json or a "
                                          "Hugging Face preprocessor_config.json; or 'package.module:function' or "
                                          "'path/to/file.py:function'. Default: the model's own."),
        click.option("--labels", type=click.Path(path_type=Path), help="Class names, one per line."),
        click.option("--device", default="AUTO", show_default=True,
                     help="AUTO, AUTO:GPU,CPU (priority list) or one device such as CPU, GPU.0, NPU."),
        click.option("--output", "output_kind", type=click.Choice(["auto", "logits", "probabilities"]),
                     default="auto", show_default=True, help="What the model outputs (softmax only on logits)."),
        click.option("--precision", type=click.Choice(list(PRECISIONS)), default=DEFAULT_PRECISION,
                     show_default=True, help="Working precision: f32 gives the same numbers on every CPU; "
                                             "device is what the device runs by default (bf16 on CPUs with AMX, "
                                             "f16 on GPU and NPU)."),
        click.option("--no-cache", is_flag=True, help="Do not use the compiled-model cache."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def readout_option(command: Any) -> Any:
    return click.option("--readout", type=click.Choice(["logit", "probability"]),
                        help="White-box class scores: logit (before a softmax in the graph) or probability. "
                             "Default: probability for cam, logit for reciprocam and vitreciprocam.")(command)


def _load_classifier(model_path: Path | None, preprocess: str | None, labels: Path | None, device: str,
                     output_kind: str, precision: str, no_cache: bool, hint: str) -> Any:
    from ov_explain.core.model import Classifier

    try:
        DeviceRequest.parse(device)
        return Classifier(model_path, device=device, preprocess=preprocess, labels=labels, output=output_kind,
                          hint=hint, cache_dir=None if no_cache else "default", precision=precision)
    except OvExplainError as exc:
        _fail(str(exc))


# ----- predict ------------------------------------------------------------------------------------
@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@model_options
@click.option("-k", "--top-k", default=5, show_default=True, type=click.IntRange(min=1), help="Classes per image.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def predict(images: tuple[Path, ...], model_path: Path | None, preprocess: str | None, labels: Path | None,
            device: str, output_kind: str, precision: str, no_cache: bool, top_k: int, as_json: bool) -> None:
    """Top-k classes for each IMAGE (a file, or a folder of images)."""
    images = tuple(_image_paths(images))
    hint = "THROUGHPUT" if len(images) > 1 else "LATENCY"
    classifier = _load_classifier(model_path, preprocess, labels, device, output_kind, precision, no_cache, hint)
    errors: list[dict[str, str]] = []

    def on_error(source: str, error: OvExplainError) -> None:
        errors.append({"source": source, "error": str(error)})
        click.echo(f"error: {error}", err=True)

    results = []
    with classifier:
        for prediction in classifier.predict_many(images, top_k=top_k, on_error=on_error):
            results.append(prediction)
            if not as_json:
                click.echo(f"{prediction.source}  [{prediction.device} {prediction.precision}]")
                for rank, score in enumerate(prediction.top, 1):
                    name = score.name if score.name is not None else f"class {score.index}"
                    click.echo(f"  {rank}. {name:32s} {score.probability:.3f}")
    if as_json:
        click.echo(json.dumps({"model": str(classifier.files.model), "device": classifier.device,
                               "precision": classifier.precision, "requested_precision": precision,
                               "predictions": [p.to_dict() for p in results], "errors": errors}, indent=2))
    elif errors:
        click.echo(f"{len(errors)} of {len(images)} images failed", err=True)
    sys.exit(EXIT_PARTIAL if errors else EXIT_OK)


def _image_paths(paths: tuple[Path, ...]) -> list[Path]:
    """IMAGE arguments with each folder replaced by its images; what else a folder holds is one line each."""
    from ov_explain.core.images import IMAGE_SUFFIXES, expand_images

    images, skipped = expand_images(paths)
    for path in skipped:
        why = "a folder inside a folder (not searched)" if path.is_dir() else \
            f"not an image file ({', '.join(sorted(IMAGE_SUFFIXES))})"
        click.echo(f"skipped: {path}: {why}", err=True)
    if not images:
        _fail(f"{', '.join(map(str, paths))}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return images


# ----- explain --------------------------------------------------------------------------------------
def _parse_targets(values: tuple[str, ...]) -> Any:
    items = [part.strip() for value in values for part in value.split(",") if part.strip()]
    if not items:
        return "predicted"
    if len(items) == 1 and items[0] in ("predicted", "all"):
        return items[0]
    return [int(i) if i.isdigit() else i for i in items]


def _progress_bar(description: str, unit: str = "step", leave: bool = False) -> Any:
    """A stderr progress bar and the (done, total) callback that moves it."""
    from tqdm import tqdm

    bar = tqdm(total=0, desc=description, unit=unit, leave=leave, disable=None, file=sys.stderr,
               dynamic_ncols=True)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)  # through update(): tqdm's rate and ETA follow

    return bar, update


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@model_options
@click.option("--mode", type=click.Choice(list(MODES)), default="auto", show_default=True)
@click.option("--method", type=click.Choice(method_names()),
              help="Default: vitreciprocam for transformers; cam where the head is global average pooling + "
                   "linear, else reciprocam (white-box); aise (black-box).")
@click.option("--target-layer", help="White-box: node name of the feature map (CNN) or of the token stream "
                                     "entering a transformer block (default: auto).")
@click.option("--targets", multiple=True, help="predicted (default), all, or class names/indices (repeat or "
                                              "comma-separate).")
@click.option("-k", "--top-k", default=3, show_default=True, type=click.IntRange(min=1),
              help="With --targets predicted: at most this many classes.")
@click.option("--threshold", default=0.1, show_default=True, type=click.FloatRange(0, 1),
              help="With --targets predicted: also explain classes at least this probable.")
@click.option("--preset", type=click.Choice(list(PRESETS)), default="balance", show_default=True,
              help="Black-box quality/speed preset (RISE 1000/5000/10000 masks).")
@click.option("--seed", default=0, show_default=True, type=int, help="Black-box random seed.")
@click.option("--backend", type=click.Choice(list(BACKENDS)), default="native", show_default=True,
              help="openvino-xai needs the xai extra (OpenVINO 2024.4).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("explanations"), show_default=True)
@click.option("--raw", is_flag=True, help="Also save the raw maps (feature resolution) as .npy.")
@click.option("--colormap", default="jet", show_default=True)
@click.option("--weight", default=0.5, show_default=True, type=click.FloatRange(0, 1), help="Overlay opacity.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report on stdout.")
@readout_option
def explain(images: tuple[Path, ...], model_path: Path | None, preprocess: str | None, labels: Path | None,
            device: str, output_kind: str, precision: str, no_cache: bool, mode: str, method: str | None,
            target_layer: str | None, targets: tuple[str, ...], top_k: int, threshold: float, preset: str, seed: int,
            backend: str, out_dir: Path, raw: bool, colormap: str, weight: float, as_json: bool,
            readout: str | None) -> None:
    """Explain each IMAGE (a file, or a folder of images): overlays (and raw maps) in --out, a summary of
    what ran."""
    import numpy as np

    from ov_explain.core.images import read_image
    from ov_explain.core.storage import ensure_writable_folder
    from ov_explain.explain import create_explainer
    from ov_explain.explain.base import select_targets
    from ov_explain.render import COLORMAPS
    from ov_explain.runs.naming import safe_component
    from ov_explain.runs.writer import MapStyle, to_bgr, write_map_files

    if colormap not in COLORMAPS:
        _fail(f"unknown colormap {colormap!r}; known: {', '.join(COLORMAPS)}")
    images = tuple(_image_paths(images))
    classifier = _load_classifier(model_path, preprocess, labels, device, output_kind, precision, no_cache,
                                  "LATENCY")
    try:
        explainer = create_explainer(classifier, backend=backend, mode=mode, method=method,
                                     target_layer=target_layer, preset=preset, seed=seed,
                                     **({} if readout is None else {"readout": readout}))
    except OvExplainError as exc:
        _fail(str(exc))
    wanted = _parse_targets(targets)
    if not isinstance(wanted, str):  # class names and indices are checked once, before any image
        try:
            select_targets(wanted, np.zeros(classifier.num_classes, np.float32), classifier.labels)
        except OvExplainError as exc:
            _fail(f"--targets: {exc}")
    try:
        ensure_writable_folder(out_dir)
    except OvExplainError as exc:
        _fail(f"--out {exc}")
    style = MapStyle(colormap, weight, save_raw=raw)  # the audit's JPEG quality too
    report, errors, used_stems = [], [], set()
    for path in images:
        try:
            pixels = read_image(path)
            bar, update = _progress_bar(f"{path.name} {explainer.method}") if explainer.mode == "blackbox" \
                else (None, None)
            try:
                started = time.perf_counter()
                prepared = explainer.prepare(pixels, source=str(path))
                result = explainer.explain_prepared(prepared, wanted, top_k=top_k, threshold=threshold,
                                                    progress=update,
                                                    preprocess_ms=(time.perf_counter() - started) * 1000)
            finally:
                if bar is not None:
                    bar.close()
        except OvExplainError as exc:
            errors.append({"source": str(path), "error": str(exc)})
            click.echo(f"error: {exc}", err=True)
            continue
        stem = safe_component(path.stem)
        while stem in used_stems:
            stem += "_2"
        used_stems.add(stem)
        entry = result.to_dict()
        bgr = to_bgr(pixels)
        for saliency, item in zip(result.maps, entry["maps"]):
            files = write_map_files(out_dir, f"{stem}_{explainer.method}_{safe_component(saliency.label)}", bgr,
                                    saliency, style)
            item["overlay"] = str(out_dir / files.overlay)
            if files.raw is not None:
                item["raw"] = str(out_dir / files.raw)
        report.append(entry)
        if not as_json:
            layer = f", layer {result.target_layer}" if result.target_layer else ""
            click.echo(f"{path}: {result.method} ({result.mode}{layer}) on {result.device} in {result.precision}, "
                       f"{result.inferences} inference(s), {sum(result.timings_ms.values()):.0f} ms")
            for saliency, item in zip(result.maps, entry["maps"]):
                probability = "" if saliency.probability is None else f" {saliency.probability:.3f}"
                click.echo(f"  {saliency.label}{probability} -> {item['overlay']}")
    if as_json:
        click.echo(json.dumps({"model": str(classifier.files.model), "mode": explainer.mode,
                               "method": explainer.method, "backend": backend, "device": explainer.device,
                               "precision": explainer.precision, "requested_precision": precision,
                               "fallback_reason": getattr(explainer, "fallback_reason", None),
                               "explanations": report, "errors": errors}, indent=2))
    elif errors:
        click.echo(f"{len(errors)} of {len(images)} images failed", err=True)
    explainer.close()
    classifier.close()
    sys.exit(EXIT_PARTIAL if errors else EXIT_OK)


# ----- audit --------------------------------------------------------------------------------------
@main.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@model_options
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("ov-explain-audit"),
              show_default=True, help="Output folder; an existing audit there of the same settings is resumed.")
@click.option("--kind", type=click.Choice(["auto", "folders", "csv", "jsonl", "unlabeled"]), default="auto",
              show_default=True, help="Dataset layout (auto: by suffix / folder contents).")
@click.option("--label-map", type=click.Path(path_type=Path),
              help="Folder ids to classes: 'id,class' lines or ids in class order (default: the model's "
                   "synsets file when there is one).")
@click.option("--mode", type=click.Choice(list(MODES)), default="auto", show_default=True)
@click.option("--method", type=click.Choice(method_names()),
              help="Default: vitreciprocam for transformers; cam where the head is global average pooling + "
                   "linear, else reciprocam (white-box); aise (black-box).")
@click.option("--target-layer", help="White-box: node name of the feature map (CNN) or of the token stream "
                                     "entering a transformer block (default: auto).")
@click.option("--preset", type=click.Choice(list(PRESETS)), default="balance", show_default=True)
@click.option("--seed", default=0, show_default=True, type=int, help="Black-box random seed.")
@click.option("--high-confidence", default=0.5, show_default=True, type=click.FloatRange(0, 1, min_open=True),
              help="Top-1 probability from which a prediction counts as confident.")
@click.option("--two-predictions", default=0.2, show_default=True, type=click.FloatRange(0, 1, min_open=True),
              help="Runner-up probability from which two predictions compete.")
@click.option("-k", "--top-k", default=5, show_default=True, type=click.IntRange(min=1),
              help="Predictions per image in the manifest.")
@click.option("--classes", help="Only these dataset labels (comma-separated).")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N images (after --sample).")
@click.option("--sample", type=click.IntRange(min=1), help="A random subset of N images.")
@click.option("--sample-seed", default=0, show_default=True, type=int, help="Seed for --sample.")
@click.option("--raw/--no-raw", default=None,
              help="Keep the raw maps (.npy, a few hundred bytes at 7x7): what `ov-explain export` reads. "
                   "Default: kept (a resumed audit keeps its own choice).")
@click.option("--rgba", is_flag=True, help="Also save RGBA colourised maps (.rgba.png).")
@click.option("--no-grids", is_flag=True, help="Skip the per-case picture grids.")
@click.option("--no-report", is_flag=True, help="Skip report.html.")
@click.option("--workers", type=click.IntRange(min=1),
              help="Inferences in flight for the whole audit (default: what fills the device; white-box: "
                   "images at once, black-box: shared by two images).")
@click.option("--backend", type=click.Choice(list(BACKENDS)), default="native", show_default=True,
              help="openvino-xai needs the xai extra (OpenVINO 2024.4).")
@click.option("--restart", is_flag=True, help="Delete the audit in --out and start over.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where the per-image work runs: this process, or Ray Data actors (the distributed extra).")
@click.option("--ray-address", help="Ray: the cluster (auto: the one `ray start` runs here; ray://host:port). "
                                    "Default: a local cluster for this run.")
@click.option("--actors", type=click.IntRange(min=1), help="Ray: actors (default: the cluster's CPUs).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Ray: images per batch sent to an actor.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@readout_option
def audit(dataset: Path, model_path: Path | None, preprocess: str | None, labels: Path | None, device: str,
          output_kind: str, precision: str, no_cache: bool, out_dir: Path, kind: str, label_map: Path | None, mode: str,
          method: str | None, target_layer: str | None, preset: str, seed: int, high_confidence: float,
          two_predictions: float, top_k: int, classes: str | None, limit: int | None, sample: int | None,
          sample_seed: int, raw: bool | None, rgba: bool, no_grids: bool, no_report: bool, workers: int | None,
          backend: str, restart: bool, engine: str, ray_address: str | None, actors: int | None, batch_size: int,
          as_json: bool, readout: str | None) -> None:
    """Predict and explain every image of DATASET and sort the maps into case folders.

    DATASET: a folder of class folders (DATASET/<class>/<image>), a .csv or .jsonl list with
    path,label, or a folder of unlabeled images.
    """
    from ov_explain.runs.audit.run import audit as run
    from ov_explain.runs.ray_engine import RayOptions

    bar, update = _progress_bar("audit", "img", leave=True)

    def work(stop: threading.Event) -> Any:
        return run(dataset, out_dir, model=model_path, device=device, mode=mode, method=method,
                   target_layer=target_layer, preset=preset, seed=seed, preprocess=preprocess, labels=labels,
                   label_map=label_map, kind=kind, limit=limit, sample=sample, sample_seed=sample_seed,
                   classes=[c.strip() for c in classes.split(",") if c.strip()] if classes else None,
                   high_confidence=high_confidence, two_predictions=two_predictions, top_k=top_k,
                   save_raw=raw, save_rgba=rgba, grids=not no_grids, report=not no_report, restart=restart,
                   workers=workers, backend=backend, output=output_kind, progress=update,
                   cache_dir=None if no_cache else "default",
                   precision=precision, stop=stop, readout=readout, engine=engine,
                   ray=RayOptions(ray_address, actors, batch_size))

    summary = _run_stoppable(bar, work)
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        layer = f", layer {summary.target_layer}" if summary.target_layer else ""
        click.echo(f"{summary.images} images audited into {summary.out_dir} with {summary.method} "
                   f"({summary.mode}{layer}) on {summary.device} in {summary.precision}; {summary.resumed} resumed, "
                   f"{summary.images_per_second:.1f} images/s")
        for case, count in summary.cases.items():
            click.echo(f"  {case:34s} {count}")
        if summary.top1_accuracy is not None:
            click.echo(f"top-1 accuracy {summary.top1_accuracy:.3f}, top-5 {summary.top5_accuracy:.3f}")
        click.echo(f"manifest: {summary.out_dir / 'manifest.csv'}, summary: {summary.out_dir / 'summary.json'}"
                   + ("" if no_report else f", report: {summary.out_dir / 'report.html'}"))
    if summary.errors:
        click.echo(f"{summary.errors} images could not be audited: see {summary.out_dir / 'errors.csv'}", err=True)
    sys.exit(EXIT_PARTIAL if summary.errors else EXIT_OK)


@main.command()
@click.argument("audit_dir", type=click.Path(path_type=Path))
def report(audit_dir: Path) -> None:
    """Rebuild AUDIT_DIR/report.html from the audit's files."""
    from ov_explain.runs.report import build_report

    try:
        path = build_report(audit_dir)
    except OvExplainError as exc:
        _fail(str(exc))
    click.echo(f"wrote {path}")


# ----- export -----------------------------------------------------------------------------------------
def _storage_options(values: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs: true / false, numbers and JSON objects typed, anything else a string."""
    from ov_explain.export.objects import is_secret_option

    options: dict[str, Any] = {}
    for number, text in enumerate(values, 1):
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or not key:  # the text itself may be a secret: never echoed
            _fail(f"--storage-option number {number}: expected KEY=VALUE, e.g. endpoint_url=http://127.0.0.1:9000")
        typed: Any = value
        if is_secret_option(key):
            pass  # a secret stays the string it is, digits or not
        elif value.lower() in ("true", "false"):
            typed = value.lower() == "true"
        elif value and (value[0] in "{[" or value.lstrip("-").replace(".", "", 1).isdigit()):
            try:
                typed = json.loads(value)
            except json.JSONDecodeError:
                _fail(f"--storage-option {key}: the value is not valid JSON")
        options[key] = typed
    return options


@main.command()
@click.argument("audit_dir", type=click.Path(path_type=Path))
@click.option("--to", "destination", required=True, metavar="DESTINATION",
              help="s3://bucket/prefix (or any fsspec URL: gs://, az://, file://) for RGBA maps + locators, or "
                   "fiftyone:DATASET_NAME for a FiftyOne dataset with heatmaps.")
@click.option("--storage-option", "storage_options", multiple=True, metavar="KEY=VALUE",
              help="Passed to the storage backend, e.g. endpoint_url=http://127.0.0.1:9000, profile=NAME "
                   "(credentials: better from the environment or a profile). Repeatable.")
@click.option("--workers", default=8, show_default=True, type=click.IntRange(min=1), help="Uploads at once.")
@click.option("--include-images", is_flag=True, help="Object storage: upload the original images too "
                                                     "(images/<stem>.<ext>, in the locators as image_locator).")
@click.option("--json", "as_json", is_flag=True, help="Print what was exported as JSON.")
def export(audit_dir: Path, destination: str, storage_options: tuple[str, ...], workers: int, include_images: bool,
           as_json: bool) -> None:
    """Export AUDIT_DIR (an audit's or a drift audit's folder) to object storage or FiftyOne.

    Re-running skips what is already there with the same bytes, so an interrupted export resumes.
    """
    from ov_explain.export import export as run

    options = _storage_options(storage_options)
    bar, update = _progress_bar("export", "map" if destination.startswith("fiftyone:") else "obj", leave=True)
    try:
        report = run(audit_dir, destination, storage_options=options, workers=workers,
                     include_images=include_images, progress=update)
    except OvExplainError as exc:
        bar.close()
        _fail(str(exc))
    bar.close()
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    elif report.dataset is not None:
        click.echo(f"exported {report.images} images and {report.maps} heatmaps of {audit_dir} into the FiftyOne "
                   f"dataset {report.dataset!r} ({report.samples} samples) in {report.seconds:.1f} s; open it with: "
                   f"python -c \"import fiftyone as fo; fo.launch_app(fo.load_dataset('{report.dataset}')).wait()\"")
    else:
        click.echo(f"exported {report.maps} maps of {report.images} images ({report.kind}) to {report.destination}: "
                   f"{report.objects} objects, {report.uploaded} uploaded ({report.bytes_uploaded / 1e3:.1f} kB), "
                   f"{report.unchanged} already there, in {report.seconds:.1f} s")
        if report.locators:
            click.echo(f"locators: {report.locators}")
    if report.failed:
        for line in report.failed[:5]:
            click.echo(f"error: {line}", err=True)
        click.echo(f"{len(report.failed)} of {report.objects} objects failed; run the same command to resume",
                   err=True)
        sys.exit(EXIT_PARTIAL)


# ----- inspect ----------------------------------------------------------------------------------------
@main.command()
@click.argument("model_path", required=False, type=click.Path(path_type=Path))
@click.option("--preprocess", help="Spec .json or function, as for the other commands. Default: the model's own.")
@click.option("--labels", type=click.Path(path_type=Path), help="Class names, one per line.")
@click.option("--output", "output_kind", type=click.Choice(["auto", "logits", "probabilities"]),
              default="auto", show_default=True, help="What the model outputs (default: found from the graph).")
@click.option("--method", type=click.Choice(method_names("whitebox")),
              help="White-box method to try. Default: vitreciprocam for transformers; cam where the head is "
                   "global average pooling + linear, else reciprocam.")
@click.option("--target-layer", help="Node name of the feature map or token stream to try (default: auto).")
@click.option("--precision", type=click.Choice(list(PRECISIONS)), default=DEFAULT_PRECISION, show_default=True,
              help="Working precision each device is asked to compile in.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def inspect(model_path: Path | None, preprocess: str | None, labels: Path | None, output_kind: str,
            method: str | None, target_layer: str | None, precision: str, as_json: bool) -> None:
    """What ov-explain sees in MODEL (default: the bundled one): inputs, outputs, scores, preprocessing,
    the white-box target and whether white-box works, and a compile on every device."""
    from ov_explain.tools.inspect_model import inspect_model

    try:
        found = inspect_model(model_path, preprocess=preprocess, labels=labels, output=output_kind, method=method,
                              target_layer=target_layer, precision=precision)
    except OvExplainError as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps(found.to_dict(), indent=2))
        return
    for line in _inspect_lines(found):
        click.echo(line.rstrip())


def _dims(values: Any) -> str:
    return "x".join("?" if v is None else str(v) for v in values) or "dynamic rank"


def _inspect_lines(found: Any) -> list[str]:
    """The text layout of a :class:`~ov_explain.tools.inspect_model.ModelReport`: one section per topic."""
    row = "  {:14s} {}".format
    scores, spec, white = found.scores, found.preprocess, found.whitebox
    lines = ["Model", row("path", found.model), row("format", f"{found.format}, {found.name!r}, {found.ops} ops"),
             "Inputs"]
    for port in found.inputs:
        declared = f" (the IR declares {port.ir_layout})" if port.ir_layout else ""
        lines.append(row(port.name, f"{port.element_type:5s} {_dims(port.shape):16s} read as {port.layout}{declared}"))
    lines.append("Outputs")
    for port in found.outputs:
        lines.append(row(port.name, f"{port.element_type:5s} {_dims(port.shape):16s} {port.role}"))
    softmax = f", Softmax node {scores.softmax_node}" if scores.softmax_node else ""
    lines += [row("classes", f"{scores.num_classes} from output {scores.output}"),
              row("scores", f"{scores.kind} ({scores.decided_by}{softmax})"),
              row("labels", f"found: {scores.labels_origin}" if scores.labels else "none (classes shown by index)"),
              "Preprocessing", row("origin", spec.origin)]
    if spec.custom_function:
        lines.append(row("function", f"custom; fallback size {spec.size[0]}x{spec.size[1]} {spec.layout}"))
    else:
        crop = f" {spec.crop_fraction:g}" if spec.resize == "center_crop" else ""
        lines += [row("fit", f"{spec.resize}{crop} to {spec.size[0]}x{spec.size[1]}, {spec.interpolation}"),
                  row("normalise", f"{spec.color}, mean {' '.join(f'{m:g}' for m in spec.mean)}, std "
                                   f"{' '.join(f'{s:g}' for s in spec.std)}"),
                  row("layout", f"{spec.layout}{', in the graph (uint8 RGB pixels in)' if spec.embedded else ''}")]
    lines += ["White-box", row("model", "transformer" if white.architecture == "transformer" else "CNN")]
    target = white.target
    if target is None:
        lines.append(row("target", "none"))
    elif target.kind == "token_stream":
        lines.append(row("target", f"{target.name}  token stream {_dims(target.shape)} (grid {_dims(target.grid)}, "
                                   f"{target.aux_tokens} CLS/aux tokens)"))
    else:
        lines.append(row("target", f"{target.name}  feature map {_dims(target.shape)} {target.layout}"))
    if white.linear_head is not None:
        lines.append(row("head", "global average pooling + linear: ReciproCAM's shortcut and cam apply"
                                 if white.linear_head else "no global average pooling + linear head "
                                 "matched: ReciproCAM runs the cloned head on every masked copy"))
    if white.works:
        shortcut = ", algebraic shortcut" if white.shortcut else ""
        readout = f", {white.readout} read-out" if white.readout else ""
        lines.append(row("method", f"{white.method}: OK ({_dims(white.map_size)} maps{readout}{shortcut})"))
    else:
        fallback = f"; auto falls back to black-box {white.fallback}" if white.fallback else \
            "; auto does not fall back"
        lines.append(row("method", f"{white.method}: does not work ({white.reason}){fallback}"))
    for index, other in enumerate(white.other_candidates):
        lines.append(row("candidates" if index == 0 else "", f"{other.name}  {_dims(other.shape)}"))
    lines.append(f"Devices (asked for {found.precision}, no model cache)")
    for device in found.devices:
        if device.ok:
            static = ", static shapes" if device.static_shapes else ""
            lines.append(row(device.device, f"OK      {','.join(device.execution_devices)} {device.precision}, "
                                            f"{device.compile_ms:.0f} ms{static}  ({device.full_name})"))
        else:
            lines.append(row(device.device, f"FAILED  {device.error}  ({device.full_name})"))
    return lines


@main.command("export-xai")
@model_options
@click.option("--method", type=click.Choice(method_names("whitebox")),
              help="Default: vitreciprocam for transformers; cam where the head is global average pooling + linear, "
                   "else reciprocam.")
@click.option("--target-layer", help="Node name of the feature map or token stream (default: auto).")
@click.option("--embed-preprocessing", is_flag=True,
              help="Put the preprocessing into the IR: it takes uint8 RGB NHWC pixels and the device normalises.")
@click.option("--maps", "maps", default="all", show_default=True,
              help="Classes with maps in the IR: all, top-K (each image's K best, chosen in the graph) or "
                   "comma-separated class indices or names.")
@readout_option
@click.option("--out", "out_path", type=click.Path(path_type=Path), required=True, help="Output IR, e.g. xai.xml")
def export_xai(model_path: Path | None, preprocess: str | None, labels: Path | None, device: str, output_kind: str,
               precision: str, no_cache: bool, method: str | None, target_layer: str | None,
               embed_preprocessing: bool, maps: str, readout: str | None, out_path: Path) -> None:
    """Save an IR that outputs predictions and a `saliency_map` in one inference.

    The IR carries its preprocessing for ov_explain and, as model_api's standard `model_info` keys,
    for OpenVINO's model_api. The exported graph is compiled once on --device in --precision before
    it is written, so an export that the device cannot run fails here; the precision that executed
    is printed.
    """
    import openvino as ov

    from ov_explain.core.devices import compile_with_fallback
    from ov_explain.core.labels import resolve_class
    from ov_explain.core.storage import ensure_writable_folder
    from ov_explain.explain import build_xai_model
    from ov_explain.explain.whitebox import MapSelection
    from ov_explain.tools.model_info import add_model_api_info

    if out_path.suffix.lower() != ".xml":
        _fail(f"{out_path}: the output must be an IR path ending in .xml")
    classifier = _load_classifier(model_path, preprocess, labels, device, output_kind, precision, no_cache,
                                  "LATENCY")
    if embed_preprocessing and classifier.custom_fn is not None:
        _fail("--embed-preprocessing needs a preprocessing spec; a custom function cannot go into the graph")
    try:
        selection = MapSelection.parse(maps, lambda item: resolve_class(int(item) if item.isdigit() else item,
                                                                        classifier.labels, classifier.num_classes))
    except OvExplainError as exc:
        _fail(f"--maps: {exc}")
    try:
        xai = build_xai_model(classifier.model, classifier.output_port, method, target_layer=target_layer,
                              maps=selection, output_kind=classifier.output_kind,
                              **({} if readout is None else {"readout": readout}))
        exported = xai.model
        if embed_preprocessing and not classifier.embedded:
            exported = classifier.spec.embed(exported)
        embedded = classifier.embedded or embed_preprocessing
        if classifier.custom_fn is None:
            add_model_api_info(exported, classifier.spec, classifier.labels, embedded=embedded)
        checked = compile_with_fallback(classifier.core, exported, classifier.compile_info.device,
                                        cache_dir=None, precision=precision)
    except OvExplainError as exc:
        _fail(str(exc))
    classifier.close()
    stem = out_path.name[: -len(out_path.suffix)]
    try:
        ensure_writable_folder(out_path.parent)
        ov.save_model(exported, str(out_path), compress_to_fp16=False)
        if classifier.custom_fn is None:
            classifier.spec.to_json(out_path.with_name(f"{stem}.preprocess.json"))
        if classifier.labels is not None:
            out_path.with_name(f"{stem}.labels.txt").write_text("\n".join(classifier.labels) + "\n",
                                                                encoding="utf-8")
    except OvExplainError as exc:
        _fail(f"--out {exc}")
    except (OSError, RuntimeError) as exc:  # OpenVINO's writer raises RuntimeError ("Can't open bin file")
        _fail(f"--out {out_path}: cannot write the IR ({one_line(exc)})")
    readout_text = f", {xai.readout} read-out" if xai.readout else ""
    click.echo(f"wrote {out_path}: {xai.method} at {xai.target_layer} ({xai.map_size[0]}x{xai.map_size[1]} maps "
               f"for {xai.maps.describe()} classes{readout_text}{', algebraic shortcut' if xai.shortcut else ''}); "
               "outputs: "
               + ", ".join(sorted(next(iter(o.get_names()), '?') for o in xai.model.outputs))
               + f"; runs on {','.join(checked.execution_devices)} in {checked.precision}")


# ----- deployment drift -------------------------------------------------------------------------------
@main.command()
@click.argument("model_path", required=False, type=click.Path(path_type=Path))
@click.option("--calibration", required=True, type=click.Path(path_type=Path),
              help="Calibration images: a class-folder dataset, a .csv / .jsonl list or a folder of images.")
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path), help="Output IR, e.g. int8.xml")
@click.option("--subset-size", default=300, show_default=True, type=click.IntRange(min=1),
              help="Calibration images used (at most).")
@click.option("--preset", type=click.Choice(["performance", "mixed"]), default="performance", show_default=True,
              help="NNCF preset: symmetric (performance) or asymmetric activations (mixed).")
@click.option("--model-type", type=click.Choice(["cnn", "transformer"]), default="cnn", show_default=True,
              help="transformer: NNCF's rules for attention blocks.")
@click.option("--preprocess", help="Spec .json (ov_explain, timm or Hugging Face) or function, as for the other "
                                   "commands. Default: the model's own.")
@click.option("--labels", type=click.Path(path_type=Path), help="Class names, one per line.")
def quantize(model_path: Path | None, calibration: Path, out_path: Path, subset_size: int, preset: str,
             model_type: str, preprocess: str | None, labels: Path | None) -> None:
    """Quantize MODEL (default: the bundled one) to INT8 with NNCF; the IR keeps its spec and labels."""
    from ov_explain.tools.quantize import quantize as run

    try:
        report = run(model_path, calibration, out_path, subset_size=subset_size, preset=preset,
                     model_type=model_type, preprocess=preprocess, labels=labels)
    except OvExplainError as exc:
        _fail(str(exc))
    click.echo(f"wrote {report.output}: {report.quantized_ops} quantized ops, calibrated on "
               f"{report.calibration_images} images in {report.seconds:.1f} s; "
               f"{report.size_before_bytes / 1e6:.1f} MB -> {report.size_after_bytes / 1e6:.1f} MB on disk")


@main.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--reference", type=click.Path(path_type=Path), help="Reference IR / ONNX (default: the bundled model).")
@click.option("--candidate", type=click.Path(path_type=Path), help="Candidate IR / ONNX (default: the reference).")
@click.option("--reference-device", default="AUTO", show_default=True)
@click.option("--candidate-device", help="Default: the reference's device.")
@click.option("--reference-precision", type=click.Choice(list(PRECISIONS)), default=DEFAULT_PRECISION,
              show_default=True)
@click.option("--candidate-precision", type=click.Choice(list(PRECISIONS)),
              help="Default: the reference's precision; 'device' compares the model as the device runs it.")
@click.option("--method", type=click.Choice(method_names()), help="Default: the white-box method for the graph.")
@click.option("--preset", type=click.Choice(list(PRESETS)), default="balance", show_default=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("ov-explain-drift"),
              show_default=True, help="Output folder; a drift audit there of the same deployments is resumed.")
@click.option("--label-map", type=click.Path(path_type=Path), help="Folder ids to classes, as for audit.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N images.")
@click.option("--min-correlation", default=0.8, show_default=True, type=click.FloatRange(-1, 1),
              help="A kept prediction whose map correlation is below this: attention moved.")
@click.option("--min-iou", default=0.3, show_default=True, type=click.FloatRange(0, 1),
              help="A kept prediction whose top-10 % overlap is below this: attention moved.")
@click.option("--fail-on", help="Gate, e.g. 'top1-agreement<0.99,map-correlation-p05<0.8': exit 4 when crossed.")
@click.option("--workers", type=click.IntRange(min=1), help="Images at once (default: both devices' requests).")
@click.option("--restart", is_flag=True, help="Delete the drift audit in --out and start over.")
@click.option("--no-report", is_flag=True, help="Skip report.html.")
@click.option("--no-cache", is_flag=True, help="Do not use the compiled-model cache.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def drift(dataset: Path, reference: Path | None, candidate: Path | None, reference_device: str,
          candidate_device: str | None, reference_precision: str, candidate_precision: str | None,
          method: str | None, preset: str, out_dir: Path, label_map: Path | None, limit: int | None,
          min_correlation: float, min_iou: float, fail_on: str | None, workers: int | None, restart: bool,
          no_report: bool, no_cache: bool, as_json: bool) -> None:
    """Compare two deployments of a classifier on DATASET: what changed in predictions and maps."""
    from ov_explain.runs.drift.run import DriftThresholds, check_gate, parse_gate
    from ov_explain.runs.drift.run import drift as run

    try:
        limits = parse_gate(fail_on) if fail_on else []
        thresholds = DriftThresholds(min_correlation, min_iou)
    except OvExplainError as exc:
        _fail(str(exc))
    bar, update = _progress_bar("drift", "img", leave=True)

    def work(stop: threading.Event) -> Any:
        return run(dataset, out_dir, reference=reference, candidate=candidate,
                   reference_device=reference_device, candidate_device=candidate_device,
                   reference_precision=reference_precision, candidate_precision=candidate_precision,
                   method=method, preset=preset, label_map=label_map, limit=limit, thresholds=thresholds,
                   restart=restart, workers=workers, report=not no_report, progress=update,
                   cache_dir=None if no_cache else "default", stop=stop)

    summary = _run_stoppable(bar, work)
    crossed = check_gate(summary, limits)
    if as_json:
        click.echo(json.dumps({**summary.to_dict(), "gate": crossed}, indent=2))
    else:
        ref, cand = summary.reference, summary.candidate
        click.echo(f"{summary.images} images compared into {summary.out_dir}: {Path(ref['model']).name} on "
                   f"{ref['device']} in {ref['precision']} vs {Path(cand['model']).name} on {cand['device']} in "
                   f"{cand['precision']} ({summary.resumed} resumed)")
        click.echo(f"  top-1 agreement {summary.top1_agreement}, map correlation median "
                   f"{summary.map_correlation_median}, 5th percentile {summary.map_correlation_p05}")
        for category, count in summary.categories.items():
            click.echo(f"  {category:20s} {count}")
        click.echo(f"rows: {summary.out_dir / 'drift.csv'}, summary: {summary.out_dir / 'summary.json'}"
                   + ("" if no_report else f", report: {summary.out_dir / 'report.html'}"))
    if crossed:
        click.echo("gate failed: " + "; ".join(crossed), err=True)
        sys.exit(EXIT_GATE)
    sys.exit(EXIT_PARTIAL if summary.errors else EXIT_OK)


if __name__ == "__main__":  # pragma: no cover
    main()
