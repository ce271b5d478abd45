"""``ov-explain explain``: maps for each image, written beside a summary of what ran."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from ov_explain.cli.app import EXIT_OK, EXIT_PARTIAL, fail, main
from ov_explain.cli.options import (
    explain_options,
    image_paths,
    load_model,
    model_options,
    parse_targets,
    progress_bar,
)
from ov_explain.core.config import ModelConfig
from ov_explain.core.errors import OvExplainError
from ov_explain.explain.config import ExplainConfig


@main.command(short_help="Saliency overlays per image and class, and what ran where.")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@model_options
@explain_options()
@click.option("--targets", multiple=True, help="predicted (default), all, or class names/indices (repeat or "
                                              "comma-separate).")
@click.option("-k", "--top-k", default=3, show_default=True, type=click.IntRange(min=1),
              help="With --targets predicted: at most this many classes.")
@click.option("--threshold", default=0.1, show_default=True, type=click.FloatRange(0, 1),
              help="With --targets predicted: also explain classes at least this probable.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("explanations"), show_default=True)
@click.option("--raw", is_flag=True, help="Also save the raw maps (feature resolution) as .npy.")
@click.option("--colormap", default="jet", show_default=True)
@click.option("--weight", default=0.5, show_default=True, type=click.FloatRange(0, 1), help="Overlay opacity.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report on stdout.")
def explain(images: tuple[Path, ...], model: ModelConfig, explain: ExplainConfig, targets: tuple[str, ...],
            top_k: int, threshold: float, out_dir: Path, raw: bool, colormap: str, weight: float,
            as_json: bool) -> None:
    """Explain each IMAGE (a file, or a folder of images): overlays (and raw maps) in --out, a summary of
    what ran."""
    import numpy as np

    from ov_explain.core.images import read_image
    from ov_explain.core.storage import ensure_writable_folder
    from ov_explain.explain.base import select_targets
    from ov_explain.render import COLORMAPS
    from ov_explain.runs.naming import safe_component
    from ov_explain.runs.writer import MapStyle, to_bgr, write_map_files

    if colormap not in COLORMAPS:
        fail(f"unknown colormap {colormap!r}; known: {', '.join(COLORMAPS)}")
    images = tuple(image_paths(images))
    classifier = load_model(model, "LATENCY")
    try:
        explainer = explain.create(classifier)
    except OvExplainError as exc:
        fail(str(exc))
    wanted = parse_targets(targets)
    if getattr(classifier, "output_format", None) is not None:  # a detector: a map per box
        _explain_boxes(classifier, explainer, images, wanted, out_dir, MapStyle(colormap, weight, save_raw=raw),
                       as_json)
    if not isinstance(wanted, str):  # class names and indices are checked once, before any image
        try:
            select_targets(wanted, np.zeros(classifier.num_classes, np.float32), classifier.labels)
        except OvExplainError as exc:
            fail(f"--targets: {exc}")
    try:
        ensure_writable_folder(out_dir)
    except OvExplainError as exc:
        fail(f"--out {exc}")
    style = MapStyle(colormap, weight, save_raw=raw)  # the audit's JPEG quality too
    report, errors, used_stems = [], [], set()
    for path in images:
        try:
            pixels = read_image(path)
            bar, update = progress_bar(f"{path.name} {explainer.method}") if explainer.mode == "blackbox" \
                else (None, None)
            try:
                started = time.perf_counter()
                prepared = explainer.prepare(pixels, source=str(path))
                result = explainer.explain_prepared(prepared, wanted, top_k=top_k, threshold=threshold,
                                                    progress=update,
                                                    preprocess_ms=(time.perf_counter() - started) * 1000)
            finally:
                if bar is not None:
                    bar.close()
        except OvExplainError as exc:
            errors.append({"source": str(path), "error": str(exc)})
            click.echo(f"error: {exc}", err=True)
            continue
        stem = safe_component(path.stem)
        while stem in used_stems:
            stem += "_2"
        used_stems.add(stem)
        entry = result.to_dict()
        bgr = to_bgr(pixels)
        for saliency, item in zip(result.maps, entry["maps"]):
            files = write_map_files(out_dir, f"{stem}_{explainer.method}_{safe_component(saliency.label)}", bgr,
                                    saliency, style)
            item["overlay"] = str(out_dir / files.overlay)
            if files.raw is not None:
                item["raw"] = str(out_dir / files.raw)
        report.append(entry)
        if not as_json:
            layer = f", layer {result.target_layer}" if result.target_layer else ""
            click.echo(f"{path}: {result.method} ({result.mode}{layer}) on {result.device} in {result.precision}, "
                       f"{result.inferences} inference(s), {sum(result.timings_ms.values()):.0f} ms")
            for saliency, item in zip(result.maps, entry["maps"]):
                probability = "" if saliency.probability is None else f" {saliency.probability:.3f}"
                click.echo(f"  {saliency.label}{probability} -> {item['overlay']}")
    if as_json:
        click.echo(json.dumps({"model": str(classifier.files.model), "mode": explainer.mode,
                               "method": explainer.method, "backend": explain.backend, "device": explainer.device,
                               "precision": explainer.precision, "requested_precision": model.precision,
                               "fallback_reason": getattr(explainer, "fallback_reason", None),
                               "explanations": report, "errors": errors}, indent=2))
    elif errors:
        click.echo(f"{len(errors)} of {len(images)} images failed", err=True)
    explainer.close()
    classifier.close()
    sys.exit(EXIT_PARTIAL if errors else EXIT_OK)


def _explain_boxes(detector: Any, explainer: Any, images: tuple[Path, ...], wanted: Any, out_dir: Path,
                   style: Any, as_json: bool) -> None:
    """Each image's detections and a map per box (``--targets``: all, or box positions); overlays draw the box."""
    from ov_explain.core.images import read_image
    from ov_explain.core.storage import ensure_writable_folder
    from ov_explain.runs.naming import safe_component
    from ov_explain.runs.writer import to_bgr, write_map_files

    if wanted == "predicted":
        wanted = "all"
    elif not isinstance(wanted, str) and not all(isinstance(w, int) for w in wanted):
        fail("--targets: a detector's boxes are chosen by their positions in the detection list (0, 1, ...) or all")
    try:
        ensure_writable_folder(out_dir)
    except OvExplainError as exc:
        fail(f"--out {exc}")
    report, errors, used_stems = [], [], set()
    for path in images:
        bar, update = progress_bar(f"{path.name} {explainer.method}")
        try:
            pixels = read_image(path)
            result = explainer.explain(pixels, wanted, progress=update)
        except OvExplainError as exc:
            errors.append({"source": str(path), "error": str(exc)})
            click.echo(f"error: {exc}", err=True)
            continue
        finally:
            bar.close()
        result.source = str(path)
        stem = safe_component(path.stem)
        while stem in used_stems:
            stem += "_2"
        used_stems.add(stem)
        entry, bgr = result.to_dict(), to_bgr(pixels)
        for position, saliency in zip(result.explained, result.maps):
            name = f"{stem}_{explainer.method}_box{position}_{safe_component(saliency.label)}"
            files = write_map_files(out_dir, name, bgr, saliency, style)
            item = entry["detections"][position]["maps"][0]
            item["overlay"] = str(out_dir / files.overlay)
            if files.raw is not None:
                item["raw"], item["raw_on_image"] = str(out_dir / files.raw), str(out_dir / files.on_image)
        report.append(entry)
        if not as_json:
            found = result.detections.detections
            click.echo(f"{path}: {len(found) or 'no'} detection{'' if len(found) == 1 else 's'}, {result.method} "
                       f"({result.mode}) on {result.device} in {result.precision}, {result.images_inferred} images "
                       f"inferred, {sum(result.timings_ms.values()):.0f} ms")
            for position, detection in enumerate(found):
                overlay = entry["detections"][position]["maps"]
                box = ", ".join(f"{v:.0f}" for v in detection.box)
                click.echo(f"  {detection.label} {detection.score:.3f} box ({box})"
                           + (f" -> {overlay[0]['overlay']}" if overlay else ""))
    if as_json:
        click.echo(json.dumps({"model": str(detector.files.model), "task": "detection", "mode": explainer.mode,
                               "method": explainer.method, "device": explainer.device,
                               "precision": explainer.precision, "fallback_reason": explainer.fallback_reason,
                               "explanations": report, "errors": errors}, indent=2))
    elif errors:
        click.echo(f"{len(errors)} of {len(images)} images failed", err=True)
    detector.close()
    sys.exit(EXIT_PARTIAL if errors else EXIT_OK)
