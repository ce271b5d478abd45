"""Helpers the tests import: free ports for servers they start, small graphs built in code, f32 compiles."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

#: Exact-value and definition tests compile in f32: a CPU with AMX (or AVX512-BF16) computes in bf16
#: by default, which rounds 1.0 to 1.0009765625 and a small map difference into noise.
F32 = {"INFERENCE_PRECISION_HINT": "f32"}

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on (for a server a test starts)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process, seconds: float, why: Callable[[], str] = lambda: "") -> None:
    """Until something listens on 127.0.0.1:``port``; fails (with ``why()``) if ``process`` ends or time runs out."""
    import socket
    import time

    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server for port {port} did not start: {why()}") from None
            time.sleep(0.2)


def compile_f32(model, device: str = "CPU"):
    """``model`` compiled in f32, whatever the CPU would choose by default."""
    import openvino as ov

    return ov.Core().compile_model(model, device, F32)


def identity_model(shape: list[int]):
    """A graph whose output is its float input: embedding preprocessing into it exposes the tensor."""
    import openvino as ov

    from ov_explain.core._compat import opset

    parameter = opset.parameter(shape, ov.Type.f32, name="x")
    return ov.Model([opset.multiply(parameter, np.float32(1.0))], [parameter], "identity")


def tiny_classifier_model(num_classes: int = 4, *, softmax: bool = False, batch: int = -1, layout: str = "NCHW"):
    """A small real graph: global mean over H, W then a fixed linear layer (optionally softmax)."""
    import openvino as ov

    from ov_explain.core._compat import opset

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

    from ov_explain.core._compat import opset

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
    bias = rng.normal(0, 0.1, (num_classes,)).astype(np.float32)
    logits = opset.add(opset.matmul(pooled, weights, False, True), bias)
    output = opset.softmax(logits, 1) if softmax else logits
    return ov.Model([output], [parameter], "tiny_cnn")


def tiny_vit(*, batch: int = -1, size: int = 32, patch: int = 8, dim: int = 16, blocks: int = 2,
             num_classes: int = 5, heads: int = 2, seed: int = 3, planted: bool = False, markers: bool = True,
             literal_shapes: bool = False):
    """A small real vision transformer: conv patch embedding, CLS token, pre-norm blocks (LayerNorm as
    MVN * gamma + beta, multi-head softmax attention, GELU MLP, two residual Adds), final norm, linear
    head on the CLS token. With ``markers`` each block's input is an identity node named
    ``block{i}.input``; without, the streams are the position-embedding Add (``embedding``) and the
    previous block's residual Add, as in converted models.

    ``planted``: weights made so that class 0 scores red patches: embedding channel 0 is the patch's
    mean red minus green, the last block's attention is uniform and copies channel 0 into the CLS
    token, and the head reads it. The other blocks are small random perturbations.
    """
    import openvino as ov

    from ov_explain.core._compat import opset

    rng = np.random.default_rng(seed)
    grid = size // patch
    image = opset.parameter([batch, 3, size, size], ov.Type.f32, name="image")
    kernel = rng.normal(0, 0.05, (dim, 3, patch, patch)).astype(np.float32)
    if planted:
        kernel[0] = 0
        kernel[0, 0], kernel[0, 1] = 4.0 / patch ** 2, -4.0 / patch ** 2
    embedded = opset.convolution(image, kernel, [patch, patch], [0, 0], [0, 0], [1, 1])  # (N, D, g, g)
    patches = opset.transpose(opset.reshape(embedded, np.array([0, dim, -1], np.int64), True),
                              np.array([0, 2, 1], np.int64))  # (N, g*g, D)
    batch_dim = opset.gather(opset.shape_of(image), np.array([0], np.int64), np.int64(0))
    cls_shape = opset.concat([batch_dim, opset.constant(np.array([1, dim], np.int64))], 0)
    cls_token = opset.broadcast(rng.normal(0, 0.02, (1, 1, dim)).astype(np.float32), cls_shape)
    tokens = opset.concat([cls_token, patches], 1)
    position = rng.normal(0, 0.02, (1, grid * grid + 1, dim)).astype(np.float32)
    if planted:  # a constant channel 1 keeps LayerNorm from blowing up the noise of empty patches
        position[:] = 0
        position[..., 1] = 1.0
    x = opset.add(tokens, position, name="embedding")

    def layer_norm(value, name):
        normed = opset.mvn(value, np.array([-1], np.int64), True, 1e-6, "inside_sqrt", name=f"{name}.mvn")
        gamma = np.ones(dim, np.float32) + rng.normal(0, 0.05, dim).astype(np.float32)
        return opset.add(opset.multiply(normed, gamma), rng.normal(0, 0.05, dim).astype(np.float32),
                         name=f"{name}.out")

    head_dim = dim // heads
    for index in range(1, blocks + 1):
        if markers:
            x = opset.multiply(x, np.float32(1.0), name=f"block{index}.input")
        last = index == blocks
        normed = layer_norm(x, f"block{index}.norm1")
        qkv = rng.normal(0, 0.3, (dim, 3 * dim)).astype(np.float32)
        out = rng.normal(0, 0.3 if not planted else 0.02, (dim, dim)).astype(np.float32)
        if planted and last:
            qkv[:, : 2 * dim] = 0  # q = k = 0: uniform attention over all tokens
            qkv[:, 2 * dim:] = np.eye(dim, dtype=np.float32)
            out = np.zeros((dim, dim), np.float32)
            out[0, 0] = 1.0
        q, k, v = opset.split(opset.matmul(normed, qkv, False, False), np.int64(2), 3).outputs()

        def split_heads(value):
            pattern = [batch, grid * grid + 1, heads, head_dim] if literal_shapes else [0, 0, heads, head_dim]
            shaped = opset.reshape(value, np.array(pattern, np.int64), True)
            return opset.transpose(shaped, np.array([0, 2, 1, 3], np.int64))  # (N, heads, T, d)

        scores = opset.matmul(split_heads(q), split_heads(k), False, True)
        attention = opset.softmax(opset.multiply(scores, np.float32(head_dim ** -0.5)), 3)
        mixed = opset.transpose(opset.matmul(attention, split_heads(v), False, False), np.array([0, 2, 1, 3], np.int64))
        mixed = opset.reshape(mixed, np.array([0, 0, dim], np.int64), True)
        x = opset.add(x, opset.matmul(mixed, out, False, False), name=f"block{index}.attention_residual")
        hidden = opset.gelu(opset.matmul(layer_norm(x, f"block{index}.norm2"),
                                         rng.normal(0, 0.3, (dim, 2 * dim)).astype(np.float32), False, False), "erf")
        mlp_out = rng.normal(0, 0.3 if not planted else 0.02, (2 * dim, dim)).astype(np.float32)
        if planted and last:
            mlp_out[:] = 0
        x = opset.add(x, opset.matmul(hidden, mlp_out, False, False), name=f"block{index}.mlp_residual")
    cls_out = opset.gather(layer_norm(x, "final_norm"), np.int64(0), np.int64(1))  # (N, D)
    head = rng.normal(0, 0.5, (dim, num_classes)).astype(np.float32)
    if planted:
        head[:, 0] = 0
        head[0, 0] = 3.0
    logits = opset.add(opset.matmul(cls_out, head, False, False), np.zeros(num_classes, np.float32), name="logits")
    return ov.Model([logits], [image], "tiny_vit")


def save_model(model, folder: Path, name: str = "model") -> Path:
    import openvino as ov

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.xml"
    ov.save_model(model, str(path), compress_to_fp16=False)
    return path


def constant_detector(outputs: list[np.ndarray], size: int = 32):
    """A model whose outputs are the given arrays (plus 0 x the input, so it depends on it)."""
    import openvino as ov

    from ov_explain.core._compat import opset

    image = opset.parameter([1, 3, size, size], np.float32, name="images")
    zero = opset.multiply(opset.reduce_mean(image, np.array([1, 2, 3], np.int64), keep_dims=False),
                          np.float32(0))
    results = []
    for i, value in enumerate(outputs):
        shaped = opset.reshape(zero, np.array([1] * value.ndim, np.int64), special_zero=False)
        node = opset.add(opset.constant(value.astype(np.float32)), shaped)
        node.output(0).get_tensor().set_names({f"out{i}"})
        results.append(node)
    return ov.Model(results, [image], "built")
