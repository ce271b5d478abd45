"""ov_explain's ROAD against pytorch-grad-cam's own `ROADCombined`, on identical maps of the bundled model.

ROAD (Rong et al., ICML 2022) reads a map only through its ranking of pixels (which ones to impute first),
so a map's normalisation cannot change its score; how the map reaches the input size can (a nearest-neighbour
upsampling of a 7 x 7 map makes 32 x 32 blocks of ties, which each implementation breaks in its own order).
This script gives every map pytorch-grad-cam's own preparation (min-max, then a bilinear resize to the input:
`scale_cam_image`), plus ov_explain's CAM upsampled nearest-neighbour, and scores each map four ways:
pytorch-grad-cam's ROADCombined on the torch weights and ov_explain's `metrics.road` on the OpenVINO IR,
each with the logit and with the probability of the target class.

    pip install torch==2.13.0 -e ".[convert]" && pip install --no-deps grad-cam==1.5.7 ttach
    python scripts/road_reference.py [--photos 7] [--percentiles 20 40 60 80]

torch and pytorch-grad-cam are for this script only; nothing in ov_explain imports them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from pytorch_grad_cam_maps import _import_pytorch_grad_cam  # noqa: E402

from ov_explain import Classifier, read_image, resources  # noqa: E402
from ov_explain.evaluate.metrics import road  # noqa: E402
from ov_explain.explain import Explainer  # noqa: E402

READOUTS = ("logit", "probability")


def scale_like_pytorch_grad_cam(raw: np.ndarray, size: tuple[int, int], *, nearest: bool = False) -> np.ndarray:
    """pytorch-grad-cam's `scale_cam_image`: min-max to [0, 1], then a bilinear resize to (width, height)."""
    import cv2

    raw = raw - raw.min()
    raw = raw / (1e-7 + raw.max())
    return cv2.resize(raw.astype(np.float32), size, interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=7)
    parser.add_argument("--percentiles", type=int, nargs="+", default=[20, 40, 60, 80])
    args = parser.parse_args()

    import torch
    from convert_efficientnet_lite0 import build_torch_model
    from torch import nn

    grad_cam, ClassifierOutputTarget = _import_pytorch_grad_cam()
    from pytorch_grad_cam.metrics.road import ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    model = build_torch_model("lite0")
    torch.set_grad_enabled(True)
    model._bn1 = nn.Sequential(model._bn1, nn.ReLU6())  # the post-ReLU6 feature map as a module (see the other script)
    classifier = Classifier(resources.default_model_path(), device="CPU", precision="f32", cache_dir=None)
    spec = classifier.spec
    explainers = {readout: Explainer(classifier, method="cam", readout=readout) for readout in READOUTS}

    def ov_score(readout: str):
        def score(images):
            raw = classifier.infer(np.stack([spec.normalize(image) for image in images]))
            return classifier.to_probabilities(raw)[0] if readout == "probability" else raw
        return score

    torch_target = {"logit": ClassifierOutputTarget, "probability": ClassifierOutputSoftmaxTarget}
    scores: dict[str, list[list[float]]] = {}
    for photo in sorted(resources.sample_images())[:args.photos]:
        fitted, _ = spec.fit(read_image(photo))
        tensor = torch.from_numpy(spec.normalize(fitted)[None])
        with torch.no_grad():
            target = int(model(tensor).argmax())
        maps = {}
        with grad_cam.GradCAM(model=model, target_layers=[model._bn1]) as cam:
            maps["pytorch-grad-cam Grad-CAM"] = cam(input_tensor=tensor, targets=[ClassifierOutputTarget(target)])[0]
        for readout, explainer in explainers.items():
            raw = explainer.explain(fitted, targets=[target]).maps[0].raw
            size = (fitted.shape[1], fitted.shape[0])
            maps[f"ov_explain cam ({readout})"] = scale_like_pytorch_grad_cam(raw, size)
            if readout == "probability":
                maps["ov_explain cam (probability), nearest"] = scale_like_pytorch_grad_cam(raw, size, nearest=True)
        for name, saliency in maps.items():
            row = []
            for readout in READOUTS:
                torch.manual_seed(0)  # ROADCombined's imputation noise
                metric = ROADCombined(percentiles=args.percentiles)
                row.append(float(metric(tensor, saliency[None], [torch_target[readout](target)], model)[0]))
            for readout in READOUTS:
                row.append(road(fitted, saliency, target, ov_score(readout), percentiles=args.percentiles,
                                seed=0).score)
            scores.setdefault(name, []).append(row)
        print(f"{photo.name}: class {target}", file=sys.stderr, flush=True)
    classifier.close()

    print(f"ROAD (MoRF/LeRF combined, percentiles {args.percentiles}), mean over {args.photos} photos, "
          "identical maps (min-max, bilinear to the input unless nearest):\n")
    print("| map | pytorch-grad-cam, logit | pytorch-grad-cam, probability | ov_explain, logit "
          "| ov_explain, probability |")
    print("|---|---|---|---|---|")
    for name, rows in scores.items():
        print(f"| {name} | " + " | ".join(f"{value:.4f}" for value in np.mean(rows, axis=0)) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
