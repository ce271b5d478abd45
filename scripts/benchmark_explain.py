"""Explanation speed on the bundled model, as ratios measured side by side in one run.

    python scripts/benchmark_explain.py [--rounds 7] [--blackbox-preset balance] [--skip-blackbox]
                                        [--only-selected-maps]

Prints, with white-box and ov_explain's black-box runs in f32 and in the CPU's default precision
(bf16 on CPUs with AMX / AVX512-BF16, where it is the same as f32 elsewhere) side by side:
  * ReciproCAM explain latency / plain inference latency (one image, LATENCY hint; target <= 1.2);
  * maps for the top classes only, selected in the graph: ReciproCAM and CAM infer time over plain
    inference with every class's maps, the top 3 and the top 1 (target <= 1.03), beside the floor of the
    probability read-out (plain inference + the one product every class's weights take part in);
  * a batch of 8 images explained in one call vs 8 single calls (LATENCY and THROUGHPUT compiles), beside
    the device's limit: how much faster than one after another it runs 8 plain inferences at best;
  * RISE and AISE, ov_explain vs openvino-xai at the same preset, when openvino-xai is importable
    (the `xai` extra environment; target: ov_explain >= 1.5x faster) — otherwise ov_explain alone;
  * beside them the device floor: the same number of masked images pushed through OpenVINO's async
    queue with no other work. openvino-xai's time / the floor is the largest speed-up any
    implementation doing that many full inferences can reach on this machine.
Rounds interleave the contenders so machine noise hits them alike; medians are reported.
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

from ov_explain import Classifier, read_image, sample_images  # noqa: E402
from ov_explain.explain import Explainer  # noqa: E402
from ov_explain.explain.registry import METHODS  # noqa: E402
from ov_explain.explain.whitebox import build_xai_model  # noqa: E402


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def interleave(contenders: dict, rounds: int) -> dict[str, float]:
    for run in contenders.values():  # warm-up
        run()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            samples[name].append(timed(run))
    return {name: statistics.median(values) for name, values in samples.items()}


def xai_explainers(classifier: Classifier):
    """openvino-xai RISE/AISE callables on the same model and preprocessing, or None if not installed."""
    try:
        import openvino_xai as xai
        from openvino_xai.explainer import ExplainMode
        from openvino_xai.methods.black_box.base import Preset
    except Exception as exc:  # ImportError, or openvino.runtime missing on OpenVINO 2026
        print(f"openvino-xai not usable here ({type(exc).__name__}: {exc}); comparing ov_explain only")
        return None
    import openvino as ov

    def preprocess(image: np.ndarray) -> np.ndarray:
        return classifier.prepare(image).tensor[None]

    def postprocess(outputs) -> np.ndarray:
        return classifier.to_probabilities(np.asarray(outputs[0]))[0]

    model = ov.Core().read_model(str(classifier.files.model))
    made = {}
    for method in ("RISE", "AISE"):
        made[method] = xai.Explainer(model=model, task=xai.Task.CLASSIFICATION, preprocess_fn=preprocess,
                                     postprocess_fn=postprocess, explain_mode=ExplainMode.BLACKBOX,
                                     explain_method=getattr(xai.Method, method))
    return made, Preset, xai


def device_floor(classifier: Classifier, tensor: np.ndarray, images: int, batch: int):
    """A callable pushing ``images`` masked copies of ``tensor`` through a THROUGHPUT-compiled (f32)
    async queue in batches of ``batch``: inference and nothing else."""
    import openvino as ov

    compiled = classifier.core.compile_model(classifier.model, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT",
                                                                       "INFERENCE_PRECISION_HINT": "f32"})
    queue = ov.AsyncInferQueue(compiled, max(4, 2 * compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
    masks = np.random.default_rng(0).random((batch, 1) + tensor.shape[2:], dtype=np.float32)
    masked = (tensor * masks).astype(np.float32)

    def run() -> None:
        for _ in range(images // batch):
            queue.start_async({0: masked})
        queue.wait_all()

    return run


#: (method, read-out) pairs of the selected-maps section: the defaults and CAM's logit read-out.
SELECTED_MAPS_METHODS = (("reciprocam", "logit"), ("cam", "probability"), ("cam", "logit"))


def probability_floor(classifier: Classifier):
    """The classifier plus one output, Σ_j p_j W_j (the softmax-weighted mean of the head's weights): what
    Grad-CAM of a probability must compute beyond the prediction whatever the class, reading every class's
    weights once more. Its time over plain inference is the floor of CAM's probability read-out."""
    from ov_explain.core._compat import opset
    from ov_explain.explain.branches import copied_class_weights
    from ov_explain.explain.graph import find_target_layer, match_linear_head

    model = classifier.model.clone()
    head = match_linear_head(find_target_layer(model, None), model.outputs[0])
    logits = head.result_node.input_value(0) if head.softmax else head.result_node.output(0)
    probabilities = opset.softmax(opset.reshape(logits, np.array([0, -1], np.int64), special_zero=True), 1)
    model.add_outputs([opset.matmul(probabilities, copied_class_weights(head), False, False).output(0)])
    return model


def selected_maps(classifiers: dict[str, Classifier], tensor: np.ndarray, rounds: int) -> None:
    """Infer time of the XAI graphs over plain inference: every class's maps vs the top k selected in the graph."""
    from ov_explain.explain.runners import compile_like

    print("== maps only for the top classes, selected in the graph (one image, infer only) ==")
    contenders = {}
    for precision, classifier in classifiers.items():
        contenders[f"plain {precision}"] = lambda c=classifier.compiled: c(tensor)
        for method, readout in SELECTED_MAPS_METHODS:
            for maps in ("all", "top-3", "top-1"):
                xai = build_xai_model(classifier.model, classifier.output_port, method, maps=maps, readout=readout)
                compiled = compile_like(classifier, xai.model, "LATENCY").compiled
                contenders[f"{method} {readout} {maps} {precision}"] = lambda c=compiled: c(tensor)
        floor = compile_like(classifier, probability_floor(classifier), "LATENCY").compiled
        contenders[f"floor {precision}"] = lambda c=floor: c(tensor)
    times = interleave(contenders, rounds)
    for precision in classifiers:
        plain = times[f"plain {precision}"]
        print(f"  {precision}: plain inference {plain * 1000:.2f} ms; the probability read-out's floor (plain + "
              f"Σ_j p_j W_j, every class's head weights read once more) x{times[f'floor {precision}'] / plain:.3f}")
        for method, readout in SELECTED_MAPS_METHODS:
            ratios = ", ".join(f"{maps} x{times[f'{method} {readout} {maps} {precision}'] / plain:.3f}"
                               for maps in ("all", "top-3", "top-1"))
            print(f"    {method:10s} {readout:11s} infer / plain: {ratios}")


def batch_of_8(explainer: Explainer, batch: list, rounds: int) -> None:
    """One call of 8 images vs 8 single calls, on the LATENCY-compiled explainer and on a THROUGHPUT one
    (a batch per stream), beside the device's own limit: 8 plain inferences one after another vs the
    fastest way this device runs them (one batch of 8, or 8 through a THROUGHPUT-compiled async queue)."""
    import openvino as ov

    classifier = explainer.classifier
    streams = Classifier(device="CPU", cache_dir=None, hint="THROUGHPUT")
    with Explainer(streams, method=explainer.method) as throughput:
        tensors = np.stack([classifier.prepare(p).tensor for p in batch])
        compiled = streams.compiled
        queue = ov.AsyncInferQueue(compiled, compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))

        def ring() -> None:
            for i in range(len(tensors)):
                queue.start_async({0: tensors[i:i + 1]})
            queue.wait_all()

        times = interleave({
            "plain: 8 single inferences": lambda: [classifier.compiled(tensors[i:i + 1]) for i in range(8)],
            "plain: one batch of 8": lambda: classifier.compiled(tensors),
            "plain: 8 async, THROUGHPUT": ring,
            "explain: 8 single calls": lambda: [explainer.explain(p, top_k=1) for p in batch],
            "explain: one call of 8": lambda: explainer.explain(batch, top_k=1),
            "explain THROUGHPUT: 8 single calls": lambda: [throughput.explain(p, top_k=1) for p in batch],
            "explain THROUGHPUT: one call of 8": lambda: throughput.explain(batch, top_k=1),
        }, rounds * 3)
        print(f"== batch of 8 images (f32; THROUGHPUT: {throughput.parallel_requests} streams) ==")
        for name, seconds in times.items():
            print(f"  {name:36s} {seconds * 1000:8.1f} ms")
        single = times["plain: 8 single inferences"]
        best = min(times["plain: one batch of 8"], times["plain: 8 async, THROUGHPUT"])
        print(f"  the device's limit (8 plain inferences at best / one after another): x{single / best:.2f}")
        latency, streamed = (times[f"explain{hint}: 8 single calls"] / times[f"explain{hint}: one call of 8"]
                             for hint in ("", " THROUGHPUT"))
        best_call = min(times["explain: one call of 8"], times["explain THROUGHPUT: one call of 8"])
        print(f"  speed-up of one call of 8 over 8 single calls: LATENCY x{latency:.2f}, THROUGHPUT x{streamed:.2f}; "
              f"the faster call of 8 over LATENCY single calls x{times['explain: 8 single calls'] / best_call:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--blackbox-preset", default="balance", choices=["speed", "balance", "quality"])
    parser.add_argument("--blackbox-rounds", type=int, default=1, help="rounds for RISE (AISE gets --rounds)")
    parser.add_argument("--skip-blackbox", action="store_true")
    parser.add_argument("--only-selected-maps", action="store_true", help="only the selected-maps section")
    args = parser.parse_args()

    classifier = Classifier(device="CPU", cache_dir=None)  # f32
    native_classifier = Classifier(device="CPU", cache_dir=None, precision="device")
    native = native_classifier.precision
    print(f"precisions: f32 and the CPU's default, {native}")
    photos = [read_image(p) for p in sample_images()]
    coffee = read_image(next(p for p in sample_images() if p.name == "coffee.jpg"))
    explainer = Explainer(classifier, method="reciprocam")
    native_explainer = Explainer(native_classifier, method="reciprocam")
    tensor = classifier.prepare(coffee).tensor[None]

    selected_maps({"f32": classifier, native: native_classifier}, tensor, args.rounds * 20)
    if args.only_selected_maps:
        return 0
    print("== white-box ReciproCAM vs plain inference (one image, infer only / full call) ==")
    times = interleave({
        "plain infer f32": lambda: classifier.compiled(tensor),
        "reciprocam infer f32": lambda: explainer.compiled(tensor),
        "plain predict() f32": lambda: classifier.predict(coffee),
        "explain() f32": lambda: explainer.explain(coffee, top_k=1),
        f"plain infer {native}": lambda: native_classifier.compiled(tensor),
        f"reciprocam infer {native}": lambda: native_explainer.compiled(tensor),
        f"plain predict() {native}": lambda: native_classifier.predict(coffee),
        f"explain() {native}": lambda: native_explainer.explain(coffee, top_k=1),
    }, args.rounds * 10)
    for name, seconds in times.items():
        print(f"  {name:24s} {seconds * 1000:8.2f} ms")
    for precision in ("f32", native):
        print(f"  {precision:4s} ratio infer   (reciprocam / plain): "
              f"{times[f'reciprocam infer {precision}'] / times[f'plain infer {precision}']:.2f}")
        print(f"  {precision:4s} ratio end-end (explain / predict):  "
              f"{times[f'explain() {precision}'] / times[f'plain predict() {precision}']:.2f}")
    print(f"  {native} vs f32 speed: plain infer {times['plain infer f32'] / times[f'plain infer {native}']:.2f}x, "
          f"reciprocam infer {times['reciprocam infer f32'] / times[f'reciprocam infer {native}']:.2f}x, "
          f"explain() {times['explain() f32'] / times[f'explain() {native}']:.2f}x")

    batch_of_8(explainer, (photos * 2)[:8], args.rounds)

    if args.skip_blackbox:
        return 0
    preset = args.blackbox_preset
    print(f"== black-box, preset {preset}, target espresso (967), coffee.jpg ==")
    contenders = {}
    for method in ("rise", "aise"):
        pinned = Explainer(classifier, method=method, preset=preset)
        contenders[f"ov_explain {method}"] = lambda pinned=pinned: pinned.explain(coffee, targets=[967])
        in_native = Explainer(native_classifier, method=method, preset=preset)
        contenders[f"ov_explain {native} {method}"] = lambda e=in_native: e.explain(coffee, targets=[967])
    aise_pairs = Explainer(classifier, method="aise", preset=preset).explain(coffee, targets=[967]).inferences - 1
    # RISE: one image per mask, in chunks of 8; AISE: a preserve/delete pair per probe.
    rise, aise = METHODS["rise"].presets[preset], METHODS["aise"].presets[preset]
    contenders["device floor rise"] = device_floor(classifier, tensor, rise["num_masks"], 8)
    aise_images = 2 * aise["iterations"] * len(aise["kernel_widths"])
    contenders["device floor aise"] = device_floor(classifier, tensor, aise_images, 2)
    print(f"  images inferred: rise {rise['num_masks']}, aise {aise_images} "
          f"(ov_explain aise ran {aise_pairs} pairs)")
    found = xai_explainers(classifier)
    if found is not None:
        made, Preset, xai = found
        preset_value = getattr(Preset, preset.upper())
        # openvino-xai compiles with no properties: the CPU's default precision.
        print(f"  openvino-xai computes in {native} (the CPU's default)")
        contenders["openvino-xai rise"] = lambda: made["RISE"](coffee, targets=[967], preset=preset_value)
        contenders["openvino-xai aise"] = lambda: made["AISE"](coffee, targets=[967], preset=preset_value)
    # RISE runs take ~30 s each, AISE ~2 s: AISE gets more rounds so its median means something.
    times = {}
    for method, rounds in (("rise", args.blackbox_rounds), ("aise", max(args.blackbox_rounds, args.rounds))):
        times.update(interleave({name: run for name, run in contenders.items() if name.endswith(method)}, rounds))
    for name, seconds in times.items():
        print(f"  {name:22s} {seconds:8.2f} s")
    for method in ("rise", "aise"):
        floor = times[f"device floor {method}"]
        print(f"  {method}: ov_explain f32 / device floor (f32) = {times[f'ov_explain {method}'] / floor:.2f}; "
              f"{native} vs f32 speed {times[f'ov_explain {method}'] / times[f'ov_explain {native} {method}']:.2f}x")
        if found is not None:  # both in the CPU's default precision
            print(f"  {method}: ov_explain ({native}) is "
                  f"{times[f'openvino-xai {method}'] / times[f'ov_explain {native} {method}']:.2f}x faster than "
                  f"openvino-xai ({native}); the most any f32 implementation could be here: "
                  f"{times[f'openvino-xai {method}'] / floor:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
