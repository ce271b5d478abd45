"""``ov-explain export-xai``: an IR that returns the prediction and its saliency map in one inference."""

from __future__ import annotations

from pathlib import Path

import click

from ov_explain.cli.app import fail, main
from ov_explain.cli.options import load_classifier, model_options, readout_option
from ov_explain.core.errors import OvExplainError, one_line
from ov_explain.explain.registry import method_names


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
        fail(f"{out_path}: the output must be an IR path ending in .xml")
    classifier = load_classifier(model_path, preprocess, labels, device, output_kind, precision, no_cache,
                                  "LATENCY")
    if embed_preprocessing and classifier.custom_fn is not None:
        fail("--embed-preprocessing needs a preprocessing spec; a custom function cannot go into the graph")
    try:
        selection = MapSelection.parse(maps, lambda item: resolve_class(int(item) if item.isdigit() else item,
                                                                        classifier.labels, classifier.num_classes))
    except OvExplainError as exc:
        fail(f"--maps: {exc}")
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
        fail(str(exc))
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
        fail(f"--out {exc}")
    except (OSError, RuntimeError) as exc:  # OpenVINO's writer raises RuntimeError ("Can't open bin file")
        fail(f"--out {out_path}: cannot write the IR ({one_line(exc)})")
    readout_text = f", {xai.readout} read-out" if xai.readout else ""
    click.echo(f"wrote {out_path}: {xai.method} at {xai.target_layer} ({xai.map_size[0]}x{xai.map_size[1]} maps "
               f"for {xai.maps.describe()} classes{readout_text}{', algebraic shortcut' if xai.shortcut else ''}); "
               "outputs: "
               + ", ".join(sorted(next(iter(o.get_names()), '?') for o in xai.model.outputs))
               + f"; runs on {','.join(checked.execution_devices)} in {checked.precision}")
