"""Dataset-audit speed and memory on the bundled model, measured side by side in one run.

    python scripts/benchmark_audit.py [--images 200] [--rounds 3] [--memory-sizes 100,1000]

Prints:
  * audit throughput with the default white-box method (decode, explain, case, overlay JPEG, raw map, manifest)
    divided by plain prediction throughput (decode + infer through the async queue) over the same images —
    target >= 0.9 — beside the ceiling on this machine: prediction plus the core time of the files an audit
    writes per map (measured on one thread), shared over the cores;
  * the end-of-run steps (summary, per-case grids, report.html), once, in seconds: of a run (built while its
    rows were appended) and of a resumed one (rebuilt from the manifest);
  * peak resident memory of a whole `ov-explain audit` process (grids and report included) for datasets of each size in
    --memory-sizes — it should stay flat as the dataset grows.
The datasets are copies of the bundled photos in class folders (their labels) in a temp folder.
Rounds interleave prediction and audit so machine noise hits both alike; medians are reported.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ov_explain import Classifier, sample_images  # noqa: E402
from ov_explain.core.resources import sample_images_dir  # noqa: E402
from ov_explain.core.storage import read_jsonl  # noqa: E402
from ov_explain.explain import Explainer  # noqa: E402
from ov_explain.runs.audit.run import AuditOptions, run_audit  # noqa: E402
from ov_explain.runs.dataset import read_dataset  # noqa: E402


def make_dataset(root: Path, count: int) -> Path:
    """``count`` images: the bundled photos copied round-robin into folders named by their label."""
    import csv

    with open(sample_images_dir() / "ground_truth.csv", newline="") as handle:
        labels = {row["path"]: row["label"] for row in csv.DictReader(handle)}
    photos = [p for p in sample_images() if p.name in labels]
    for i in range(count):
        photo = photos[i % len(photos)]
        folder = root / labels[photo.name]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, folder / f"{photo.stem}_{i:05d}.jpg")
    return root


def throughput(images: int, rounds: int, work: Path) -> None:
    dataset = make_dataset(work / f"throughput_{images}", images)
    samples = read_dataset(dataset)
    paths = [s.path for s in samples]
    classifier = Classifier(device="CPU", hint="THROUGHPUT", cache_dir=None)
    explainer = Explainer(classifier, mode="whitebox")
    # The per-image pipeline; the end-of-run steps (grids, report.html) are timed once, separately.
    options = AuditOptions(grids=False, report=False)

    def predict() -> float:
        started = time.perf_counter()
        count = sum(1 for _ in classifier.predict_many(paths))
        assert count == images
        return images / (time.perf_counter() - started)

    def audit(round_number: int) -> float:
        out = work / f"audit_{round_number}"
        started = time.perf_counter()
        summary = run_audit(samples, explainer, out, options=options)
        elapsed = time.perf_counter() - started
        assert summary.images == images and summary.errors == 0
        shutil.rmtree(out)
        return images / elapsed

    predict(), audit(-1)  # warm-up: first compile, page cache, thread pools
    predicted, audited = [], []
    for round_number in range(rounds):
        predicted.append(predict())
        audited.append(audit(round_number))
    p, a = statistics.median(predicted), statistics.median(audited)
    out = work / "audit_end_of_run"
    run_audit(samples, explainer, out, options=options)
    maps_per_image, map_ms = map_files_cost(samples, explainer, work)
    cores = os.cpu_count() or 1
    # Where no accelerator takes the inference, every core the files take is one the inference loses: the
    # best an audit can do is plain prediction plus the files' core time shared over the cores.
    ceiling = 1000 / (1000 / p + maps_per_image * map_ms / cores)
    print(f"\n{images} images, {rounds} interleaved rounds, median images/s")
    print(f"  plain prediction (predict_many, async queue)   {p:7.1f} images/s")
    print(f"  audit, {explainer.method:<8s} (overlays + manifest)    {a:7.1f} images/s")
    print(f"  ratio audit / prediction                       {a / p:7.2f}   (target >= 0.9)")
    print(f"  the files of one map (projection, colour map, blend, JPEG, .npy, atomic writes): {map_ms:.2f} core-ms, "
          f"{maps_per_image:.2f} maps per image")
    print(f"  ceiling here: prediction + the files on {cores} cores {ceiling:7.1f} images/s = {ceiling / p:.2f} of "
          f"prediction; the audit reaches {a / ceiling:.2f} of it")
    fresh = work / "audit_with_pictures"
    started = time.perf_counter()
    summary = run_audit(samples, explainer, fresh, options=AuditOptions(grids=True, report=True))
    end = time.perf_counter() - started - summary.seconds  # the run's own seconds are its images'
    print(f"  end of run (summary, grids, report.html)       {end:7.2f} s for {images} images "
          f"({end / (end + summary.seconds):.1%} of the run; built while the rows were appended)")
    started = time.perf_counter()
    run_audit(samples, explainer, out, options=AuditOptions(grids=True, report=True))  # all resumed: only the end
    print(f"  the same rebuilt from the manifest (a resumed run) {time.perf_counter() - started:5.2f} s")


def map_files_cost(samples, explainer: Explainer, work: Path) -> tuple[float, float]:
    """(maps per image, core-ms per map) of the files an audit writes for a map, measured on one thread
    over the dataset's own maps: what an audit needs beyond prediction whatever the engine."""
    from ov_explain.core.images import read_image
    from ov_explain.runs.writer import to_bgr, write_map_files

    style = AuditOptions(save_raw=True).style
    folder = work / "map_files"
    folder.mkdir(exist_ok=True)
    maps = []
    for sample in samples[:40]:
        pixels = read_image(sample.path)
        explanation = explainer.explain(pixels, top_k=5)
        maps += [(to_bgr(pixels), saliency) for saliency in explanation.maps[:1]]
    audited = list(read_jsonl(work / "audit_end_of_run" / "manifest.jsonl"))
    started = time.thread_time()
    for round_number in range(3):
        for i, (bgr, saliency) in enumerate(maps):
            write_map_files(folder, f"map_{round_number}_{i}", bgr, saliency, style)
    map_ms = (time.thread_time() - started) * 1000 / (3 * len(maps))
    return len(audited) / len({row["key"] for row in audited}), map_ms


def memory(sizes: list[int], work: Path) -> None:
    print("\npeak resident memory of one `ov-explain audit` process")
    for size in sizes:
        dataset = make_dataset(work / f"memory_{size}", size)
        command = [sys.executable, "-c", _MEASURE, str(dataset), str(work / f"memory_out_{size}")]
        result = subprocess.run(command, check=True, capture_output=True, text=True)
        peak_mb, seconds = result.stdout.split()
        print(f"  {size:5d} images   peak RSS {float(peak_mb):7.1f} MB   ({float(seconds):.1f} s)")


# Runs in a child so each size gets its own peak-RSS figure (ru_maxrss of that process alone).
_MEASURE = """
import resource, sys, time
sys.path.insert(0, %r)
from ov_explain.runs.audit.run import audit
started = time.perf_counter()
summary = audit(sys.argv[1], sys.argv[2], device="CPU", cache_dir=None)
assert summary.errors == 0
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, time.perf_counter() - started)
""" % str(ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200, help="Images for the throughput ratio.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory-sizes", default="100,1000", help="Dataset sizes for the memory figures.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ov-explain-bench-") as temp:
        work = Path(temp)
        throughput(args.images, args.rounds, work)
        memory([int(s) for s in args.memory_sizes.split(",") if s], work)


if __name__ == "__main__":
    main()
