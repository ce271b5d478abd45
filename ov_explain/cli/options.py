"""What several commands share: option decorators that become the library's configs (model, explanation,
dataset, run), loading the classifier, IMAGE arguments (files or folders), class targets and progress bars."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import click

from ov_explain.cli.app import fail
from ov_explain.core.config import TASKS, ModelConfig
from ov_explain.core.detection import OUTPUT_FORMATS
from ov_explain.core.devices import DEFAULT_PRECISION, PRECISIONS
from ov_explain.core.errors import OvExplainError
from ov_explain.core.ports import OUTPUT_KINDS
from ov_explain.explain.base import MODES
from ov_explain.explain.config import BACKENDS, READOUTS, ExplainConfig
from ov_explain.explain.registry import PRESETS, method_names
from ov_explain.runs.config import ENGINES, KINDS, DatasetConfig, RunConfig
from ov_explain.runs.ray_engine import RayOptions


# ----- options that become configs -------------------------------------------------------------------
def config_options(parameter: str, build: Callable[..., Any], options: Sequence[Callable[[Any], Any]]) -> Any:
    """Click ``options`` that reach the command as one config: ``parameter=build(**their values)``; a value
    the config refuses is one line and exit 2, before the command runs."""
    def decorate(command: Any) -> Any:
        @functools.wraps(command)
        def wrapper(**values: Any) -> Any:
            try:
                values[parameter] = build(**{name: values.pop(name) for name in names})
            except OvExplainError as exc:
                fail(str(exc))
            return command(**values)

        wrapper.__click_params__ = list(getattr(command, "__click_params__", []))  # not shared with command's
        before = len(wrapper.__click_params__)
        for option in reversed(options):
            wrapper = option(wrapper)
        names = [param.name for param in wrapper.__click_params__[before:]]
        return wrapper
    return decorate


#: Each model option, declared once: the commands that load a model take the ones they need.
MODEL_OPTIONS = {
    "path": click.option("--model", "model_path", type=click.Path(path_type=Path),
                         help="IR .xml, .onnx, or a folder with one. Default: the bundled EfficientNet-Lite0."),
    "preprocess": click.option("--preprocess", help="A .json: an ov_explain spec, a timm pretrained_cfg / hub "
                                                    "config.json or a Hugging Face preprocessor_config.json; or "
                                                    "'package.module:function' or 'path/to/file.py:function'. "
                                                    "Default: the model's own."),
    "labels": click.option("--labels", type=click.Path(path_type=Path), help="Class names, one per line."),
    "device": click.option("--device", default="AUTO", show_default=True,
                           help="AUTO, AUTO:GPU,CPU (priority list) or one device such as CPU, GPU.0, NPU."),
    "output": click.option("--output", "output_kind", type=click.Choice(list(OUTPUT_KINDS)), default="auto",
                           show_default=True, help="What the model outputs (softmax only on logits)."),
    "precision": click.option("--precision", type=click.Choice(list(PRECISIONS)), default=DEFAULT_PRECISION,
                              show_default=True, help="Working precision asked for: f32 gives the same numbers on "
                                                      "every CPU; device is what the device runs by default (bf16 "
                                                      "on CPUs with AMX, f16 on GPU and NPU)."),
    "cache": click.option("--no-cache", is_flag=True, help="Do not use the compiled-model cache."),
    "task": click.option("--task", type=click.Choice(list(TASKS)), default="auto", show_default=True,
                         help="What the model does (auto: a detector when its export says so or its outputs are a "
                              "detection format)."),
    "output_format": click.option("--output-format", type=click.Choice(["auto", *OUTPUT_FORMATS]), default="auto",
                                  show_default=True, help="Detectors: the output format (auto: from the shapes)."),
    "confidence": click.option("--confidence", type=click.FloatRange(0, 1), default=0.25, show_default=True,
                               help="Detectors: the lowest box score kept."),
    "iou": click.option("--iou", type=click.FloatRange(0, 1, min_open=True), default=0.45, show_default=True,
                        help="Detectors: NMS drops the weaker box of a class overlapping a kept one by more."),
}


def model_fields(*names: str) -> Any:
    """Some of :data:`MODEL_OPTIONS` as plain options (for commands that take the model as an argument)."""
    def decorate(command: Any) -> Any:
        for name in reversed(names):
            command = MODEL_OPTIONS[name](command)
        return command
    return decorate


def _model_config(model_path: Path | None = None, preprocess: str | None = None, labels: Path | None = None,
                  device: str = "AUTO", output_kind: str = "auto", precision: str = DEFAULT_PRECISION,
                  no_cache: bool = False, task: str = "auto", output_format: str = "auto", confidence: float = 0.25,
                  iou: float = 0.45) -> ModelConfig:
    return ModelConfig(model_path, device, precision, preprocess, labels, output_kind,
                       None if no_cache else "default", task, output_format, confidence, iou)


#: --model, --preprocess, --labels, --device, --output, --precision, --no-cache and the detector options
#: (--task, --output-format, --confidence, --iou) as ``model: ModelConfig``.
model_options = config_options("model", _model_config, list(MODEL_OPTIONS.values()))


#: --readout, declared once (explain, audit, drift, export-xai).
readout_option = click.option("--readout", type=click.Choice(list(READOUTS)),
                              help="White-box class scores: logit (before a softmax in the graph) or probability. "
                                   "Default: probability for cam, logit for reciprocam and vitreciprocam.")


def explain_options(*, backend: bool = True, blackbox: bool = True) -> Any:
    """--mode, --method, --target-layer, --readout (and --preset, --seed, --backend) as ``explain: ExplainConfig``."""
    options = [
        click.option("--mode", type=click.Choice(list(MODES)), default="auto", show_default=True,
                     help="whitebox: maps from the model's own graph in its one inference; blackbox: masked images "
                          "only (any model); auto: white-box where the graph allows."),
        click.option("--method", type=click.Choice(method_names()),
                     help="Default: vitreciprocam for transformers; cam where the head is global average pooling "
                          "+ linear, else reciprocam (white-box); aise (black-box)."),
        click.option("--target-layer", help="White-box: node name of the feature map (CNN) or of the token stream "
                                            "entering a transformer block (default: auto)."),
        readout_option,
    ]
    if blackbox:
        options += [click.option("--preset", type=click.Choice(list(PRESETS)), default="balance", show_default=True,
                                 help="Black-box quality/speed preset (RISE 1000/5000/10000 masks)."),
                    click.option("--seed", default=0, show_default=True, type=int, help="Black-box random seed.")]
    if backend:
        options.append(click.option("--backend", type=click.Choice(list(BACKENDS)), default="native",
                                    show_default=True, help="openvino-xai needs the xai extra (OpenVINO 2024.4)."))
    return config_options("explain", lambda **values: ExplainConfig(**values), options)


def data_options(*, select: bool = True) -> Any:
    """--kind, --images, --label-map, --classes, --limit, --sample, --sample-seed as ``data: DatasetConfig``."""
    options = [
        click.option("--kind", type=click.Choice(list(KINDS)), default="auto", show_default=True,
                     help="Dataset layout (auto: by suffix / folder contents; coco / yolo: boxes, for a detector)."),
        click.option("--images", type=click.Path(path_type=Path),
                     help="COCO: the folder of the file's images (default: beside the JSON)."),
        click.option("--label-map", type=click.Path(path_type=Path),
                     help="Dataset labels (folder ids, box class names) to the model's classes: 'id,class' lines or "
                          "ids in class order (default: the model's synsets file when there is one)."),
        click.option("--classes", help="Only these dataset labels (comma-separated; boxes: images with one)."),
        click.option("--limit", type=click.IntRange(min=1), help="Only the first N images (after --sample)."),
        click.option("--sample", type=click.IntRange(min=1), help="A random subset of N images."),
        click.option("--sample-seed", default=0, show_default=True, type=int, help="Seed for --sample."),
    ]
    return config_options("data", lambda **values: DatasetConfig(**values), options)


def run_options(noun: str) -> Any:
    """--workers, --restart, --engine, --ray-address, --actors, --batch-size as ``run: RunConfig``."""
    options = [
        click.option("--workers", type=click.IntRange(min=1),
                     help="Inferences in flight for the whole run (default: what fills the device)."),
        click.option("--restart", is_flag=True, help=f"Delete the {noun} in --out and start over."),
        click.option("--engine", type=click.Choice(list(ENGINES)), default="local", show_default=True,
                     help="Where the per-image work runs: this process, or Ray Data actors (the distributed extra)."),
        click.option("--ray-address", help="Ray: the cluster (auto: the one `ray start` runs here; ray://host:port). "
                                           "Default: a local cluster for this run."),
        click.option("--actors", type=click.IntRange(min=1), help="Ray: actors (default: the cluster's CPUs)."),
        click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
                     help="Ray: images per batch sent to an actor."),
    ]

    def build(workers: int | None, restart: bool, engine: str, ray_address: str | None, actors: int | None,
              batch_size: int) -> RunConfig:
        return RunConfig(engine, workers, RayOptions(ray_address, actors, batch_size), restart)

    return config_options("run", build, options)


def load_model(model: ModelConfig, hint: str, classifier_for: str | None = None) -> Any:
    """The classifier or detector (only a classifier when ``classifier_for`` names what needs one), or one
    line and exit 2."""
    try:
        return model.load(hint=hint) if classifier_for is None else \
            model.load_classifier(hint=hint, purpose=classifier_for)
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
