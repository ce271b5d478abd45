"""Make the documentation site's pictures from the bundled model and photos (docs/figures/*.png).

    pip install -e ".[docs]"        # matplotlib and Pillow; the drift figure needs the quantize extra,
    python scripts/make_docs_figures.py [--only NAME ...]   # the detection one nudenet, the report one chromium

Pictures (each small: reduced to a palette of colours):
  methods.png       one photo explained by every classification method, side by side
  grid.png          an audit's grid of one case (the bundled photos)
  report.png        the audit's report.html as Chromium shows it
  drift.png         a drift audit's picture: FP32 map | INT8 map | their difference
  detection.png     a map per detected face (nudenet's YOLOv8n export)
  faithfulness.png  ROAD and insertion per method, from the tables in docs/explaining.md
  speed.png         black-box seconds, ov_explain vs openvino-xai, from the table in docs/explaining.md
A figure whose tool is missing is skipped with one line saying what to install; the exit status is 1 then.
The plots read the tables of the pages, so the page and its picture show the same figures.
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ov_explain import Classifier, read_image, render, resources  # noqa: E402

DOCS = ROOT / "docs"
FIGURES = DOCS / "figures"
PHOTOS = resources.sample_images_dir()
COLOURS = 192  # palette size of the saved PNGs: overlays look the same, files are a fraction of the size


class Missing(Exception):
    """A tool a figure needs is not installed."""


def save_png(picture: np.ndarray | object, name: str, *, width: int | None = None) -> Path:
    """An RGB array or a matplotlib figure, reduced to ``COLOURS`` colours (and ``width``), as docs/figures/name."""
    from PIL import Image

    if hasattr(picture, "savefig"):
        buffer = io.BytesIO()
        picture.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        image = Image.open(buffer).convert("RGB")
    else:
        image = Image.fromarray(np.asarray(picture)).convert("RGB")
    if width and image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.Resampling.LANCZOS)
    FIGURES.mkdir(parents=True, exist_ok=True)
    path = FIGURES / name
    image.quantize(COLOURS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    return path


def methods_figure() -> Path:
    """coffee.jpg explained by each classification method (black-box at the speed preset), in a row."""
    import matplotlib.pyplot as plt

    from ov_explain.explain import Explainer

    photo = PHOTOS / "coffee.jpg"
    pixels = read_image(photo)
    clf = Classifier(device="CPU")
    panels = [("photo", pixels, "")]
    for method, extra in (("cam", {}), ("reciprocam", {}), ("activationmap", {}),
                          ("rise", {"preset": "speed"}), ("aise", {"preset": "speed"})):
        result = Explainer(clf, method=method, seed=0, **extra).explain(photo)
        top = result.maps[0]
        panels.append((method, render.overlay(pixels, top.on_image),
                       f"{top.name or 'class-agnostic'} · {result.images_inferred} image(s) inferred"))
    clf.close()
    figure, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 2.6))
    for axis, (title, picture, caption) in zip(axes, panels):
        axis.imshow(picture)
        axis.set_title(title, fontsize=11)
        axis.set_xlabel(caption, fontsize=8)
        axis.set_xticks([])
        axis.set_yticks([])
    figure.tight_layout()
    return save_png(figure, "methods.png", width=1200)


def bundled_audit(out: Path) -> Path:
    """The README's main job (the bundled photos audited), in ``out``."""
    from ov_explain import audit

    audit(PHOTOS / "ground_truth.csv", out, device="CPU")
    return out


def grid_figure(audit_dir: Path) -> Path:
    grid = read_image(audit_dir / "grids" / "True_positive_high_confidence.jpg")
    return save_png(grid, "grid.png", width=900)


def report_figure(audit_dir: Path) -> Path:
    """report.html in Debian's headless Chromium, the first screen of it."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise Missing("report.png needs chromium (apt install chromium)")
    shot = audit_dir / "report-shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={shot}", "--window-size=1280,900", (audit_dir / "report.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    return save_png(read_image(shot), "report.png", width=1000)


def drift_figure(work: Path) -> Path:
    """FP32 against an INT8 IR quantized on the bundled photos: the most drifted picture of the audit."""
    try:
        import nncf  # noqa: F401
    except ImportError as missing:
        raise Missing('drift.png needs the quantize extra (pip install -e ".[quantize]")') from missing
    from ov_explain import drift, quantize

    int8 = work / "int8" / "lite0_int8.xml"
    quantize(resources.default_model_path(), PHOTOS / "ground_truth.csv", int8)
    out = work / "drift"
    drift(PHOTOS / "ground_truth.csv", out, reference_device="CPU", candidate=int8)
    pictures = sorted((out / "Prediction_changed").glob("*.jpg")) or sorted((out / "Attention_moved").glob("*.jpg"))
    if not pictures:
        pictures = sorted(out.glob("*/*.jpg"))
    return save_png(read_image(pictures[0]), "drift.png", width=900)


def detection_figure(work: Path) -> Path:
    """Three photos through nudenet's YOLOv8n export: each image's best box with its map (white-box)."""
    try:
        import nudenet
    except ImportError as missing:
        raise Missing("detection.png needs nudenet (pip install nudenet==3.4.2; the tests extra has it)") from missing
    from ov_explain.core.detector import Detector
    from ov_explain.explain.detection import DetectionExplainer

    detector = Detector(Path(nudenet.__file__).parent / "320n.onnx", device="CPU")
    explainer = DetectionExplainer(detector)
    panels = []
    for name in ("astronaut.jpg", "grace_hopper.jpg", "camera.jpg"):
        pixels = read_image(PHOTOS / name)
        result = explainer.explain(PHOTOS / name)
        best = max(range(len(result.maps)), key=lambda i: result.detections.detections[result.explained[i]].score)
        found = result.detections.detections[result.explained[best]]
        picture = render.draw_box(render.overlay(pixels, result.maps[best].on_image), found.box,
                                  f"{found.label} {found.score:.2f}")
        panels.append(_fit_height(picture, 300))
    detector.close()
    return save_png(np.concatenate(panels, axis=1), "detection.png", width=1000)


def _fit_height(picture: np.ndarray, height: int) -> np.ndarray:
    import cv2

    width = round(picture.shape[1] * height / picture.shape[0])
    return cv2.resize(picture, (width, height), interpolation=cv2.INTER_AREA)


def page_table(page: str, first_cell: str) -> list[list[str]]:
    """The rows (header first) of the first table from the line of ``page`` that starts with ``first_cell``."""
    text = (DOCS / page).read_text(encoding="utf-8")
    start = text.index(first_cell)
    rows = []
    for line in text[start:].splitlines():
        if line.startswith("|"):
            cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if not set("".join(cells)) <= set("-:"):
                rows.append(cells)
        elif rows:
            break
    return rows


def faithfulness_figure() -> Path:
    """ROAD and insertion AUC per method on both models, from the faithfulness tables of explaining.md."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, model in zip(axes, ("efficientnet_lite0", "efficientnet_lite1")):
        header, *rows = page_table("explaining.md", f"**{model}**")
        rows = [row for row in rows if not row[0].startswith("(random")]
        names = [row[0].replace("pytorch-grad-cam ", "pgc ").replace(" (readout=", "\n(") for row in rows]
        road = [float(row[header.index("ROAD ↑")]) for row in rows]
        insertion = [float(row[header.index("insertion AUC ↑")]) for row in rows]
        at = np.arange(len(rows))
        axis.barh(at - 0.2, road, height=0.4, label="ROAD ↑", color="#3b5bdb")
        axis.barh(at + 0.2, insertion, height=0.4, label="insertion AUC ↑", color="#f59f00")
        axis.set_yticks(at, names, fontsize=7)
        axis.invert_yaxis()
        axis.set_title(model, fontsize=10)
    figure.suptitle("How faithful each method is (7 photos, f32; higher is better)", fontsize=11)
    figure.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=8)
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    return save_png(figure, "faithfulness.png", width=1000)


def speed_figure() -> Path:
    """Seconds per black-box explanation, ov_explain beside openvino-xai, from explaining.md's RISE table."""
    import matplotlib.pyplot as plt

    header, *rows = page_table("explaining.md", "| | seconds (median)")
    names = [row[0] for row in rows]
    seconds = [float(row[1]) for row in rows]
    colours = ["#3b5bdb" if name.startswith("ov_explain") else "#adb5bd" for name in names]
    figure, axis = plt.subplots(figsize=(7, 2.8))
    axis.barh(np.arange(len(rows)), seconds, color=colours)
    axis.set_yticks(np.arange(len(rows)), names, fontsize=8)
    axis.invert_yaxis()
    for index, value in enumerate(seconds):
        axis.text(value, index, f" {value:.2f} s", va="center", fontsize=8)
    axis.set_xlabel("seconds per explanation (median, speed preset, 2-core CPU)", fontsize=8)
    axis.set_xlim(0, max(seconds) * 1.2)
    figure.tight_layout()
    return save_png(figure, "speed.png", width=800)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = ["methods", "grid", "report", "drift", "detection", "faithfulness", "speed"]
    parser.add_argument("--only", nargs="+", choices=names, default=names, help="make only these")
    args = parser.parse_args()
    missing = 0
    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp)
        audit_dir = bundled_audit(work / "audit") if {"grid", "report"} & set(args.only) else None
        makers = {"methods": methods_figure, "grid": lambda: grid_figure(audit_dir),
                  "report": lambda: report_figure(audit_dir), "drift": lambda: drift_figure(work),
                  "detection": lambda: detection_figure(work), "faithfulness": faithfulness_figure,
                  "speed": speed_figure}
        for name in args.only:
            try:
                path = makers[name]()
            except Missing as reason:
                print(f"skipped {name}: {reason}", file=sys.stderr)
                missing += 1
                continue
            print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size / 1024:.0f} kB)")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
