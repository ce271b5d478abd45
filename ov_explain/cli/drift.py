"""``ov-explain quantize`` and ``drift``: an INT8 copy of a model, and two deployments compared."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

import click

from ov_explain.cli.app import EXIT_GATE, EXIT_OK, EXIT_PARTIAL, counted, fail, main, run_stoppable
from ov_explain.cli.options import (
    MODEL_OPTIONS,
    config_options,
    data_options,
    explain_options,
    model_fields,
    progress_bar,
    run_options,
)
from ov_explain.core.config import ModelConfig
from ov_explain.core.devices import (
    DEFAULT_PRECISION,
    PRECISIONS,
)
from ov_explain.core.errors import OvExplainError


# ----- deployment drift -------------------------------------------------------------------------------
@main.command(short_help="Quantize a model to INT8 with NNCF (the quantize extra).")
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
@model_fields("preprocess", "labels")
def quantize(model_path: Path | None, calibration: Path, out_path: Path, subset_size: int, preset: str,
             model_type: str, preprocess: str | None, labels: Path | None) -> None:
    """Quantize MODEL (default: the bundled one) to INT8 with NNCF; the IR keeps its spec and labels."""
    from ov_explain.tools.quantize import quantize as run

    try:
        report = run(model_path, calibration, out_path, subset_size=subset_size, preset=preset,
                     model_type=model_type, preprocess=preprocess, labels=labels)
    except OvExplainError as exc:
        fail(str(exc))
    click.echo(f"wrote {report.output}: {report.quantized_ops} quantized ops, calibrated on "
               f"{report.calibration_images} images in {report.seconds:.1f} s; "
               f"{report.size_before_bytes / 1e6:.1f} MB -> {report.size_after_bytes / 1e6:.1f} MB on disk")


def _deployments(reference: Path | None, candidate: Path | None, reference_device: str,
                 candidate_device: str | None, reference_precision: str, candidate_precision: str | None,
                 preprocess: str | None, labels: Path | None, output_kind: str, no_cache: bool) -> Any:
    """(reference, candidate) model configs: the candidate's options default to the reference's."""
    import dataclasses

    ref = ModelConfig(reference, reference_device, reference_precision, preprocess, labels, output_kind,
                      None if no_cache else "default")
    return ref, dataclasses.replace(ref, path=candidate or reference, device=candidate_device or reference_device,
                                    precision=candidate_precision or reference_precision)


#: The two deployments, as ``deployments: (ModelConfig, ModelConfig)``; the model options both share.
deployment_options = config_options("deployments", _deployments, [
    click.option("--reference", type=click.Path(path_type=Path), help="Reference IR / ONNX (default: the bundled "
                                                                      "model)."),
    click.option("--candidate", type=click.Path(path_type=Path), help="Candidate IR / ONNX (default: the reference)."),
    click.option("--reference-device", default="AUTO", show_default=True),
    click.option("--candidate-device", help="Default: the reference's device."),
    click.option("--reference-precision", type=click.Choice(list(PRECISIONS)), default=DEFAULT_PRECISION,
                 show_default=True),
    click.option("--candidate-precision", type=click.Choice(list(PRECISIONS)),
                 help="Default: the reference's precision; 'device' compares the model as the device runs it."),
    MODEL_OPTIONS["preprocess"], MODEL_OPTIONS["labels"], MODEL_OPTIONS["output"], MODEL_OPTIONS["cache"],
])


def _drift_options(min_correlation: float, min_iou: float, high_confidence: float, two_predictions: float,
                   no_report: bool) -> Any:
    from ov_explain.runs.cases import CaseThresholds
    from ov_explain.runs.drift.run import DriftOptions, DriftThresholds

    return DriftOptions(DriftThresholds(min_correlation, min_iou), CaseThresholds(high_confidence, two_predictions),
                        report=not no_report)


#: When attention moved, which classes are compared, report.html: ``options: DriftOptions``.
drift_options = config_options("options", _drift_options, [
    click.option("--min-correlation", default=0.8, show_default=True, type=click.FloatRange(-1, 1),
                 help="A kept prediction whose map correlation is below this: attention moved."),
    click.option("--min-iou", default=0.3, show_default=True, type=click.FloatRange(0, 1),
                 help="A kept prediction whose top-10 % overlap is below this: attention moved."),
    click.option("--high-confidence", default=0.5, show_default=True, type=click.FloatRange(0, 1, min_open=True),
                 help="The reference's case thresholds, which choose the classes compared (as for audit)."),
    click.option("--two-predictions", default=0.2, show_default=True, type=click.FloatRange(0, 1, min_open=True),
                 help="Runner-up probability from which its map is compared too."),
    click.option("--no-report", is_flag=True, help="Skip report.html."),
])


@main.command(short_help="Compare two deployments image by image: INT8, bf16, another device.")
@click.argument("dataset", type=click.Path(path_type=Path))
@deployment_options
@explain_options()
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("ov-explain-drift"),
              show_default=True, help="Output folder; a drift audit there of the same deployments is resumed.")
@data_options()
@drift_options
@click.option("--fail-on", help="Gate, e.g. 'top1-agreement<0.99,map-correlation-p05<0.8': exit 4 when crossed.")
@run_options("drift audit")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def drift(dataset: Path, deployments: Any, explain: Any, out_dir: Path, data: Any, options: Any,
          fail_on: str | None, run: Any, as_json: bool) -> None:
    """Compare two deployments of a model on DATASET: what changed in predictions and maps (a detector's:
    box by box, matched across the deployments by IoU)."""
    from ov_explain.runs.drift.gate import check_gate, parse_gate
    from ov_explain.runs.drift.run import drift as run_drift

    try:
        limits = parse_gate(fail_on) if fail_on else []
    except OvExplainError as exc:
        fail(str(exc))
    bar, update = progress_bar("drift", "img", leave=True)
    reference, candidate = deployments

    def work(stop: threading.Event) -> Any:
        return run_drift(dataset, out_dir, reference=reference, candidate=candidate, explain=explain, data=data,
                         run=run, options=options, progress=update, stop=stop)

    summary = run_stoppable(bar, work)
    crossed = check_gate(summary, limits)
    if as_json:
        click.echo(json.dumps({**summary.to_dict(), "gate": crossed}, indent=2))
    else:
        ref, cand = summary.reference, summary.candidate
        click.echo(f"{counted(summary.images, 'image')} compared into {summary.out_dir}: {Path(ref['model']).name} on "
                   f"{ref['device']} in {ref['precision']} vs {Path(cand['model']).name} on {cand['device']} in "
                   f"{cand['precision']} ({summary.resumed} resumed)")
        detection = getattr(summary, "task", None) == "detection"
        if detection:
            click.echo(f"  boxes: {summary.reference_boxes} reference, {summary.candidate_boxes} candidate; "
                       f"{summary.kept} kept, {summary.lost} lost, {summary.new} new, {summary.class_changed} "
                       f"changed class; box agreement {summary.box_agreement}, score change median "
                       f"{summary.score_change_median}")
        else:
            click.echo(f"  top-1 agreement {summary.top1_agreement}")
        click.echo(f"  map correlation median {summary.map_correlation_median}, 5th percentile "
                   f"{summary.map_correlation_p05}")
        for case, count in summary.cases.items():
            click.echo(f"  {case:20s} {count}")
        click.echo(f"rows: {summary.out_dir / 'drift.csv'}, summary: {summary.out_dir / 'summary.json'}"
                   + ("" if not options.report else f", report: {summary.out_dir / 'report.html'}"))
    if crossed:
        click.echo("gate failed: " + "; ".join(crossed), err=True)
        sys.exit(EXIT_GATE)
    sys.exit(EXIT_PARTIAL if summary.errors else EXIT_OK)
