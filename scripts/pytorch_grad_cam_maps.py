"""pytorch-grad-cam's Grad-CAM, Grad-CAM++ and Score-CAM on the bundled model's own torch weights, for
scripts/benchmark_faithfulness.py to score beside ov_explain's methods (an independent reference).

    python3 -m venv /tmp/venv-torch && /tmp/venv-torch/bin/pip install torch==2.13.0 -e ".[convert]" \\
        grad-cam==1.5.7 ttach
    /tmp/venv-torch/bin/python scripts/pytorch_grad_cam_maps.py --out /tmp/gradcam.npz
    python scripts/benchmark_faithfulness.py --models models/efficientnet_lite0 --external /tmp/gradcam.npz

The photos are fitted with the bundled model's spec (the same uint8 pixels the benchmark perturbs) and
normalised by it; the target is torch's top-1 class; the target layer is the one ov_explain uses,
the last feature map after its ReLU6 (1280 x 7 x 7). Maps are pytorch-grad-cam's, at the input size.

pytorch-grad-cam imports torchvision for things it does not use here (its image preprocessing
helper, SESS's resize and detection targets), and no CPU build of torchvision is installable offline: where
torchvision is missing, an empty stand-in module takes its place, so that the CAM code runs unmodified.
torch is for this script only; nothing in ov_explain imports it.
"""

from __future__ import annotations

import argparse
import sys
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from ov_explain import Classifier, read_image, resources  # noqa: E402

METHODS = ("GradCAM", "GradCAMPlusPlus", "ScoreCAM")


def _import_pytorch_grad_cam():
    try:
        import torchvision  # noqa: F401
    except Exception:  # not installed, or a build whose compiled ops do not match this torch
        stand_in = types.ModuleType("torchvision")
        transforms = types.ModuleType("torchvision.transforms")
        functional = types.ModuleType("torchvision.transforms.functional")
        transforms.__path__ = []  # a package, so that its submodule imports
        for name in ("Compose", "Normalize", "ToTensor"):
            setattr(transforms, name, None)
        functional.resize = None  # SESS's, not used here
        stand_in.transforms, transforms.functional = transforms, functional
        sys.modules.update({"torchvision": stand_in, "torchvision.transforms": transforms,
                            "torchvision.transforms.functional": functional})
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    return pytorch_grad_cam, ClassifierOutputTarget


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where to write the maps (.npz)")
    parser.add_argument("--photos", type=int, default=7)
    args = parser.parse_args()

    import torch
    from convert_efficientnet_lite0 import build_torch_model
    from torch import nn

    grad_cam, ClassifierOutputTarget = _import_pytorch_grad_cam()
    model = build_torch_model("lite0")
    torch.set_grad_enabled(True)
    # The head computes ReLU6(_bn1(...)) with the ReLU6 module the stem shares; a ReLU6 inside _bn1's slot
    # (idempotent: ReLU6 twice is ReLU6 once) gives the post-activation feature map a module of its own.
    model._bn1 = nn.Sequential(model._bn1, nn.ReLU6())
    target_layer = model._bn1
    classifier = Classifier(resources.default_model_path(), device="CPU", precision="f32", cache_dir=None)
    spec = classifier.spec
    saved: dict[str, np.ndarray] = {"model": np.array(classifier.files.model.name)}  # whose weights these are
    for photo in sorted(resources.sample_images())[:args.photos]:
        fitted, _ = spec.fit(read_image(photo))
        tensor = torch.from_numpy(spec.normalize(fitted)[None])
        with torch.no_grad():
            target = int(model(tensor).argmax())
        saved[f"{photo.name}::target"] = np.array(target)
        for name in METHODS:
            started = time.perf_counter()
            with getattr(grad_cam, name)(model=model, target_layers=[target_layer]) as cam:
                maps = cam(input_tensor=tensor, targets=[ClassifierOutputTarget(target)])
            saved[f"{photo.name}::{name}"] = np.asarray(maps[0], np.float32)
            saved[f"{photo.name}::{name}::ms"] = np.array((time.perf_counter() - started) * 1000)
            print(f"{photo.name}: {name} for class {target} in {saved[f'{photo.name}::{name}::ms']:.0f} ms",
                  file=sys.stderr)
    classifier.close()
    np.savez_compressed(args.out, **saved)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
