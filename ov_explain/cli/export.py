"""``ov-explain export``: a finished folder to object storage or FiftyOne."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ov_explain.cli.app import EXIT_PARTIAL, fail, main
from ov_explain.cli.options import progress_bar
from ov_explain.core.errors import OvExplainError


# ----- export -----------------------------------------------------------------------------------------
def _storage_options(values: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs: true / false, numbers and JSON objects typed, anything else a string."""
    from ov_explain.export.objects import is_secret_option

    options: dict[str, Any] = {}
    for number, text in enumerate(values, 1):
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or not key:  # the text itself may be a secret: never echoed
            fail(f"--storage-option number {number}: expected KEY=VALUE, e.g. endpoint_url=http://127.0.0.1:9000")
        typed: Any = value
        if is_secret_option(key):
            pass  # a secret stays the string it is, digits or not
        elif value.lower() in ("true", "false"):
            typed = value.lower() == "true"
        elif value and (value[0] in "{[" or value.lstrip("-").replace(".", "", 1).isdigit()):
            try:
                typed = json.loads(value)
            except json.JSONDecodeError:
                fail(f"--storage-option {key}: the value is not valid JSON")
        options[key] = typed
    return options


@main.command(short_help="Export an audit's maps to object storage or a FiftyOne dataset.")
@click.argument("audit_dir", type=click.Path(path_type=Path))
@click.option("--to", "destination", required=True, metavar="DESTINATION",
              help="s3://bucket/prefix (or any fsspec URL: gs://, az://, file://) for RGBA maps + locators, or "
                   "fiftyone:DATASET_NAME for a FiftyOne dataset with heatmaps.")
@click.option("--storage-option", "storage_options", multiple=True, metavar="KEY=VALUE",
              help="Passed to the storage backend, e.g. endpoint_url=http://127.0.0.1:9000, profile=NAME "
                   "(credentials: better from the environment or a profile). Repeatable.")
@click.option("--uploads", "--workers", "uploads", default=8, show_default=True, type=click.IntRange(min=1),
              help="Uploads at once (--workers: its earlier name).")
@click.option("--include-images", is_flag=True, help="Object storage: upload the original images too "
                                                     "(images/STEM.EXT, in the locators as image_locator).")
@click.option("--json", "as_json", is_flag=True, help="Print what was exported as JSON.")
def export(audit_dir: Path, destination: str, storage_options: tuple[str, ...], uploads: int, include_images: bool,
           as_json: bool) -> None:
    """Export AUDIT_DIR (an audit's or a drift audit's folder) to object storage or FiftyOne.

    Re-running skips what is already there with the same bytes, so an interrupted export resumes.
    """
    from ov_explain.export import export as run

    options = _storage_options(storage_options)
    bar, update = progress_bar("export", "map" if destination.startswith("fiftyone:") else "obj", leave=True)
    try:
        report = run(audit_dir, destination, storage_options=options, uploads=uploads,
                     include_images=include_images, progress=update)
    except OvExplainError as exc:
        bar.close()
        fail(str(exc))
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
