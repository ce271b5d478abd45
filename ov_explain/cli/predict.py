"""``ov-explain predict``: the top classes of each image."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ov_explain.cli.app import EXIT_OK, EXIT_PARTIAL, main
from ov_explain.cli.options import image_paths, load_classifier, model_options
from ov_explain.core.config import ModelConfig
from ov_explain.core.errors import OvExplainError


# ----- predict ------------------------------------------------------------------------------------
@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@model_options
@click.option("-k", "--top-k", default=5, show_default=True, type=click.IntRange(min=1), help="Classes per image.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def predict(images: tuple[Path, ...], model: ModelConfig, top_k: int, as_json: bool) -> None:
    """Top-k classes for each IMAGE (a file, or a folder of images)."""
    images = tuple(image_paths(images))
    hint = "THROUGHPUT" if len(images) > 1 else "LATENCY"
    classifier = load_classifier(model, hint)
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
                               "precision": classifier.precision, "requested_precision": model.precision,
                               "predictions": [p.to_dict() for p in results], "errors": errors}, indent=2))
    elif errors:
        click.echo(f"{len(errors)} of {len(images)} images failed", err=True)
    sys.exit(EXIT_PARTIAL if errors else EXIT_OK)
