"""The detection section of scripts/benchmark_faithfulness.py: how faithful each detection method's per-box maps
are on a real detector (default: nudenet 3.4.2's YOLOv8n from the tests extra) and the bundled photos' boxes.

For every kept box of every photo, each method's map on the photo's pixels is scored by:
  * insertion / deletion AUC of the box's score (evaluate.metrics.box_score: the best proposal's class score x
    its IoU with the box) as pixels are revealed from a blurred photo / removed to grey in map order;
  * the pointing game: the map's peak inside the box (15 px tolerance);
  * the randomised-head check: |Spearman rho| between the map and the same method's map for the same box on a
    copy whose class branches have random weights (evaluate.sanity.randomize_detection_head);
  * cost: images inferred per explanation and ms.
Baselines: a seeded random map, and a box prior (a Gaussian filling the box: all a map that knows only the box
could say) — a method earns its cost by what it adds to the prior.
"""

from __future__ import annotations

import importlib.util
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ov_explain import read_image
from ov_explain.core.detector import Detector
from ov_explain.evaluate.metrics import box_score, insertion_deletion_auc, pointing_game, rank_correlation
from ov_explain.evaluate.sanity import randomize_detection_head
from ov_explain.explain.base import to_original
from ov_explain.explain.detection import DetectionExplainer
from ov_explain.explain.registry import METHODS

RANDOM, PRIOR = "random map (baseline)", "box prior (baseline)"


def default_detector() -> Path | None:
    found = importlib.util.find_spec("nudenet")
    return None if found is None else Path(list(found.submodule_search_locations)[0]) / "320n.onnx"


def box_prior(shape: tuple[int, int], box: tuple[float, float, float, float]) -> np.ndarray:
    """A Gaussian centred on the box with the box's size (sigma = half its width / height)."""
    x1, y1, x2, y2 = box
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    sx, sy = max((x2 - x1) / 2, 1.0), max((y2 - y1) / 2, 1.0)
    return np.exp(-(((xs - (x1 + x2) / 2) / sx) ** 2 + ((ys - (y1 + y2) / 2) / sy) ** 2) / 2)


def benchmark_detector(path: Path, photos: list[Path], preset: str, steps: int, seed: int) -> dict[str, Any]:
    import openvino as ov

    detector = Detector(path, device="CPU", precision="f32", cache_dir=None)
    methods = [name for name, method in METHODS.items() if method.task == "detection"]
    scores: dict[str, dict[str, list[float]]] = {name: {} for name in [*methods, PRIOR, RANDOM]}
    boxes = []
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        random_path = Path(tmp) / "random_head.xml"
        ov.save_model(randomize_detection_head(detector.model, detector.num_classes, seed=seed), str(random_path),
                      compress_to_fp16=False)
        randomised = Detector(random_path, device="CPU", precision="f32", cache_dir=None, preprocess=detector.spec,
                              labels=detector.labels)
        explainers = {name: DetectionExplainer(detector, method=name, preset=preset, seed=seed) for name in methods}
        random_explainers = {name: DetectionExplainer(randomised, method=name, preset=preset, seed=seed)
                             for name in methods}
        for photo in photos:
            pixels = read_image(photo)
            found = detector.predict(pixels).detections
            for position, detection in enumerate(found):
                boxes.append(f"{photo.name}:{detection.label}")
                score = box_score(detector, detection.input_box, detection.class_index)
                maps: dict[str, tuple[np.ndarray, np.ndarray | None, float, int]] = {}
                for name in methods:
                    explainer = explainers[name]
                    started = time.perf_counter()
                    result = explainer.explain(pixels, [position])
                    ms = (time.perf_counter() - started) * 1000
                    # The same box (anchor, class) on the randomised copy, from its own outputs.
                    prepared = random_explainers[name].prepare(pixels)
                    other = random_explainers[name].raw_maps(prepared, [detection])[0]
                    on_random = to_original(other, detector.spec.size, prepared.geometry)
                    maps[name] = (result.maps[0].on_image, on_random, ms, result.images_inferred)
                maps[PRIOR] = (box_prior(pixels.shape[:2], detection.box), None, 0.0, 0)
                maps[RANDOM] = (rng.random(pixels.shape[:2]).astype(np.float32), None, 0.0, 0)
                for name, (saliency, on_random, ms, images) in maps.items():
                    insertion, deletion = insertion_deletion_auc(pixels, saliency, 0, score, steps=steps)
                    row = scores[name]
                    row.setdefault("insertion", []).append(insertion)
                    row.setdefault("deletion", []).append(deletion)
                    row.setdefault("pointing", []).append(float(pointing_game(saliency, detection.box)))
                    if on_random is not None:
                        row.setdefault("abs_rho", []).append(abs(rank_correlation(saliency, on_random)))
                    row.setdefault("ms", []).append(ms)
                    row.setdefault("images", []).append(images)
    summary = {name: {k: statistics.mean(v) if k != "ms" else statistics.median(v) for k, v in row.items()}
               for name, row in scores.items()}
    return {"model": str(path), "input_size": list(detector.spec.size), "boxes": boxes, "preset": preset,
            "steps": steps, "seed": seed, "summary": summary}


def markdown(result: dict[str, Any]) -> str:
    fmt = lambda value, digits=3: "–" if value is None else f"{value:.{digits}f}"  # noqa: E731
    lines = [f"**{Path(result['model']).name}** (detector, {result['input_size'][0]}x{result['input_size'][1]}, "
             f"CPU, f32; {len(result['boxes'])} boxes: {', '.join(result['boxes'])}; preset {result['preset']}, "
             f"seed {result['seed']}; insertion / deletion of the box's score, {result['steps']} steps)", "",
             "| method | insertion AUC ↑ | deletion AUC ↓ | pointing game ↑ | random-head \\|ρ\\| ↓ | images inferred "
             "| ms / box |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, m in sorted(result["summary"].items(), key=lambda item: -(item[1]["insertion"] - item[1]["deletion"])):
        baseline = name in (RANDOM, PRIOR)
        lines.append(f"| {name} | {fmt(m['insertion'])} | {fmt(m['deletion'])} | {fmt(m['pointing'], 2)} | "
                     f"{fmt(m.get('abs_rho'), 2)} | {'–' if baseline else fmt(m['images'], 0)} | "
                     f"{'–' if baseline else fmt(m['ms'], 0)} |")
    return "\n".join(lines)
