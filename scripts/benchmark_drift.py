"""Drift-audit speed on the bundled model, measured side by side in one run.

    python scripts/benchmark_drift.py [--images 100] [--rounds 3]

Prints, with rounds interleaved so machine noise hits every contender alike (medians reported):
  * a drift audit's time (FP32-f32 reference vs INT8 candidate, ReciproCAM) over the time of two plain
    audits of the same images, one per deployment — target <= 1.1: the two deployments' images run
    concurrently in one pool instead of one audit after the other. Per-image work (the summaries'
    `seconds`) and whole runs (with the end-of-run files) are both printed;
  * INT8 vs FP32 inference on this CPU: latency (one image, sync) and throughput (the async queue).
The INT8 IR is made by `ov-explain quantize` (NNCF, the quantize extra) on the bundled photos.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchmark_audit import make_dataset  # noqa: E402

from ov_explain import Classifier  # noqa: E402
from ov_explain.core.resources import sample_images_dir  # noqa: E402
from ov_explain.explain import Explainer  # noqa: E402
from ov_explain.runs.audit.run import AuditOptions, run_audit  # noqa: E402
from ov_explain.runs.dataset import read_dataset  # noqa: E402
from ov_explain.runs.drift.run import DriftOptions, run_drift  # noqa: E402
from ov_explain.tools.quantize import quantize  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        int8_path = work / "int8" / "lite0_int8.xml"
        quantize(None, sample_images_dir() / "ground_truth.csv", int8_path)
        samples = read_dataset(make_dataset(work / "data", args.images))
        fp32 = Classifier(device="CPU", hint="THROUGHPUT", cache_dir=None)
        int8 = Classifier(int8_path, device="CPU", hint="THROUGHPUT", cache_dir=None)
        reference, candidate = Explainer(fp32, mode="whitebox"), Explainer(int8, mode="whitebox")
        options = AuditOptions(grids=False, report=False)

        def timed(function) -> float:
            started = time.perf_counter()
            function()
            return time.perf_counter() - started

        def audits(number: int) -> tuple[float, float]:
            """(whole runs, per-image pipelines) in seconds, for the two audits together."""
            whole = pipeline = 0.0
            for i, explainer in enumerate((reference, candidate)):
                started = time.perf_counter()
                summary = run_audit(samples, explainer, work / f"audit_{number}_{i}", options=options)
                whole += time.perf_counter() - started
                pipeline += summary.seconds
            return whole, pipeline

        def drift(number: int) -> tuple[float, float]:
            started = time.perf_counter()
            summary = run_drift(samples, reference, candidate, work / f"drift_{number}",
                                options=DriftOptions(report=False))
            return time.perf_counter() - started, summary.seconds

        paths = [s.path for s in samples]
        single = [fp32.prepare(p).tensor[None] for p in paths[:7]]

        def latency(classifier: Classifier) -> float:
            return statistics.median(timed(lambda t=t: classifier.infer(t)) for t in single * 5) * 1000

        def rate(classifier: Classifier) -> float:
            return len(paths) / timed(lambda: sum(1 for _ in classifier.predict_many(paths)))

        audits(-1), drift(-1), latency(fp32), latency(int8)  # warm-up: compile, page cache, pools
        results: dict[str, list[float]] = {k: [] for k in ("audits", "audits pipeline", "drift", "drift pipeline",
                                                           "fp32 ms", "int8 ms", "fp32 img/s", "int8 img/s")}
        for number in range(args.rounds):
            whole, pipeline = audits(number)
            results["audits"].append(whole)
            results["audits pipeline"].append(pipeline)
            whole, pipeline = drift(number)
            results["drift"].append(whole)
            results["drift pipeline"].append(pipeline)
            results["fp32 ms"].append(latency(fp32))
            results["int8 ms"].append(latency(int8))
            results["fp32 img/s"].append(rate(fp32))
            results["int8 img/s"].append(rate(int8))
            for folder in work.glob(f"*_{number}*"):
                shutil.rmtree(folder, ignore_errors=True)
        m = {k: statistics.median(v) for k, v in results.items()}
        print(f"{args.images} images, {args.rounds} interleaved rounds, medians (precision f32 for both IRs)")
        print(f"  two plain audits (FP32, then INT8)   {m['audits']:7.2f} s  "
              f"(per-image work {m['audits pipeline']:.2f} s)")
        print(f"  one drift audit (FP32 vs INT8)       {m['drift']:7.2f} s  "
              f"(per-image work {m['drift pipeline']:.2f} s)")
        print(f"  ratio drift / two audits, per-image work   {m['drift pipeline'] / m['audits pipeline']:5.2f}"
              "   (target <= 1.1)")
        print(f"  ratio drift / two audits, whole runs       {m['drift'] / m['audits']:5.2f}"
              "   (the drift run also draws correlation.png with matplotlib)")
        print(f"  inference latency FP32 / INT8        {m['fp32 ms']:.2f} / {m['int8 ms']:.2f} ms  "
              f"(INT8 x{m['fp32 ms'] / m['int8 ms']:.2f} faster)")
        print(f"  inference throughput FP32 / INT8     {m['fp32 img/s']:.1f} / {m['int8 img/s']:.1f} images/s  "
              f"(INT8 x{m['int8 img/s'] / m['fp32 img/s']:.2f})")


if __name__ == "__main__":
    main()
