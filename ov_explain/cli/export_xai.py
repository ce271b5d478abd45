"""``ov-explain export-xai``: an IR that returns the prediction and its saliency map in one inference."""

from __future__ import annotations

from pathlib import Path

import click

from ov_explain.cli.app import fail, main
from ov_explain.cli.options import load_model, model_options, readout_option
from ov_explain.core.config import ModelConfig
from ov_explain.core.errors import OvExplainError
from ov_explain.explain.registry import method_names


@main.command("export-xai", short_help="Save an IR that gives predictions and maps in one inference.")
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
def export_xai(model: ModelConfig, method: str | None, target_layer: str | None,
               embed_preprocessing: bool, maps: str, readout: str | None, out_path: Path) -> None:
    """Save an IR that outputs predictions and a `saliency_map` in one inference.

    The IR carries its preprocessing for ov_explain and, as model_api's standard `model_info` keys,
    for OpenVINO's model_api. The exported graph is compiled once on --device in --precision before
    it is written, so an export that the device cannot run fails here; the precision that executed
    is printed.
    """
    from ov_explain.tools.xai_export import export_detection_xai
    from ov_explain.tools.xai_export import export_xai as run

    loaded = load_model(model, "LATENCY")
    detector = getattr(loaded, "output_format", None) is not None
    try:
        with loaded:
            if detector:
                if method not in (None, "detreciprocam") or target_layer or maps != "all" or embed_preprocessing:
                    fail("a detector's XAI IR is detreciprocam's mosaic, for every anchor and class: --method, "
                         "--target-layer, --maps and --embed-preprocessing are for classifiers")
                done = export_detection_xai(loaded, out_path, readout=readout or "logit")
            else:
                done = run(loaded, out_path, method=method, target_layer=target_layer, maps=maps, readout=readout,
                           embed_preprocessing=embed_preprocessing)
    except OvExplainError as exc:
        fail(str(exc))
    readout_text = f", {done.readout} read-out" if done.readout else ""
    click.echo(f"wrote {out_path}: {done.method} at {done.target_layer} ({done.map_size[0]}x{done.map_size[1]} maps "
               f"for {done.classes} classes{readout_text}{', algebraic shortcut' if done.shortcut else ''}); "
               f"outputs: {', '.join(done.outputs)}; runs on {','.join(done.execution_devices)} in {done.precision}")
