"""timm architectures converted to OpenVINO the way people convert what they trained, and the white-box
maps' definitions computed in torch on the same weights: shared by ``scripts/benchmark_zoo.py`` and the
tests (``tests/explain/test_zoo.py``). torch and timm are test and benchmark tools only.

Weights are random and seeded; every parameter timm fills with one value (norm γ / β, layer-scale,
batch-norm statistics) gets seeded noise, so the graph looks like a trained one (``convert_model``
would otherwise fold γ = 1, β = 0 away, which it never does for a trained model).

Definitions (what each method's map *is*, written independently of the graph code):

- ``vitreciprocam``: the token stream entering the explained block is copied once per patch; copy
  ``(i, j)`` keeps the 3×3 Gaussian neighbourhood of patch ``(i, j)`` (leading tokens kept). The copy
  replaces the stream on the residual path and, after the block's first norm, on the attention path;
  the rest of the network runs unchanged; the map is the class logits of each copy.
- ``reciprocam``: the last feature map ``F = forward_features(x)`` with one cell kept, scored by
  ``forward_head``.
- ``cam``: Grad-CAM at ``F`` by autograd: ``ReLU(Σ_k mean_ij(∂s_c/∂F_kij) · F_k)``, ``s`` the softmax
  (probability read-out) or the logits.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve().parent


def import_timm() -> Any:
    """timm, imported with this folder's torchvision stand-in when no torchvision is installed."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(HERE))
    import timm

    return timm


@dataclass(frozen=True)
class Arch:
    """One architecture of the zoo: timm name, family, reduced-size options, and (transformers) the block
    whose input stream ViT-ReciproCAM masks, found in torch by ``block``."""

    name: str
    family: str
    options: dict = field(default_factory=dict)
    block: Callable[[Any], Any] | None = None
    tokens_before: int = 0  # leading tokens (CLS, distillation, registers) of that stream
    size: int | None = None  # input side if not the model's default
    norm_first: bool = True  # the block's first norm is a LayerNorm the mask goes after (not ResMLP's affine)
    #: CNNs whose last spatial map is inside the head: (features, head) functions of the model (else
    #: ``forward_features`` / ``forward_head``).
    split: Callable[[Any], tuple[Callable, Callable]] | None = None
    note: str = ""

    @property
    def label(self) -> str:
        extra = ",".join(f"{k}={v}" for k, v in self.options.items() if k in ("global_pool", "reg_tokens"))
        return self.name + (f"[{extra}]" if extra else "")


def _last(blocks: Any) -> Any:
    return blocks[-1]


#: Transformers: reduced depth keeps each a few seconds on 2 cores.
TRANSFORMERS = [
    Arch("vit_tiny_patch16_224", "ViT", dict(depth=3), lambda m: m.blocks[-1], 1),
    Arch("vit_small_patch16_224", "ViT (avg pool, fc_norm)", dict(depth=2, global_pool="avg", class_token=False,
                                                                   fc_norm=True), lambda m: m.blocks[-1], 0),
    Arch("vit_small_patch16_224", "ViT (registers)", dict(depth=2, reg_tokens=4), lambda m: m.blocks[-1], 5),
    Arch("deit_tiny_patch16_224", "DeiT", dict(depth=3), lambda m: m.blocks[-1], 1),
    Arch("deit_tiny_distilled_patch16_224", "DeiT (distilled)", dict(depth=3), lambda m: m.blocks[-1], 2),
    Arch("deit3_small_patch16_224", "DeiT III (layer scale)", dict(depth=2), lambda m: m.blocks[-1], 1),
    Arch("convit_tiny", "ConViT (gated positional attention)", dict(depth=2, local_up_to_layer=1),
         lambda m: m.blocks[-1], 1),
    Arch("eva02_tiny_patch14_224", "EVA-02 (rotary)", dict(depth=3), lambda m: m.blocks[-1], 1),
    Arch("cait_xxs24_224", "CaiT (class attention)", dict(depth=3), lambda m: m.blocks[-1], 0),
    Arch("xcit_nano_12_p16_224", "XCiT (class attention)", dict(depth=3), lambda m: m.cls_attn_blocks[-1], 1),
    Arch("pit_ti_224", "PiT (pooling stages)", dict(depth=(1, 1, 2)), lambda m: m.transformers[-1].blocks[-1], 1),
    Arch("twins_svt_small", "Twins (spatial reduction)", dict(depths=(1, 1, 2, 2)), lambda m: m.blocks[-1][-1], 0),
    Arch("twins_pcpvt_small", "Twins-PCPVT", dict(depths=(1, 1, 2, 2)), lambda m: m.blocks[-1][-1], 0),
    Arch("pvt_v2_b0", "PVT-v2 (spatial reduction)", dict(), lambda m: m.stages[-1].blocks[-1], 0),
    Arch("crossvit_tiny_240", "CrossViT (two branches)", dict(depth=((1, 1, 0),) * 2),
         lambda m: m.blocks[-1].blocks[1][-1], 1, 240),
    Arch("levit_128s", "LeViT (no LayerNorm)", dict(), lambda m: m.stages[-1].blocks[-1], 0),
    Arch("beit_base_patch16_224", "BEiT", dict(depth=2, embed_dim=192, num_heads=3), lambda m: m.blocks[-1], 1),
    Arch("swin_tiny_patch4_window7_224", "Swin", dict(depths=(1, 1, 2, 1)), None),
]

CNNS = [
    Arch("resnet18", "ResNet"),
    Arch("mobilenetv2_050", "MobileNetV2"),
    Arch("mobilenetv3_small_050", "MobileNetV3"),
    Arch("efficientnet_b0", "EfficientNet"),
    Arch("convnext_atto", "ConvNeXt"),
    Arch("regnetx_002", "RegNet"),
    Arch("densenet121", "DenseNet", dict(block_config=(2, 2, 2, 2))),
    Arch("vgg11", "VGG"),
    Arch("ghostnet_050", "GhostNet"),
    Arch("repvgg_a0", "RepVGG"),
    Arch("rexnet_100", "ReXNet"),
    Arch("dla34", "DLA"),
    Arch("cspdarknet53", "CSPDarkNet"),
    Arch("hrnet_w18_small", "HRNet"),
    Arch("hgnetv2_b0", "HGNetV2"),
    Arch("repvit_m0_9", "RepViT"),
    Arch("inception_v3", "Inception", size=299),
    Arch("mnasnet_050", "MnasNet"),
    Arch("mobileone_s0", "MobileOne"),
]

MLPS_AND_HYBRIDS = [
    Arch("mixer_s16_224", "MLP-Mixer", block=lambda m: m.blocks[-1]),
    Arch("resmlp_12_224", "ResMLP", block=lambda m: m.blocks[-1], norm_first=False),
    Arch("mobilevit_xxs", "MobileViT (hybrid)"),
    Arch("maxvit_tiny_tf_224", "MaxViT (hybrid)", dict(depths=(1, 1, 1, 1))),
    Arch("coatnet_0_rw_224", "CoAtNet (hybrid)", dict()),
    Arch("tiny_vit_5m_224", "TinyViT (hybrid)"),
    Arch("fastvit_t8", "FastViT (hybrid)"),
    Arch("efficientvit_b0", "EfficientViT (hybrid)", split=lambda m: (
        lambda x: m.head.in_conv(m.forward_features(x)), lambda f: m.head.classifier(m.head.global_pool(f)))),
    Arch("gcvit_xxtiny", "GCViT (hybrid)"),
    Arch("nextvit_small", "NextViT (hybrid)"),
    Arch("poolformer_s12", "PoolFormer (hybrid)"),
    Arch("edgenext_xx_small", "EdgeNeXt (hybrid)"),
]

ZOO = TRANSFORMERS + CNNS + MLPS_AND_HYBRIDS


def build(arch: Arch, num_classes: int = 10, seed: int = 0) -> tuple[Any, int]:
    """The torch model in eval mode with seeded weights (and noise on one-valued parameters), its input side."""
    import torch

    timm = import_timm()
    torch.manual_seed(seed)
    model = timm.create_model(arch.name, pretrained=False, num_classes=num_classes, **arch.options).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
            if not tensor.is_floating_point() or tensor.numel() == 0:
                continue
            flat = tensor.reshape(-1)
            if bool((flat == flat[0]).all()):
                noise = torch.randn(tensor.shape, generator=generator) * 0.1
                if name.endswith("running_var"):
                    tensor.copy_(tensor.abs() + noise.abs())
                else:
                    tensor.add_(noise * (tensor.abs().mean() + 0.1))
    size = arch.size or model.pretrained_cfg.get("input_size", (3, 224, 224))[-1]
    return model, int(size)


def convert(model: Any, size: int) -> Any:
    """``openvino.convert_model`` with an example input: FP32, dynamic batch, the input side fixed."""
    import openvino as ov
    import torch

    with torch.no_grad():
        return ov.convert_model(model, example_input=torch.rand(1, 3, size, size),
                                input=[ov.PartialShape([-1, 3, size, size])])


def gaussian_keep(height: int, width: int, leading: int) -> np.ndarray:
    """(H*W, leading + H*W): per patch, its 3×3 Gaussian neighbourhood (1/4, 1/8, 1/16) weights; leading tokens 1."""
    keep = np.zeros((height * width, leading + height * width), np.float32)
    keep[:, :leading] = 1
    kernel = np.array([0.25, 0.5, 0.25], np.float32)
    for i in range(height):
        for j in range(width):
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    y, x = i + di, j + dj
                    if 0 <= y < height and 0 <= x < width:
                        keep[i * width + j, leading + y * width + x] = kernel[di + 1] * kernel[dj + 1]
    return keep


def vit_reciprocam_definition(model: Any, arch: Arch, images: np.ndarray, height: int, width: int) -> np.ndarray:
    """(N, K, H, W) logits of each masked copy (see the module), by hooks on the torch model. The network
    runs on each image repeated H*W times (every value before the block is per image, so the copies are
    equal there), and the hooks mask copy ``k`` of image ``n`` (at ``n * H*W + k``) where it enters the block."""
    import torch

    block = arch.block(model)
    norm = getattr(block, "norm1", None) if arch.norm_first else None
    cells = height * width
    keep = torch.from_numpy(gaussian_keep(height, width, arch.tokens_before))
    state: dict = {}

    def before_block(module, args, kwargs):
        stream = args[0]
        state["stream"] = stream
        state["mask"] = keep.repeat(stream.shape[0] // cells, 1)[:, :, None]
        return (stream * state["mask"],) + tuple(args[1:]), kwargs

    def after_norm(module, args, output):
        if state.pop("normed", False):
            return None
        state["normed"] = True
        return module(state["stream"]) * state["mask"]  # the norm of the unmasked stream, then masked

    hooks = [block.register_forward_pre_hook(before_block, with_kwargs=True)]
    if norm is not None:
        hooks.append(norm.register_forward_hook(after_norm))
    try:
        with torch.no_grad():
            logits = model(torch.from_numpy(images).repeat_interleave(cells, 0)).numpy()
    finally:
        for hook in hooks:
            hook.remove()
    return logits.reshape(len(images), cells, -1).transpose(0, 2, 1).reshape(len(images), -1, height, width)


def cnn_definition(model: Any, method: str, readout: str, images: np.ndarray, arch: Arch | None = None) -> np.ndarray:
    """(N, K, H, W) ReciproCAM or CAM maps at the last feature map (see the module). CAM's probability map
    is replaced by the logit one where it is the same in every cell before the ReLU (a saturated softmax)."""
    import torch

    features_of, head = (arch.split(model) if arch is not None and arch.split is not None
                         else (model.forward_features, model.forward_head))
    features = features_of(torch.from_numpy(images)).detach()
    if features.ndim != 4:
        raise ValueError(f"the features are {tuple(features.shape)}, not a feature map")
    channels_last = features.shape[-1] == model.num_features != features.shape[1]  # Swin: (N, H, W, C)
    as_nchw = features.permute(0, 3, 1, 2) if channels_last else features
    n, c, h, w = as_nchw.shape
    if method == "reciprocam":
        eye = torch.eye(h * w).reshape(1, h * w, h, w)
        eye = eye[..., None] if channels_last else eye[:, :, None]
        mosaic = (features[:, None] * eye).reshape(-1, *features.shape[1:])
        with torch.no_grad():
            scores = head(mosaic)
        if readout == "probability":
            scores = scores.softmax(-1)
        return scores.reshape(n, h * w, -1).permute(0, 2, 1).reshape(n, -1, h, w).numpy()

    def grad_cam(one: Any, score: Any) -> Any:
        (gradient,) = torch.autograd.grad(score, one, retain_graph=True)
        value = one.detach()
        if channels_last:
            gradient, value = gradient.permute(0, 3, 1, 2), value.permute(0, 3, 1, 2)
        return (gradient[0].mean(dim=(1, 2))[:, None, None] * value[0]).sum(0)  # before the ReLU

    maps = []
    for index in range(n):
        one = features[index:index + 1].clone().requires_grad_(True)
        logits = head(one)[0]
        probabilities = logits.softmax(-1)
        per_class = []
        for k in range(logits.shape[0]):
            cam = grad_cam(one, probabilities[k] if readout == "probability" else logits[k])
            if readout == "probability" and bool(cam.max() == cam.min()):
                cam = grad_cam(one, logits[k])
            per_class.append(torch.relu(cam))
        maps.append(torch.stack(per_class))
    return torch.stack(maps).numpy()


def token_cam_definition(model: Any, images: np.ndarray, readout: str, height: int, width: int) -> np.ndarray:
    """(N, K, H, W) Grad-CAM at the tokens the head averages (``model.norm``'s output), by autograd:
    ``ReLU(Σ_k mean_t(∂s_c/∂x_tk) · x_tk)`` on the patch grid, ``s`` the logits or the softmax."""
    import torch

    captured: dict = {}

    def keep(module, args, output):
        output.retain_grad()
        captured["tokens"] = output

    hook = model.norm.register_forward_hook(keep)
    try:
        maps = []
        for index in range(len(images)):
            logits = model(torch.from_numpy(images[index:index + 1]))[0]
            scores = logits.softmax(-1) if readout == "probability" else logits
            tokens = captured["tokens"]
            per_class = []
            for k in range(scores.shape[0]):
                (gradient,) = torch.autograd.grad(scores[k], tokens, retain_graph=True)
                weights = gradient[0].mean(0)  # (D,)
                per_class.append(torch.relu(tokens[0].detach() @ weights).reshape(height, width))
            maps.append(torch.stack(per_class))
    finally:
        hook.remove()
    return torch.stack(maps).numpy()
