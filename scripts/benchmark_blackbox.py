"""Black-box speed at equal fidelity: ov_explain's RISE and AISE against openvino-xai, side by side in one run.

    python scripts/benchmark_blackbox.py [--photos coffee,chelsea,astronaut,motorcycle] [--rounds 3]
                                         [--reference-masks 10000]

For each photo (its top-1 class, CPU, f32 pinned; the openvino-xai backend compiles the library's model again in
the classifier's precision, so both sides run f32):
  * the converged reference: classic RISE (no baseline, every mask) with ``--reference-masks`` masks from
    another seed of the same family, at the preset's cells;
  * ov_explain RISE at the preset (baseline and early stop), ov_explain classic RISE at the preset's masks
    (the sum openvino-xai computes), and openvino-xai RISE at the preset when it is importable (run this
    script in the `xai` environment for that column): seconds (median of ``--rounds``), masks used, and the
    Pearson r of each map with the reference;
  * AISE the same way: time, images, and r against ov_explain's AISE at the quality preset (another seed);
then the medians and worst r over the photos, and the time ratios.
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

from ov_explain import Classifier  # noqa: E402
from ov_explain.core.resources import sample_images_dir  # noqa: E402
from ov_explain.explain import Explainer  # noqa: E402
from ov_explain.explain.registry import METHODS  # noqa: E402


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel())[0, 1])


def timed(run, rounds: int):
    """(median seconds, the last result)."""
    seconds, result = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def xai_explainers(classifier: Classifier):
    """openvino-xai RISE / AISE on the same model and preprocessing, or None where it is not installed."""
    from ov_explain.explain import create_explainer

    try:
        return {m: create_explainer(classifier, backend="openvino-xai", method=m, preset=PRESET, seed=0)
                for m in ("rise", "aise")}
    except Exception as exc:  # the backend says why (not installed, too old)
        print(f"openvino-xai not usable here ({exc}); ov_explain only")
        return None


PRESET = "speed"


def main() -> int:
    global PRESET
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", default="coffee,chelsea,astronaut,motorcycle")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reference-masks", type=int, default=10000)
    parser.add_argument("--preset", default="speed", choices=["speed", "balance", "quality"])
    args = parser.parse_args()
    PRESET = args.preset
    classifier = Classifier(device="CPU", cache_dir=None, precision="f32")
    cells = METHODS["rise"].presets[PRESET]["num_cells"]
    masks = METHODS["rise"].presets[PRESET]["num_masks"]
    references = {"rise": Explainer(classifier, method="rise", seed=1000, num_masks=args.reference_masks,
                                    num_cells=cells, baseline=False, converged=1),
                  "aise": Explainer(classifier, method="aise", preset="quality", seed=1000)}
    contenders = {"ov_explain rise": Explainer(classifier, method="rise", preset=PRESET, seed=0),
                  "ov_explain rise classic": Explainer(classifier, method="rise", preset=PRESET, seed=0,
                                                       baseline=False, converged=1),
                  "ov_explain aise": Explainer(classifier, method="aise", preset=PRESET, seed=0)}
    xai = xai_explainers(classifier)
    if xai is not None:
        contenders["openvino-xai rise"], contenders["openvino-xai aise"] = xai["rise"], xai["aise"]
    print(f"preset {PRESET}: RISE up to {masks} masks of {cells}x{cells} cells; reference {args.reference_masks} "
          f"classic masks (seed 1000); {args.rounds} rounds, medians")
    found: dict[str, list[tuple[float, int, float]]] = {name: [] for name in contenders}
    for photo in args.photos.split(","):
        path = sample_images_dir() / f"{photo}.jpg"
        target = classifier.predict(path).top[0].index
        truths = {m: e.explain(path, targets=[target]).maps[0].raw for m, e in references.items()}
        line = [f"{photo} ({classifier.class_name(target)})"]
        for name, explainer in contenders.items():
            seconds, result = timed(lambda e=explainer, p=path, t=target: e.explain(p, targets=[t]), args.rounds)
            r = pearson(result.maps[0].raw, truths[name.split()[1]])
            images = result.images_inferred if name.startswith("ov_explain") else None  # openvino-xai does not say
            found[name].append((seconds, images or 0, r))
            line.append(f"{name} {seconds:.2f} s, {images or '?'} images, r {r:.3f}")
        print("\n  ".join(line))
    print("\nover the photos (median seconds, median images, median r, worst r):")
    medians = {}
    for name, values in found.items():
        seconds, images, rs = (statistics.median(v[0] for v in values), statistics.median(v[1] for v in values),
                               [v[2] for v in values])
        medians[name] = seconds
        print(f"  {name:26s} {seconds:7.2f} s  {images:7.0f} images  r median {statistics.median(rs):.3f}  "
              f"worst {min(rs):.3f}")
    classic = medians["ov_explain rise classic"] / medians["ov_explain rise"]
    print(f"  ov_explain rise is {classic:.2f}x faster than classic RISE at the preset's masks")
    for method in ("rise", "aise"):
        if f"openvino-xai {method}" in medians:
            ratio = medians[f"openvino-xai {method}"] / medians[f"ov_explain {method}"]
            print(f"  {method}: ov_explain is {ratio:.2f}x faster than openvino-xai")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
