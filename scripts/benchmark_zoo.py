"""White-box coverage over the architectures people deploy: for each timm architecture of
``scripts/zoo/zoo_models.py`` (random seeded weights, reduced depth where the full model is slow on
2 cores), convert it with ``openvino.convert_model`` (FP32, dynamic batch), inspect it, explain two
bundled photos white-box with the method ``auto`` picks, and check each map against its definition
computed in torch on the same weights and input. Prints one markdown table:

    architecture | family | method | works / reason | r vs torch | explain / plain

``r`` is the Pearson correlation over every class's map of both photos (≥ 0.99 is "equal"); the time
ratio is one white-box inference over one plain inference of the same batch, medians of ``--repeats``
runs measured side by side, f32. Needs ``pip install torch==2.13.0`` and ``pip install --no-deps timm``
(with huggingface_hub, safetensors, pyyaml); torch is a benchmark tool here, never a runtime need.

    python scripts/benchmark_zoo.py [--only NAME ...] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent / "zoo"))

import zoo_models  # noqa: E402

PHOTOS = ("chelsea.jpg", "coffee.jpg")
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def _median_ms(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))


def run_one(arch: zoo_models.Arch, folder: Path, repeats: int) -> dict:
    import openvino as ov

    from ov_explain import Classifier, PreprocessSpec, resources
    from ov_explain.explain import WhiteboxUnsupportedError, build_xai_model
    from ov_explain.tools.inspect_model import whitebox_report

    row = {"architecture": arch.label, "family": arch.family}
    started = time.perf_counter()
    model, size = zoo_models.build(arch)
    ir = zoo_models.convert(model, size)
    path = folder / f"{arch.label}.xml"
    ov.save_model(ir, str(path), compress_to_fp16=False)
    row["convert_s"] = round(time.perf_counter() - started, 1)

    spec = PreprocessSpec(size=size, resize="stretch", mean=IMAGENET_MEAN, std=IMAGENET_STD)
    classifier = Classifier(path, device="CPU", preprocess=spec, cache_dir=None, precision="f32")
    report = whitebox_report(classifier.model, classifier.output_port)
    row["inspect"] = report.method if report.works else f"black-box: {report.reason}"
    batch = np.stack([classifier.prepare(resources.sample_images_dir() / p).tensor for p in PHOTOS])
    try:
        xai = build_xai_model(classifier.model, classifier.output_port, None, output_kind=classifier.output_kind)
    except WhiteboxUnsupportedError as exc:
        row.update(method="-", works=False, reason=str(exc))
        return row
    row.update(method=xai.method, readout=xai.readout, target=xai.target_layer, grid="x".join(map(str, xai.map_size)))
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32"}
    explain_compiled = core.compile_model(xai.model, "CPU", config)
    plain_compiled = core.compile_model(classifier.model, "CPU", config)
    outputs = explain_compiled(batch)
    maps = np.asarray(outputs[explain_compiled.output("saliency_map")])
    np.testing.assert_allclose(np.asarray(outputs[explain_compiled.outputs[0]]),
                               np.asarray(plain_compiled(batch)[plain_compiled.outputs[0]]), rtol=1e-4, atol=1e-4)
    row["constant"] = bool(np.all(np.ptp(maps.reshape(len(batch), maps.shape[1], -1), axis=-1) == 0))
    try:
        if xai.method == "vitreciprocam":
            if arch.block is None:
                raise ValueError("no torch definition for this family")
            expected = zoo_models.vit_reciprocam_definition(model, arch, batch, *xai.map_size)
        else:
            expected = zoo_models.cnn_definition(model, xai.method, xai.readout or "logit", batch, arch)
        if expected.shape != maps.shape:
            raise ValueError(f"definition {expected.shape} vs maps {maps.shape}")
        row["r"] = float(np.corrcoef(expected.ravel(), maps.ravel())[0, 1])
    except Exception as exc:  # reported in the table: the definition could not be computed
        row["r"] = None
        row["definition"] = f"{type(exc).__name__}: {exc}"[:160]
    for compiled in (explain_compiled, plain_compiled):
        compiled(batch)  # warm-up
    explain_ms = _median_ms(lambda: explain_compiled(batch), repeats)
    plain_ms = _median_ms(lambda: plain_compiled(batch), repeats)
    row.update(works=not row["constant"], plain_ms=round(plain_ms, 2), explain_ms=round(explain_ms, 2),
               ratio=round(explain_ms / plain_ms, 1))
    return row


def overhead(repeats: int, rounds: int = 3) -> list[str]:
    """White-box over plain inference on the full-size ViT-Tiny (12 blocks, 224 px), batch 1, f32 and the
    device's default precision, in interleaved rounds."""
    import openvino as ov

    from ov_explain.explain import build_xai_model

    model, size = zoo_models.build(zoo_models.Arch("vit_tiny_patch16_224", "ViT"))
    ir = zoo_models.convert(model, size)
    xai = build_xai_model(ir, ir.outputs[0], None)
    core = ov.Core()
    image = np.random.default_rng(0).normal(0, 1, (1, 3, size, size)).astype(np.float32)
    lines = []
    for label, config in (("f32", {"INFERENCE_PRECISION_HINT": "f32"}), ("device precision", {})):
        plain, explain = (core.compile_model(m, "CPU", config) for m in (ir, xai.model))
        executed = {"f32": "f32", "bf16": "bf16", "f16": "f16"}.get(
            plain.get_property("INFERENCE_PRECISION_HINT").get_type_name(), "?")
        plain(image), explain(image)
        ratios, times = [], []
        for _ in range(rounds):
            plain_ms = _median_ms(lambda plain=plain: plain(image), repeats)
            explain_ms = _median_ms(lambda explain=explain: explain(image), repeats)
            ratios.append(explain_ms / plain_ms)
            times.append((plain_ms, explain_ms))
        lines.append(f"ViT-Tiny (12 blocks, 14x14 grid, batch 1), {label} ({executed}): "
                     + ", ".join(f"{e:.1f} / {p:.1f} ms = ×{r:.1f}" for (p, e), r in zip(times, ratios)))
    return lines


def _table(rows: list[dict]) -> str:
    lines = ["| architecture | family | method | works | r vs torch | explain / plain |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        works = "yes" if row.get("works") else ("constant map" if row.get("constant") else
                                                f"no: {row.get('reason', '')[:90]}")
        r = f"{row['r']:.5f}" if row.get("r") is not None else (row.get("definition", "-")[:60] or "-")
        ratio = f"×{row['ratio']}" if "ratio" in row else "-"
        method = row.get("method", "-") + (f" ({row['readout']})" if row.get("readout") else "")
        lines.append(f"| {row['architecture']} | {row['family']} | {method} | {works} | {r} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="architecture names (timm names) to run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--overhead", action="store_true", help="only the ViT-Tiny overhead, f32 and device precision")
    args = parser.parse_args()
    if args.overhead:
        print("\n".join(overhead(args.repeats)))
        return
    archs = [a for a in zoo_models.ZOO if not args.only or a.name in args.only or a.label in args.only]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for arch in archs:
            try:
                row = run_one(arch, Path(folder), args.repeats)
            except Exception as exc:  # one architecture's failure is a row, not the end of the run
                row = {"architecture": arch.label, "family": arch.family, "works": False,
                       "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print(_table(rows))
    works = sum(bool(r.get("works")) for r in rows)
    equal = sum(bool(r.get("works")) and (r.get("r") or 0) >= 0.99 for r in rows)
    print(f"\nwhite-box works on {works} of {len(rows)}; maps equal to their torch definition (r >= 0.99) on {equal}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
