"""``ov-explain audit`` and ``report``: a dataset into case folders, and its HTML report again."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

import click

from ov_explain.cli.app import EXIT_OK, EXIT_PARTIAL, counted, fail, main, run_stoppable
from ov_explain.cli.options import (
    config_options,
    data_options,
    explain_options,
    model_options,
    progress_bar,
    run_options,
)
from ov_explain.core.config import ModelConfig
from ov_explain.core.errors import OvExplainError
from ov_explain.explain.config import ExplainConfig
from ov_explain.runs.config import DatasetConfig, RunConfig


# ----- audit --------------------------------------------------------------------------------------
def _audit_options(high_confidence: float, two_predictions: float, match_iou: float, mislocalized_iou: float,
                   top_k: int, raw: bool | None, rgba: bool, no_grids: bool, no_report: bool) -> Any:
    from ov_explain.runs.audit.run import AuditOptions
    from ov_explain.runs.cases import CaseThresholds

    return AuditOptions(CaseThresholds(high_confidence, two_predictions), top_k=top_k, save_raw=raw, save_rgba=rgba,
                        grids=not no_grids, report=not no_report, match_iou=match_iou,
                        mislocalized_iou=mislocalized_iou)


#: What an audit writes and how it decides cases, as ``options: AuditOptions``.
audit_options = config_options("options", _audit_options, [
    click.option("--high-confidence", default=0.5, show_default=True, type=click.FloatRange(0, 1, min_open=True),
                 help="Top-1 probability from which a prediction counts as confident."),
    click.option("--two-predictions", default=0.2, show_default=True, type=click.FloatRange(0, 1, min_open=True),
                 help="Runner-up probability from which two predictions compete."),
    click.option("--match-iou", default=0.5, show_default=True, type=click.FloatRange(0, 1, min_open=True),
                 help="Detectors: the IoU from which a detection matches a ground-truth box of its class."),
    click.option("--mislocalized-iou", default=0.1, show_default=True, type=click.FloatRange(0, 1, min_open=True),
                 help="Detectors: the lowest IoU of a mislocalised detection (below: background)."),
    click.option("-k", "--top-k", default=5, show_default=True, type=click.IntRange(min=1),
                 help="Predictions per image in the manifest."),
    click.option("--raw/--no-raw", default=None,
                 help="Keep the raw maps (.npy, a few hundred bytes at 7x7): what `ov-explain export` reads. "
                      "Default: kept (a resumed audit keeps its own choice)."),
    click.option("--rgba", is_flag=True, help="Also save RGBA colourised maps (.rgba.png)."),
    click.option("--no-grids", is_flag=True, help="Skip the per-case picture grids."),
    click.option("--no-report", is_flag=True, help="Skip report.html."),
])


@main.command(short_help="Audit a dataset: maps sorted into case folders, manifest, summary, report.")
@click.argument("dataset", type=click.Path(path_type=Path))
@model_options
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("ov-explain-audit"),
              show_default=True, help="Output folder; an existing audit there of the same settings is resumed.")
@data_options()
@explain_options()
@audit_options
@run_options("audit")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def audit(dataset: Path, model: ModelConfig, out_dir: Path, data: DatasetConfig, explain: ExplainConfig,
          options: Any, run: RunConfig, as_json: bool) -> None:
    """Predict and explain every image of DATASET and sort the maps into case folders.

    DATASET: a folder of class folders (DATASET/CLASS/IMAGE), a .csv or .jsonl list with
    path,label, or a folder of unlabeled images. A detector audits a COCO instances .json, a YOLO folder
    (images/, labels/, data.yaml) or a folder of images, with a case and a map per box.
    """
    from ov_explain.runs.audit.run import audit as run_audit

    bar, update = progress_bar("audit", "img", leave=True)

    def work(stop: threading.Event) -> Any:
        return run_audit(dataset, out_dir, model=model, explain=explain, data=data, run=run, options=options,
                         progress=update, stop=stop)

    summary = run_stoppable(bar, work)
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
    elif getattr(summary, "task", None) == "detection":
        _print_detection_summary(summary, options)
    else:
        layer = f", layer {summary.target_layer}" if summary.target_layer else ""
        click.echo(f"{counted(summary.images, 'image')} audited into {summary.out_dir} with {summary.method} "
                   f"({summary.mode}{layer}) on {summary.device} in {summary.precision}; {summary.resumed} resumed, "
                   f"{_speed(summary)}")
        for case, count in summary.cases.items():
            click.echo(f"  {case:34s} {count}")
        if summary.top1_accuracy is not None:
            click.echo(f"top-1 accuracy {summary.top1_accuracy:.3f}, top-5 {summary.top5_accuracy:.3f}")
        click.echo(f"manifest: {summary.out_dir / 'manifest.csv'}, summary: {summary.out_dir / 'summary.json'}"
                   + (f", report: {summary.out_dir / 'report.html'}" if options.report else ""))
    if summary.errors:
        click.echo(f"{counted(summary.errors, 'image')} could not be audited: see {summary.out_dir / 'errors.csv'}",
                   err=True)
    sys.exit(EXIT_PARTIAL if summary.errors else EXIT_OK)


def _print_detection_summary(summary: Any, options: Any) -> None:
    layer = f", cut at {summary.target_layer}" if summary.target_layer else ""
    click.echo(f"{counted(summary.images, 'image')}, {counted(summary.boxes, 'box', 'boxes')} audited into "
               f"{summary.out_dir} with {summary.method} "
               f"({summary.mode}{layer}) on {summary.device} in {summary.precision}; {summary.resumed} resumed, "
               f"{_speed(summary)}")
    for case, count in summary.cases.items():
        click.echo(f"  {case:42s} {count}")
    if summary.images_without_boxes:
        click.echo(f"  {'(images without any box)':42s} {summary.images_without_boxes}")
    named = "AP50" if summary.ap_iou == 0.5 else f"AP@{summary.ap_iou:g}"
    for name, scores in summary.per_class.items():
        shown = ", ".join(f"{label} {scores[key]:.3f}" for key, label in (("precision", "precision"),
                                                                          ("recall", "recall"), ("ap", named))
                          if scores[key] is not None)
        click.echo(f"  {name}: {counted(scores['ground_truth'], 'box', 'boxes')}, "
                   f"{counted(scores['detections'], 'detection')}"
                   + (f"; {shown}" if shown else ""))
    if summary.mean_ap is not None:
        click.echo(f"mean {named} {summary.mean_ap:.3f}")
    click.echo(f"manifest: {summary.out_dir / 'manifest.csv'}, summary: {summary.out_dir / 'summary.json'}"
               + (f", report: {summary.out_dir / 'report.html'}" if options.report else ""))


@main.command(short_help="Rebuild an audit's report.html from its files.")
@click.argument("audit_dir", type=click.Path(path_type=Path))
def report(audit_dir: Path) -> None:
    """Rebuild AUDIT_DIR/report.html from the audit's files."""
    from ov_explain.runs.report import build_report

    try:
        path = build_report(audit_dir)
    except OvExplainError as exc:
        fail(str(exc))
    click.echo(f"wrote {path}")


def _speed(summary: Any) -> str:
    """The run's images/s, or that every image was already done (a rerun of a finished audit)."""
    if summary.resumed >= summary.images:
        return "nothing left to do"
    return f"{summary.images_per_second:.1f} images/s"
