"""``ov-explain audit`` and ``report``: a dataset into case folders, and its HTML report again."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

import click

from ov_explain.cli.app import EXIT_OK, EXIT_PARTIAL, fail, main, run_stoppable
from ov_explain.cli.options import method_options, model_options, progress_bar, readout_option
from ov_explain.core.errors import OvExplainError
from ov_explain.explain import BACKENDS
from ov_explain.explain.registry import PRESETS


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
@method_options
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

    bar, update = progress_bar("audit", "img", leave=True)

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

    summary = run_stoppable(bar, work)
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
        fail(str(exc))
    click.echo(f"wrote {path}")
