"""Inference latency and throughput of the bundled model on every available device, as ratios from one run.

    python scripts/benchmark_inference.py [--rounds 5] [--images 64]

Modes, measured in interleaved rounds so machine noise hits all of them alike:
  sync-b1     one image per synchronous call, LATENCY hint (what a single-image request sees)
  sync-b8     batches of 8 per synchronous call, LATENCY hint
  async-b1    one image per request through AsyncInferQueue, THROUGHPUT hint (what predict_many does)
  async-b8    batches of 8 per request through AsyncInferQueue, THROUGHPUT hint
Ratios are throughput relative to sync-b1 on the same device. Preprocessing is excluded (done once).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import openvino as ov  # noqa: E402

from ov_explain import Classifier, discover, sample_images  # noqa: E402
from ov_explain.devices import compile_with_fallback, optimal_requests  # noqa: E402


def run_sync(compiled, tensors: np.ndarray, batch: int) -> float:
    """Seconds to push every tensor through synchronous calls of ``batch`` images."""
    started = time.perf_counter()
    for i in range(0, len(tensors), batch):
        compiled(tensors[i:i + batch])
    return time.perf_counter() - started


def run_async(compiled, tensors: np.ndarray, batch: int) -> float:
    queue = ov.AsyncInferQueue(compiled, optimal_requests(compiled))
    started = time.perf_counter()
    for i in range(0, len(tensors), batch):
        queue.start_async({0: tensors[i:i + batch]})
    queue.wait_all()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=64, help="images per round (multiple of 8)")
    args = parser.parse_args()

    core = ov.Core()
    reference = Classifier(device="CPU", cache_dir=None)
    photos = [reference.prepare(p)[0] for p in sample_images()]
    tensors = np.stack([photos[i % len(photos)] for i in range(args.images)])
    print(f"model: {reference.files.model.name}  images/round: {args.images}  rounds: {args.rounds}  "
          f"openvino {ov.__version__.split('-')[0]}")
    for device in discover(core):
        model = core.read_model(str(reference.files.model))
        try:
            latency = compile_with_fallback(core, model, device.name, hint="LATENCY", cache_dir=None).compiled
            throughput = compile_with_fallback(core, model, device.name, hint="THROUGHPUT", cache_dir=None).compiled
        except Exception as exc:  # report and go on to the next device
            print(f"{device.name}: cannot compile ({exc})")
            continue
        modes = {"sync-b1": lambda: run_sync(latency, tensors, 1),
                 "sync-b8": lambda: run_sync(latency, tensors, 8),
                 "async-b1": lambda: run_async(throughput, tensors, 1),
                 "async-b8": lambda: run_async(throughput, tensors, 8)}
        for run in modes.values():  # warm-up
            run()
        seconds: dict[str, list[float]] = {name: [] for name in modes}
        for _ in range(args.rounds):
            for name, run in modes.items():
                seconds[name].append(run())
        base = statistics.median(seconds["sync-b1"])
        print(f"\n{device.name} ({device.full_name})")
        print(f"  {'mode':10s} {'ms/image':>9s} {'images/s':>9s} {'x sync-b1':>10s}")
        for name, values in seconds.items():
            median = statistics.median(values)
            print(f"  {name:10s} {median / args.images * 1000:9.2f} {args.images / median:9.1f} {base / median:10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
