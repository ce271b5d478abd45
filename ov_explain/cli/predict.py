"""``ov-explain predict``: the top classes of each image."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ov_explain.cli.app import EXIT_OK, EXIT_PARTIAL, main
from ov_explain.cli.options import image_paths, load_model, model_options
from ov_explain.core.config import ModelConfig
from ov_explain.core.errors import OvExplainError


# ----- predict ------------------------------------------------------------------------------------
@main.command(short_help="Top-k classes per image, with the device and precision that ran.")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@model_options
@click.option("-k", "--top-k", default=5, show_default=True, type=click.IntRange(min=1), help="Classes per image.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def predict(images: tuple[Path, ...], model: ModelConfig, top_k: int, as_json: bool) -> None:
    """Top-k classes for each IMAGE (a file, or a folder of images)."""
    images = tuple(image_paths(images))
    hint = "THROUGHPUT" if len(images) > 1 else "LATENCY"
    classifier = load_model(model, hint)
    errors: list[dict[str, str]] = []

    def on_error(source: str, error: OvExplainError) -> None:
        errors.append({"source": source, "error": str(error)})
        click.echo(f"error: {error}", err=True)

    if getattr(classifier, "output_format", None) is not None:  # a detector
        _detections(classifier, images, model, on_error, errors, as_json)
        sys.exit(EXIT_PARTIAL if errors else EXIT_OK)
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
                               "precision": classifier.precision, "requested_precision": model.precision,
                               "predictions": [p.to_dict() for p in results], "errors": errors}, indent=2))
    elif errors:
        click.echo(f"{len(errors)} of {len(images)} images failed", err=True)
    sys.exit(EXIT_PARTIAL if errors else EXIT_OK)


def _detections(detector: Any, images: tuple[Path, ...], model: ModelConfig, on_error: Any,
                errors: list[dict[str, str]], as_json: bool) -> None:
    """Each image's boxes (x1, y1, x2, y2 in its own pixels), labels and scores."""
    results = []
    with detector:
        for result in detector.predict_many(images, on_error=on_error):
            results.append(result)
            if not as_json:
                count = len(result.detections)
                click.echo(f"{result.source}  [{result.device} {result.precision}] "
                           f"{count or 'no'} detection{'' if count == 1 else 's'}")
                for found in result.detections:
                    box = ", ".join(f"{v:.0f}" for v in found.box)
                    click.echo(f"  {found.label:24s} {found.score:.3f}  box ({box})")
    if as_json:
        click.echo(json.dumps({"model": str(detector.files.model), "task": "detection",
                               "output_format": detector.output_format, "device": detector.device,
                               "precision": detector.precision, "requested_precision": model.precision,
                               "detections": [r.to_dict() for r in results], "errors": errors}, indent=2))
    elif errors:
        click.echo(f"{len(errors)} of {len(images)} images failed", err=True)
