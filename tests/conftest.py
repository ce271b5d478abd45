"""Shared fixtures: the real bundled model and photos, and small graphs built on the spot."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from ov_explain import resources

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def photos_dir() -> Path:
    return resources.sample_images_dir()


@pytest.fixture(scope="session")
def ground_truth(photos_dir: Path) -> dict[str, str]:
    with open(photos_dir / "ground_truth.csv", newline="") as handle:
        return {row["path"]: row["label"] for row in csv.DictReader(handle)}


@pytest.fixture(scope="session")
def classifier():
    """The bundled EfficientNet-Lite0 on CPU, compiled once for the whole session (no disk cache)."""
    from ov_explain import Classifier

    return Classifier(device="CPU", cache_dir=None)


@pytest.fixture(scope="session")
def chelsea_rgb(photos_dir: Path) -> np.ndarray:
    from ov_explain import read_image

    return read_image(photos_dir / "chelsea.jpg")


def identity_model(shape: list[int]):
    """A graph whose output is its float input: embedding preprocessing into it exposes the tensor."""
    import openvino as ov

    from ov_explain._compat import opset

    parameter = opset.parameter(shape, ov.Type.f32, name="x")
    return ov.Model([opset.multiply(parameter, np.float32(1.0))], [parameter], "identity")


def tiny_classifier_model(num_classes: int = 4, *, softmax: bool = False, batch: int = -1, layout: str = "NCHW"):
    """A small real graph: global mean over H, W then a fixed linear layer (optionally softmax)."""
    import openvino as ov

    from ov_explain._compat import opset

    shape = [batch, 3, 8, 8] if layout == "NCHW" else [batch, 8, 8, 3]
    parameter = opset.parameter(shape, ov.Type.f32, name="image")
    axes = [2, 3] if layout == "NCHW" else [1, 2]
    pooled = opset.reduce_mean(parameter, np.array(axes, np.int64), keep_dims=False)
    weights = np.arange(3 * num_classes, dtype=np.float32).reshape(3, num_classes) / 10.0
    logits = opset.matmul(pooled, weights, False, False)
    output = opset.softmax(logits, 1) if softmax else logits
    return ov.Model([output], [parameter], "tiny")


def tiny_cnn(layout: str = "NCHW", batch: int = -1, num_classes: int = 5, softmax: bool = False,
             head: str = "linear"):
    """A small real CNN (conv stride 4 -> ReLU -> 16x4x4 feature map -> head), seeded weights.

    ``head``: "linear" (global mean + MatMul + bias: the shortcut applies) or "mlp" (an extra hidden
    layer, so ReciproCAM must run the cloned head on the mosaic batch).
    """
    import openvino as ov

    from ov_explain._compat import opset

    rng = np.random.default_rng(7)
    shape = [batch, 3, 16, 16] if layout == "NCHW" else [batch, 16, 16, 3]
    parameter = opset.parameter(shape, ov.Type.f32, name="image")
    x = parameter if layout == "NCHW" else opset.transpose(parameter, np.array([0, 3, 1, 2], np.int64))
    kernel = rng.normal(0, 0.5, (16, 3, 4, 4)).astype(np.float32)
    x = opset.relu(opset.convolution(x, kernel, [4, 4], [0, 0], [0, 0], [1, 1]))
    if layout == "NHWC":
        x = opset.transpose(x, np.array([0, 2, 3, 1], np.int64))
    axes = [2, 3] if layout == "NCHW" else [1, 2]
    pooled = opset.reduce_mean(x, np.array(axes, np.int64), keep_dims=False)
    if head == "mlp":
        hidden = rng.normal(0, 0.5, (16, 12)).astype(np.float32)
        pooled = opset.relu(opset.matmul(pooled, hidden, False, False))
    weights = rng.normal(0, 1.0, (num_classes, pooled.get_output_partial_shape(0)[1].get_length())).astype(np.float32)
    logits = opset.add(opset.matmul(pooled, weights, False, True), rng.normal(0, 0.1, (num_classes,)).astype(np.float32))
    output = opset.softmax(logits, 1) if softmax else logits
    return ov.Model([output], [parameter], "tiny_cnn")


def save_model(model, folder: Path, name: str = "model") -> Path:
    import openvino as ov

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.xml"
    ov.save_model(model, str(path), compress_to_fp16=False)
    return path
