"""``ov-explain inspect``: what the tool sees in a model, before anything runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ov_explain.cli.app import fail, main
from ov_explain.cli.options import model_fields
from ov_explain.core.errors import OvExplainError
from ov_explain.explain.registry import method_names


# ----- inspect ----------------------------------------------------------------------------------------
@main.command(short_help="What ov-explain sees in a model, and whether white-box works.")
@click.argument("model_path", required=False, type=click.Path(path_type=Path))
@model_fields("preprocess", "labels", "output", "task", "output_format")
@click.option("--method", type=click.Choice(method_names("whitebox")),
              help="White-box method to try. Default: vitreciprocam for transformers; cam where the head is "
                   "global average pooling + linear, else reciprocam.")
@click.option("--target-layer", help="Node name of the feature map or token stream to try (default: auto).")
@model_fields("precision")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def inspect(model_path: Path | None, preprocess: str | None, labels: Path | None, output_kind: str, task: str,
            output_format: str, method: str | None, target_layer: str | None, precision: str, as_json: bool) -> None:
    """What ov-explain sees in MODEL (default: the bundled one): inputs, outputs, scores, preprocessing,
    the white-box target and whether white-box works, and a compile on every device."""
    from ov_explain.tools.inspect_model import inspect_model

    try:
        found = inspect_model(model_path, preprocess=preprocess, labels=labels, output=output_kind, method=method,
                              target_layer=target_layer, precision=precision, task=task, output_format=output_format)
    except OvExplainError as exc:
        fail(str(exc))
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
    if found.detection is not None:
        lines += _detection_lines(found.detection, row)
    else:
        softmax = f", Softmax node {scores.softmax_node}" if scores.softmax_node else ""
        lines += [row("classes", f"{scores.num_classes} from output {scores.output}"),
                  row("scores", f"{scores.kind} ({scores.decided_by}{softmax})"),
                  row("labels", f"found: {scores.labels_origin}" if scores.labels else "none (classes shown by index)")]
    lines += ["Preprocessing", row("origin", spec.origin)]
    if spec.custom_function:
        lines.append(row("function", f"custom; fallback size {spec.size[0]}x{spec.size[1]} {spec.layout}"))
    else:
        crop = f" {spec.crop_fraction:g}" if spec.resize == "center_crop" else ""
        pad = f", padding {spec.pad_value}" if spec.resize == "letterbox" else ""
        lines += [row("fit", f"{spec.resize}{crop} to {spec.size[0]}x{spec.size[1]}, {spec.interpolation}{pad}"),
                  row("normalise", f"{spec.color}, mean {' '.join(f'{m:g}' for m in spec.mean)}, std "
                                   f"{' '.join(f'{s:g}' for s in spec.std)}"),
                  row("layout", f"{spec.layout}{', in the graph (uint8 RGB pixels in)' if spec.embedded else ''}")]
    if found.detection is not None:
        lines.append("Explaining")
        if white.works:
            cuts = [*white.other_candidates, white.target]  # finest first
            lines += [row("white-box", f"{white.method}: OK ({_dims(white.map_size)} maps per box, {white.readout} "
                                       f"read-out, one inference); auto runs it"),
                      *[row("cut" if i == 0 else "", f"{c.name}  {_dims(c.shape)}") for i, c in enumerate(cuts)]]
        else:
            lines.append(row("white-box", f"{white.method}: does not work ({white.reason}); auto runs "
                                          f"{white.fallback}"))
        return lines + [row("methods", ", ".join(found.detection.methods))] + _device_lines(found, row)
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
    return lines + _device_lines(found, row)


def _detection_lines(detection: Any, row: Any) -> list[str]:
    shown = ", ".join(detection.classes) + (", ..." if detection.num_classes > len(detection.classes) else "")
    exporter = ", ".join(f"{k} {v}" for k, v in sorted(detection.exporter.items())
                         if k in ("task", "imgsz", "stride", "version"))
    return ["Detection", row("task", "detection" + (f" (exporter: {exporter})" if exporter else "")),
            row("format", f"{detection.output_format} ({detection.decided_by})"),
            row("classes", f"{detection.num_classes}: {shown}"), row("labels", detection.labels_origin),
            row("thresholds", f"confidence {detection.confidence:g}, NMS IoU {detection.iou:g} (class-aware)")]


def _device_lines(found: Any, row: Any) -> list[str]:
    lines = [f"Devices (asked for {found.precision}, no model cache)"]
    for device in found.devices:
        if device.ok:
            static = ", static shapes" if device.static_shapes else ""
            lines.append(row(device.device, f"OK      {','.join(device.execution_devices)} {device.precision}, "
                                            f"{device.compile_ms:.0f} ms{static}  ({device.full_name})"))
        else:
            lines.append(row(device.device, f"FAILED  {device.error}  ({device.full_name})"))
    return lines
