"""Detection speed on a real YOLOv8n (nudenet 3.4.2's 320n.onnx, from the tests extra) and the bundled photos
with faces, as ratios measured side by side in one run.

    python scripts/benchmark_detection.py [--rounds 3] [--presets speed,balance] [--model PATH]

Prints per photo: plain detection latency (one image, preprocessing included) and white-box ReciproCAM
(detreciprocam: one inference for every box) as a ratio of it; then per preset D-RISE's time per image for
all its boxes, the ratio, and the device floor: the same number of masked images pushed through
OpenVINO's async queue with no other work (D-RISE's own cost is the rest). Rounds interleave the contenders
so machine noise hits them alike; medians are reported. f32 on CPU unless --precision says otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ov_explain import sample_images  # noqa: E402
from ov_explain.core.detector import Detector  # noqa: E402
from ov_explain.core.devices import RequestRing  # noqa: E402
from ov_explain.explain.detection import DetectionExplainer  # noqa: E402
from ov_explain.explain.methods.drise import DRISE  # noqa: E402
from ov_explain.explain.methods.rise import mask_batches  # noqa: E402

FACES = ("astronaut.jpg", "grace_hopper.jpg", "camera.jpg")


def default_model() -> Path:
    found = importlib.util.find_spec("nudenet")
    if found is None:
        sys.exit('nudenet is not installed: pip install -e ".[tests]" (or pass --model)')
    return Path(list(found.submodule_search_locations)[0]) / "320n.onnx"


def push(detector: Detector, batch: np.ndarray, requests: int) -> None:
    """The device floor: ``requests`` inferences of a ready batch through a ring of 2 requests, nothing else."""
    with RequestRing(detector.compiled, 2, lambda request: None) as ring:
        for _ in range(requests):
            ring.start({0: batch}, None)
            ring.ready()
        ring.drain()


def interleaved(rounds: int, contenders: dict[str, Callable[[], Any]]) -> tuple[dict[str, float], dict[str, Any]]:
    """Each contender once per round, in turn (machine noise hits them alike): median seconds and last result."""
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    results: dict[str, Any] = {}
    for _ in range(rounds):
        for name, run in contenders.items():
            started = time.perf_counter()
            results[name] = run()
            seconds[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in seconds.items()}, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--presets", default="speed,balance")
    parser.add_argument("--precision", default="f32")
    args = parser.parse_args()
    detector = Detector(args.model or default_model(), device="CPU", cache_dir=None, precision=args.precision)
    photos = {p.name: p for p in sample_images()}
    print(f"{detector.files.model.name}: {detector.output_format}, {detector.num_classes} classes, input "
          f"{detector.spec.size[0]}x{detector.spec.size[1]}, CPU {detector.precision}, rounds {args.rounds}")
    whitebox = DetectionExplainer(detector)
    print("| photo | boxes | detect ms | detreciprocam ms | ratio |")
    print("|---|---|---|---|---|")
    for name in FACES:
        times, results = interleaved(args.rounds, {"plain": partial(detector.predict, photos[name]),
                                                   "white": partial(whitebox.explain, photos[name])})
        p, w = times["plain"], times["white"]
        print(f"| {name} | {len(results['white'].maps)} | {p * 1000:.1f} | {w * 1000:.0f} | x{w / p:.1f} |")
    print()
    print("| photo | preset | masks | boxes | detect ms | D-RISE s / image | ratio | floor s | D-RISE / floor |")
    print("|---|---|---|---|---|---|---|---|---|")
    for preset in args.presets.split(","):
        masks = DRISE.presets[preset]["num_masks"]
        explainer = DetectionExplainer(detector, mode="blackbox", preset=preset)
        for name in FACES:
            prepared = explainer.prepare(photos[name])
            chunk, jobs = mask_batches(masks, explainer.settings["chunk"], detector.max_batch)
            batch = np.repeat(prepared.tensor[None].astype(np.float32), chunk, axis=0)
            times, results = interleaved(args.rounds, {
                "plain": partial(detector.predict, photos[name]), "drise": partial(explainer.explain, photos[name]),
                "floor": partial(push, detector, batch, jobs)})
            p, d, f = times["plain"], times["drise"], times["floor"]
            boxes = len(results["drise"].maps)
            print(f"| {name} | {preset} | {masks} | {boxes} | {p * 1000:.1f} | {d:.2f} | x{d / p:.0f} | {f:.2f} | "
                  f"{d / f:.2f} |")


if __name__ == "__main__":
    main()
