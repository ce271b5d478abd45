"""What several commands share: the model options, the read-out option, loading the classifier,
IMAGE arguments (files or folders), class targets and progress bars."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ov_explain.cli.app import fail
from ov_explain.core.devices import (
    DEFAULT_PRECISION,
    PRECISIONS,
    DeviceRequest,
)
from ov_explain.core.errors import OvExplainError
from ov_explain.explain.base import MODES
from ov_explain.explain.registry import method_names


# ----- shared model options -------------------------------------------------------------------------
def model_options(command: Any) -> Any:
    options = [
        click.option("--model", "model_path", type=click.Path(path_type=Path),
                     help="IR .xml, .onnx, or a folder with one. Default: the bundled EfficientNet-Lite0."),
        click.option("--preprocess", help="A .json: an ov_explain spec, a timm pretrained_cfg / hub config.json or a "
                                          "Hugging Face preprocessor_config.json; or 'package.module:function' or "
                                          "'path/to/file.py:function'. Default: the model's own."),
        click.option("--labels", type=click.Path(path_type=Path), help="Class names, one per line."),
        click.option("--device", default="AUTO", show_default=True,
                     help="AUTO, AUTO:GPU,CPU (priority list) or one device such as CPU, GPU.0, NPU."),
        click.option("--output", "output_kind", type=click.Choice(["auto", "logits", "probabilities"]),
                     default="auto", show_default=True, help="What the model outputs (softmax only on logits)."),
        click.option("--precision", type=click.Choice(list(PRECISIONS)), default=DEFAULT_PRECISION,
                     show_default=True, help="Working precision: f32 gives the same numbers on every CPU; "
                                             "device is what the device runs by default (bf16 on CPUs with AMX, "
                                             "f16 on GPU and NPU)."),
        click.option("--no-cache", is_flag=True, help="Do not use the compiled-model cache."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def method_options(command: Any) -> Any:
    """--mode, --method and --target-layer: how explain and audit choose the explanation method."""
    options = [
        click.option("--mode", type=click.Choice(list(MODES)), default="auto", show_default=True),
        click.option("--method", type=click.Choice(method_names()),
                     help="Default: vitreciprocam for transformers; cam where the head is global average pooling "
                          "+ linear, else reciprocam (white-box); aise (black-box)."),
        click.option("--target-layer", help="White-box: node name of the feature map (CNN) or of the token stream "
                                            "entering a transformer block (default: auto)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def readout_option(command: Any) -> Any:
    return click.option("--readout", type=click.Choice(["logit", "probability"]),
                        help="White-box class scores: logit (before a softmax in the graph) or probability. "
                             "Default: probability for cam, logit for reciprocam and vitreciprocam.")(command)


def load_classifier(model_path: Path | None, preprocess: str | None, labels: Path | None, device: str,
                     output_kind: str, precision: str, no_cache: bool, hint: str) -> Any:
    from ov_explain.core.model import Classifier

    try:
        DeviceRequest.parse(device)
        return Classifier(model_path, device=device, preprocess=preprocess, labels=labels, output=output_kind,
                          hint=hint, cache_dir=None if no_cache else "default", precision=precision)
    except OvExplainError as exc:
        fail(str(exc))


def image_paths(paths: tuple[Path, ...]) -> list[Path]:
    """IMAGE arguments with each folder replaced by its images; what else a folder holds is one line each."""
    from ov_explain.core.images import IMAGE_SUFFIXES, expand_images

    images, skipped = expand_images(paths)
    for path in skipped:
        why = "a folder inside a folder (not searched)" if path.is_dir() else \
            f"not an image file ({', '.join(sorted(IMAGE_SUFFIXES))})"
        click.echo(f"skipped: {path}: {why}", err=True)
    if not images:
        fail(f"{', '.join(map(str, paths))}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return images


def parse_targets(values: tuple[str, ...]) -> Any:
    items = [part.strip() for value in values for part in value.split(",") if part.strip()]
    if not items:
        return "predicted"
    if len(items) == 1 and items[0] in ("predicted", "all"):
        return items[0]
    return [int(i) if i.isdigit() else i for i in items]


def progress_bar(description: str, unit: str = "step", leave: bool = False) -> Any:
    """A stderr progress bar and the (done, total) callback that moves it."""
    from tqdm import tqdm

    bar = tqdm(total=0, desc=description, unit=unit, leave=leave, disable=None, file=sys.stderr,
               dynamic_ncols=True)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)  # through update(): tqdm's rate and ETA follow

    return bar, update
