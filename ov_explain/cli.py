"""The ``ov-explain`` command line: the only module that imports everything and talks to the terminal.

Exit status: 0 all good; 1 some inputs failed (the others were processed); 2 bad usage or a setup
error (model, preprocessing spec, labels, device) before anything ran.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from . import __version__
from .devices import DEFAULT_PRIORITY, DeviceRequest, auto_choice, candidates_for, default_cache_dir, discover
from .errors import OvExplainError

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_PARTIAL, EXIT_SETUP = 0, 1, 2


class _OneLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def _configure_logging(verbose: int, quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter())
    root = logging.getLogger("ov_explain")
    root.handlers[:] = [handler]
    root.propagate = False
    root.setLevel(logging.ERROR if quiet else logging.DEBUG if verbose > 1 else
                  logging.INFO if verbose else logging.WARNING)


def _fail(message: str, code: int = EXIT_SETUP) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _core() -> Any:
    import openvino as ov

    return ov.Core()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
    try:
        choice = auto_choice(core, order)
    except OvExplainError as exc:
        choice = None
        logger.warning("%s", exc)
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
        click.option("--preprocess", help="Spec .json, or 'package.module:function'. Default: the model's own."),
        click.option("--labels", type=click.Path(path_type=Path), help="Class names, one per line."),
        click.option("--device", default="AUTO", show_default=True,
                     help="AUTO, AUTO:GPU,CPU (priority list) or one device such as CPU, GPU.0, NPU."),
        click.option("--output", "output_kind", type=click.Choice(["auto", "logits", "probabilities"]),
                     default="auto", show_default=True, help="What the model outputs (softmax only on logits)."),
        click.option("--no-cache", is_flag=True, help="Do not use the compiled-model cache."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _load_classifier(model_path: Path | None, preprocess: str | None, labels: Path | None, device: str,
                     output_kind: str, no_cache: bool, hint: str) -> Any:
    from .model import Classifier

    try:
        DeviceRequest.parse(device)
        return Classifier(model_path, device=device, preprocess=preprocess, labels=labels, output=output_kind,
                          hint=hint, cache_dir=None if no_cache else "default")
    except OvExplainError as exc:
        _fail(str(exc))


# ----- predict ------------------------------------------------------------------------------------
@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@model_options
@click.option("-k", "--top-k", default=5, show_default=True, type=click.IntRange(min=1), help="Classes per image.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def predict(images: tuple[Path, ...], model_path: Path | None, preprocess: str | None, labels: Path | None,
            device: str, output_kind: str, no_cache: bool, top_k: int, as_json: bool) -> None:
    """Top-k classes for each IMAGE."""
    hint = "THROUGHPUT" if len(images) > 1 else "LATENCY"
    classifier = _load_classifier(model_path, preprocess, labels, device, output_kind, no_cache, hint)
    errors: list[dict[str, str]] = []

    def on_error(source: str, error: OvExplainError) -> None:
        errors.append({"source": source, "error": str(error)})
        click.echo(f"error: {error}", err=True)

    results = []
    for prediction in classifier.predict_many(images, top_k=top_k, on_error=on_error):
        results.append(prediction)
        if not as_json:
            click.echo(f"{prediction.source}  [{prediction.device}]")
            for rank, score in enumerate(prediction.top, 1):
                name = score.name if score.name is not None else f"class {score.index}"
                click.echo(f"  {rank}. {name:32s} {score.probability:.3f}")
    if as_json:
        click.echo(json.dumps({"model": str(classifier.files.model), "device": classifier.device,
                               "predictions": [p.to_dict() for p in results], "errors": errors}, indent=2))
    elif errors:
        click.echo(f"{len(errors)} of {len(images)} images failed", err=True)
    sys.exit(EXIT_PARTIAL if errors else EXIT_OK)


if __name__ == "__main__":  # pragma: no cover
    main()
