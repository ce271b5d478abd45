"""Inference latency and throughput of the bundled model on every available device, as ratios from one run.

    python scripts/benchmark_inference.py [--rounds 5] [--images 64]

Modes, each in f32 and in the device's default precision (bf16 on CPUs with AMX, f16 on GPU / NPU),
measured in interleaved rounds so machine noise hits all of them alike:
  sync-b1     one image per synchronous call, LATENCY hint (what a single-image request sees)
  sync-b8     batches of 8 per synchronous call, LATENCY hint
  async-b1    one image per request, several in flight, THROUGHPUT hint (what predict_many does)
  async-b8    batches of 8 per request, several in flight, THROUGHPUT hint
Ratios: throughput relative to f32 sync-b1 on the same device, and device precision vs f32 per mode.
Preprocessing is excluded (done once).
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
from ov_explain.core.devices import RequestRing, compile_with_fallback, optimal_requests  # noqa: E402


def run_sync(compiled, tensors: np.ndarray, batch: int) -> float:
    """Seconds to push every tensor through synchronous calls of ``batch`` images."""
    started = time.perf_counter()
    for i in range(0, len(tensors), batch):
        compiled(tensors[i:i + batch])
    return time.perf_counter() - started


def run_async(compiled, tensors: np.ndarray, batch: int) -> float:
    with RequestRing(compiled, optimal_requests(compiled), read=lambda request: None) as ring:
        started = time.perf_counter()
        for i in range(0, len(tensors), batch):
            ring.start({0: tensors[i:i + batch]}, None)
        ring.drain()
        return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=64, help="images per round (multiple of 8)")
    args = parser.parse_args()

    core = ov.Core()
    reference = Classifier(device="CPU", cache_dir=None)
    photos = [reference.prepare(p).tensor for p in sample_images()]
    tensors = np.stack([photos[i % len(photos)] for i in range(args.images)])
    print(f"model: {reference.files.model.name}  images/round: {args.images}  rounds: {args.rounds}  "
          f"openvino {ov.__version__.split('-')[0]}")
    for device in discover(core):
        model = core.read_model(str(reference.files.model))
        modes, executed = {}, {}
        try:
            for precision in ("f32", "device"):
                latency = compile_with_fallback(core, model, device.name, hint="LATENCY", cache_dir=None,
                                                precision=precision)
                throughput = compile_with_fallback(core, model, device.name, hint="THROUGHPUT", cache_dir=None,
                                                   precision=precision).compiled
                executed[precision] = latency.precision
                for batch in (1, 8):
                    modes[f"sync-b{batch}", precision] = lambda c=latency.compiled, b=batch: run_sync(c, tensors, b)
                    modes[f"async-b{batch}", precision] = lambda c=throughput, b=batch: run_async(c, tensors, b)
        except Exception as exc:  # report and go on to the next device
            print(f"{device.name}: cannot compile ({exc})")
            continue
        for run in modes.values():  # warm-up
            run()
        seconds: dict[tuple[str, str], list[float]] = {key: [] for key in modes}
        for _ in range(args.rounds):
            for key, run in modes.items():
                seconds[key].append(run())
        median = {key: statistics.median(values) for key, values in seconds.items()}
        base = median["sync-b1", "f32"]
        native = executed["device"]
        print(f"\n{device.name} ({device.full_name}); device precision here: {native}")
        print(f"  {'mode':10s} {'f32 ms/img':>10s} {native + ' ms/img':>11s} {'f32 x b1':>9s} "
              f"{native + ' x b1':>10s} {native + '/f32 speed':>15s}")
        for name in ("sync-b1", "sync-b8", "async-b1", "async-b8"):
            f32, dev = median[name, "f32"], median[name, "device"]
            print(f"  {name:10s} {f32 / args.images * 1000:10.2f} {dev / args.images * 1000:11.2f} "
                  f"{base / f32:9.2f} {base / dev:10.2f} {f32 / dev:15.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
