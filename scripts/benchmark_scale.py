"""Audits beyond one machine: the Ray engine's overhead and the driver's limits, measured in one run.

    python scripts/benchmark_scale.py [--images 4200] [--batch-size 64] [--rows 1000000]

Needs the distributed extra (Ray Data). Prints:
  * throughput (images / the run's own seconds: every image's work and the engine's start — Ray's actors
    loading the model — but not the driver's model load nor the cluster's start) of the local engine and of
    the Ray engine on a cluster started for the run on this machine, at equal cores: local pinned to one
    core vs one single-thread actor, local on both cores vs two single-thread actors, and the ratio Ray /
    local (target >= 0.85). Each configuration runs in its own process, one after the other, on the same
    dataset (copies of the bundled photos), grids and report off;
  * the engine's own ceiling: ``--pipeline-images`` images through the Ray engine and the driver with no
    per-image work (2 actors on these 2 cores);
  * the driver at ``--rows`` simulated rows: the rows/s its appending sustains (the manifest, in dataset
    order, with a progress bar, as in a run), its peak memory holding the dataset, the file names and the
    list handed to Ray Data, the summary and CSV built while appending, as an audit does, and the end of that
    run (summary.json, grids, report); then the same end rebuilt from the manifest in one pass (a run resuming
    every image) in a process of its own, its time and peak memory, three ways: after that run ended (its
    record of the rows file matches: no row checked again, manifest.csv kept), as a run killed right after a
    checkpoint leaves the folder (the partial manifest.csv continued), and with no record (every row checked,
    manifest.csv written again) — and from these, the cluster sizes at which the engine and the appending
    would saturate.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

CONFIGS = {  # name -> (engine, cores the run may use, Ray actors)
    "local-1core": ("local", 1, None),
    "ray-1actor": ("ray", None, 1),
    "local-2cores": ("local", 2, None),
    "ray-2actors": ("ray", None, 2),
}


def child_throughput(name: str, dataset: Path, out: Path, batch_size: int) -> dict:
    """One configuration, in this (child) process: images per second of the run."""
    engine, cores, actors = CONFIGS[name]
    if cores is not None:
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cores]))  # before OpenVINO counts CPUs
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # the run's cluster on 127.0.0.1 only
    from ov_explain.runs.audit.run import audit
    from ov_explain.runs.ray_engine import RayOptions

    started = time.perf_counter()
    summary = audit(dataset, out, device="CPU", cache_dir=None, grids=False, report=False, engine=engine,
                    ray=RayOptions(actors=actors, batch_size=batch_size))
    rows = sum(1 for _ in open(out / "manifest.jsonl"))
    # The run's own seconds: every image's work and its engine's start (Ray: actors loading the model),
    # not the driver's model load nor connecting to the cluster. Ray delivers whole batches in order, so
    # a rate over part of the run would count batches that finished earlier.
    return {"config": name, "images": summary.images, "errors": summary.errors, "rows": rows,
            "images_per_s": summary.images_per_second, "wall_s": time.perf_counter() - started}


def child_driver(rows: int, work: Path, template: Path) -> dict:
    """The driver's side of a run of ``rows`` images: hold the dataset, name files, append rows in order.
    ``template``: a manifest whose first row (a real one) every simulated row copies."""
    from tqdm import tqdm

    from ov_explain.core.storage import json_line
    from ov_explain.runs.audit.folder import read_errors
    from ov_explain.runs.audit.run import AUDIT_FOLDER
    from ov_explain.runs.audit.summary import SummaryBuilder
    from ov_explain.runs.dataset import Sample
    from ov_explain.runs.engine import SampleResult, _record, open_ledger
    from ov_explain.runs.naming import unique_stems
    from ov_explain.runs.report import REPORT_ITEMS, ImageGallery, build_report

    started = time.perf_counter()
    samples = [Sample(Path(f"/data/imagenet/val/n{i % 1000:08d}/ILSVRC2012_val_{i:08d}.JPEG"), f"n{i % 1000:08d}",
                      f"n{i % 1000:08d}/ILSVRC2012_val_{i:08d}.JPEG") for i in range(rows)]
    stems = dict(zip((s.key for s in samples), unique_stems([s.key for s in samples], [s.path.stem for s in samples])))
    items = [{"key": s.key, "path": str(s.path), "label": s.label, "stem": stems[s.key]} for s in samples]
    held_s = time.perf_counter() - started
    with open(template, encoding="utf-8") as handle:
        template = {**json.loads(handle.readline()), "target_rank": 0, "targets_total": 1}  # an image a row

    # An actor sends each image's rows as JSON text; here the text is the template's with the key and path
    # swapped in (a string join, far below the driver's per-row work), so only the driver's share is timed.
    marker_key, marker_path = "@@KEY@@", "@@PATH@@"
    before, middle, after = _split(json_line({**template, "key": marker_key, "source": marker_path}), marker_key,
                                   marker_path)

    class Simulated:
        def results(self, todo, kind, stopping):
            for sample in todo:
                yield SampleResult(sample.key, rows=f"{before}{sample.key}{middle}{sample.path}{after}")

    out = work / "driver"
    out.mkdir()
    bar = tqdm(total=0, file=open(os.devnull, "w"), mininterval=0.1)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    # As an audit does: the summary, the CSV and the grids' and report's choices built while appending.
    chosen = ImageGallery(REPORT_ITEMS)
    builder = SummaryBuilder(out, 24, chosen)
    started = time.perf_counter()
    ledger = open_ledger(out, AUDIT_FOLDER, builder)  # as run_rows does: the rows file followed and recorded
    with builder.building(ledger.earlier):
        appended = _record(samples, Simulated(), out, AUDIT_FOLDER, progress, None, 0, builder, ledger)
    ledger.write(out)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    builder.finish(read_errors(out), FINISH_RUN)
    build_report(out, chosen=chosen.finish())
    end_s = time.perf_counter() - started
    del items
    return {"rows": appended, "append_rows_per_s": appended / seconds, "append_s": seconds, "end_s": end_s,
            "hold_s": held_s, "peak_rss_mb": peak, "manifest_mb": (out / "manifest.jsonl").stat().st_size / 1e6}


#: What the rows do not say, for the summary of the simulated run.
FINISH_RUN = {"model": "m.xml", "method": "cam", "mode": "whitebox", "device": "CPU", "precision": "f32",
              "target_layer": None, "thresholds": {"high_confidence": 0.5, "two_predictions": 0.2}, "seconds": 1.0,
              "images_per_second": 1.0, "resumed": 0}


def child_finish(out: Path, record: str) -> dict:
    """A run resuming every image of the driver's simulated rows, in a process of its own (its own peak
    memory), as :func:`~ov_explain.runs.engine.run_rows` does it: the rows file's bytes read once against the
    last run's record, the recovery's one pass over the manifest (which images are done) feeding the summary's
    builder, then the end: summary.json, manifest.csv, confusion.csv, the grids and report.html. ``record``:
    "ended" (the record as the driver's run left it), "killed" (as a run killed right after a checkpoint leaves
    it: manifest.csv as its partial file), "none" (removed: every row checked, manifest.csv written again)."""
    from ov_explain.runs.audit.folder import read_errors
    from ov_explain.runs.audit.run import AUDIT_FOLDER
    from ov_explain.runs.audit.summary import SummaryBuilder
    from ov_explain.runs.engine import CHECKED_FILE, open_ledger, recover
    from ov_explain.runs.report import REPORT_ITEMS, ImageGallery, build_report

    if record == "none":
        (out / CHECKED_FILE).unlink()
    elif record == "killed":  # the folder as a run killed right after a checkpoint leaves it
        left = json.loads((out / CHECKED_FILE).read_text())
        finished = left["sink"]["manifest.csv"]["finished"]
        os.replace(out / "manifest.csv", out / ".manifest.csv.partial")
        partial = {"bytes": finished["bytes"], "rows": finished["rows"], "columns": finished["columns"]}
        (out / CHECKED_FILE).write_text(json.dumps({**left, "sink": {"manifest.csv": {"partial": partial}}}))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    chosen = ImageGallery(REPORT_ITEMS)  # the report's images picked in the same pass, as an audit does
    builder = SummaryBuilder(out, 24, chosen)
    ledger = open_ledger(out, AUDIT_FOLDER, builder)
    ledger_s = time.perf_counter() - started
    with builder.building(ledger.earlier):
        done = recover(out, AUDIT_FOLDER, set(), set(), builder, ledger)
    ledger.write(out)
    recovered_s = time.perf_counter() - started
    recovered_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    summary = builder.finish(read_errors(out), FINISH_RUN)
    build_report(out, chosen=chosen.finish())
    return {"images": summary.images, "recovered": len(done), "recover_s": recovered_s, "ledger_s": ledger_s,
            "trusted": ledger.trusted_lines,
            "recover_rss_mb": recovered_rss, "finish_s": time.perf_counter() - started,
            "report_mb": (out / "report.html").stat().st_size / 1e6, "start_rss_mb": before,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


class _Row:
    """A finished row, as the audit's work returns it (``to_dict``), without any model work."""

    def __init__(self, data: dict) -> None:
        self.data = data

    def to_dict(self) -> dict:
        return self.data


class NoopRecipe:
    """Per-image work that only returns its row: what Ray Data and the driver cost per image, alone."""

    def __init__(self, template: dict) -> None:
        self.template = template

    def build(self, threads: int, stems: dict):
        return lambda sample: [_Row({**self.template, "key": sample.key, "source": str(sample.path)})]


def child_pipeline(images: int, work: Path, template: Path, batch_size: int) -> dict:
    """``images`` rows through the Ray engine and the driver with no per-image work: the ceiling of the
    engine itself on this machine (actors, transfers, ordering, appending)."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    from ov_explain.runs.audit.run import AUDIT_FOLDER
    from ov_explain.runs.dataset import Sample
    from ov_explain.runs.engine import run_rows
    from ov_explain.runs.ray_engine import RayEngine, RayOptions

    with open(template, encoding="utf-8") as handle:
        row = json.loads(handle.readline())
    samples = [Sample(Path(f"/data/{i:08d}.jpg"), "label", f"{i:08d}.jpg") for i in range(images)]
    stems = {s.key: s.key[:-4] for s in samples}
    engine = RayEngine(NoopRecipe(row), stems, RayOptions(actors=2, batch_size=batch_size))
    stats = run_rows(samples, engine, work / "pipeline", AUDIT_FOLDER, {}, set(stems.values()))
    return {"images": stats.ran, "images_per_s": stats.ran / stats.seconds}


def _split(line: str, first: str, second: str) -> tuple[str, str, str]:
    head, rest = line.split(first)
    middle, tail = rest.split(second)
    return head, middle, tail


def _run_child(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4200, help="images per throughput run (copies of the photos)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="simulated rows for the driver")
    parser.add_argument("--pipeline-images", type=int, default=100_000,
                        help="images through the Ray engine with no per-image work")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="throughput configurations to run")
    parser.add_argument("--batch-size", type=int, default=64, help="Ray: images per batch")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "driver":
            result = child_driver(int(rest[0]), Path(rest[1]), Path(rest[2]))
        elif kind == "finish":
            result = child_finish(Path(rest[0]), rest[1] if len(rest) > 1 else "ended")
        elif kind == "pipeline":
            result = child_pipeline(int(rest[0]), Path(rest[1]), Path(rest[2]), int(rest[3]))
        else:
            result = child_throughput(kind, Path(rest[0]), Path(rest[1]), int(rest[2]))
        print(json.dumps(result))
        return

    from benchmark_audit import make_dataset

    with tempfile.TemporaryDirectory(prefix="ov-explain-scale-") as temp:
        work = Path(temp)
        dataset = make_dataset(work / "data", args.images)
        print(f"throughput, {args.images} images (copies of the bundled photos), CPU f32, Ray batches of "
              f"{args.batch_size}, one run each:")
        results = {}
        for name in args.configs.split(","):
            results[name] = _run_child(name, str(dataset), str(work / name), str(args.batch_size))
            r = results[name]
            print(f"  {name:13s} {r['images_per_s']:7.1f} images/s over the run ({r['images']} images, "
                  f"{r['rows']} rows, {r['errors']} errors; {r['wall_s']:.1f} s wall with model load and "
                  "cluster start)")
        for ray_name, local_name in (("ray-1actor", "local-1core"), ("ray-2actors", "local-2cores")):
            if ray_name in results and local_name in results:
                ratio = results[ray_name]["images_per_s"] / results[local_name]["images_per_s"]
                print(f"  {ray_name} / {local_name}: {ratio:.2f} (target >= 0.85)")
        if args.rows <= 0 or not {"local-2cores", "ray-2actors"} <= set(results):
            return
        rows_per_image = results["local-2cores"]["rows"] / results["local-2cores"]["images"]
        per_core = results["ray-2actors"]["images_per_s"] / 2  # both cores busy: no spare core's help
        template = str(work / "local-2cores" / "manifest.jsonl")

        pipeline = _run_child("pipeline", str(args.pipeline_images), str(work), template, str(args.batch_size))
        print(f"Ray engine with no per-image work, 2 actors, batches of {args.batch_size}: "
              f"{pipeline['images_per_s']:,.0f} images/s ({pipeline['images']:,} images) — the engine's "
              f"own ceiling on these 2 cores (actors, transfers, ordering and appending share them)")

        driver = _run_child("driver", str(args.rows), str(work), template)
        images_per_s = driver["append_rows_per_s"] / rows_per_image
        print(f"driver, {driver['rows']:,} simulated rows: appends {driver['append_rows_per_s']:,.0f} rows/s "
              f"({driver['manifest_mb']:.0f} MB manifest in {driver['append_s']:.1f} s, the summary and CSV built "
              f"as it goes), peak memory {driver['peak_rss_mb']:.0f} MB holding the dataset, file names and Ray's "
              f"item list (built in {driver['hold_s']:.1f} s); the end of that run (summary.json, grids, "
              f"report.html from what was built) {driver['end_s']:.1f} s")
        for record, what in (("ended", "after a run that ended (its record of the rows matches: no row checked "
                                        "again, manifest.csv kept)"),
                             ("killed", "after a run killed right after a checkpoint (no row checked again, "
                                        "its partial manifest.csv continued)"),
                             ("none", "with no record (every row checked, manifest.csv written again)")):
            finish = _run_child("finish", str(work / "driver"), record)
            print(f"  a run resuming every image {what}, in its own process: the rows file's bytes read against "
                  f"the record {finish['ledger_s']:.1f} s, one pass over the manifest finding the "
                  f"{finish['recovered']:,} images done ({finish['trusted']:,} lines trusted) and building the "
                  f"summary {finish['recover_s']:.1f} s in all, peak memory {finish['recover_rss_mb']:.0f} MB "
                  f"({finish['start_rss_mb']:.0f} MB after imports); then the end ({finish['images']:,} images: "
                  f"summary.json, grids, report) {finish['finish_s']:.1f} s, peak memory "
                  f"{finish['peak_rss_mb']:.0f} MB, report {finish['report_mb']:.1f} MB")
        print(f"  at {rows_per_image:.2f} rows per image, appending keeps up with {images_per_s:,.0f} images/s "
              f"(~{images_per_s / per_core:,.0f} single-thread actors at {per_core:.1f} images/s each); the engine's "
              f"ceiling here, {pipeline['images_per_s']:,.0f} images/s, is "
              f"~{pipeline['images_per_s'] / per_core:,.0f} such actors")


if __name__ == "__main__":
    main()
