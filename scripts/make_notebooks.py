"""Writes notebooks/*.ipynb (without outputs) from the cells below: edit here, run, commit both.

    python scripts/make_notebooks.py
"""
from pathlib import Path

import nbformat as nbf
from nbformat.v4 import new_code_cell as code
from nbformat.v4 import new_markdown_cell as md
from nbformat.v4 import new_notebook

SETUP = '''import os
from pathlib import Path

# Where this notebook writes; CI points it at a temp folder.
OUT = Path(os.environ.get("OV_EXPLAIN_NOTEBOOK_OUT", "notebook-output"))
OUT.mkdir(parents=True, exist_ok=True)'''

explain = new_notebook(cells=[
    md("# Explain one image end to end\n\nDevices, the bundled EfficientNet-Lite0, a prediction, a white-box and a black-box explanation, a comparison, and files on disk. Runs offline; `pip install -e \".[notebook]\"` for the widget at the end."),
    code(SETUP),
    md("## Devices\n\nWhat OpenVINO sees, and what `AUTO` (NPU → GPU → CPU) would pick here."),
    code('''import openvino as ov
from ov_explain import auto_choice, discover

core = ov.Core()
for device in discover(core):
    print(f"{device.name:6s} {device.full_name}  {', '.join(device.capabilities)}")
print("AUTO picks:", auto_choice(core))'''),
    md("## Load the model and predict"),
    code('''from ov_explain import Classifier, sample_images

clf = Classifier(device="AUTO")
photo = next(p for p in sample_images() if p.name == "coffee.jpg")
prediction = clf.predict(photo)
print("ran on", prediction.device)
for score in prediction.top:
    print(f"{score.name:20s} {score.probability:.3f}")'''),
    md("## White-box: CAM\n\nOne inference gives the prediction and the maps. For this head (global average pooling + linear) the default is CAM with the probability read-out: Grad-CAM of the probability, without a backward pass, the most faithful one-inference map in the faithfulness table (docs/explaining.md); `method=\"reciprocam\"` is the other white-box CNN method. We ask for the top classes."),
    code('''from ov_explain.explain import Explainer

whitebox = Explainer(clf, mode="whitebox")
wb = whitebox.explain(photo, targets="predicted", top_k=2, threshold=0.01)
print(wb.method, wb.mode, wb.target_layer, wb.device, f"{sum(wb.timings_ms.values()):.0f} ms")
for m in wb.maps:
    print(f"  {m.name}: p={m.probability:.3f}, raw {m.raw.shape}, on image {m.on_image.shape}")'''),
    md("## Black-box: AISE\n\nAny model, only its outputs: slower (tens of inferences), the same result type."),
    code('''blackbox = Explainer(clf, mode="blackbox", method="aise", preset="speed")
bb = blackbox.explain(photo, targets=["espresso"])
print(bb.method, bb.mode, bb.inferences, "inferences", f"{sum(bb.timings_ms.values()):.0f} ms")'''),
    md("## Compare\n\nBoth methods should put the espresso on the cup; the pointing game checks that the hottest pixel is on it."),
    code('''import matplotlib.pyplot as plt
from ov_explain import read_image, render
from ov_explain.evaluate.metrics import pointing_game

pixels = read_image(photo)
cup = (100, 20, 480, 330)  # x0, y0, x1, y1 of the cup in coffee.jpg
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
axes[0].imshow(pixels); axes[0].set_title("coffee.jpg")
for ax, result in zip(axes[1:], (wb, bb)):
    saliency = result.map_for("espresso")
    ax.imshow(render.overlay(pixels, saliency.on_image))
    ax.set_title(f"{result.method}: espresso {saliency.probability:.2f}")
    print(result.method, "hottest pixel on the cup:", pointing_game(saliency.on_image, cup))
for ax in axes:
    ax.axis("off")
plt.tight_layout()'''),
    md("## Save\n\nOverlays as JPEG, the raw map as `.npy`, the RGBA colourisation as PNG."),
    code('''import numpy as np

saliency = wb.map_for("espresso")
(OUT / "coffee_cam_espresso.jpg").write_bytes(render.encode_jpeg(render.overlay(pixels, saliency.on_image)))
(OUT / "coffee_cam_espresso.rgba.png").write_bytes(render.encode_png(render.colorize_rgba(saliency.on_image)))
np.save(OUT / "coffee_cam_espresso.npy", saliency.raw)
print(sorted(p.name for p in OUT.glob("coffee_*")))'''),
    md("## Explore interactively\n\nThe same engine behind widgets: device, image, method, class, opacity, colormap, side-by-side comparison. (Displays in Jupyter; in a headless run it just builds.)"),
    code('''from ov_explain.widgets import explore

explore(device="CPU")'''),
])

audit = new_notebook(cells=[
    md("# Saliency maps in a dataset audit\n\nThe OpenVINO XAI interpretation flow (true/false positives, high/low confidence, two competing predictions), driven by `ov_explain.audit` on the bundled model and photos instead of a hand-picked list."),
    code(SETUP),
    md("## Run the audit\n\nThe same as `ov-explain audit examples/images/ground_truth.csv`: predict, explain with the default white-box method (CAM for this model), sort into case folders, write manifest, summary, grids and `report.html`."),
    code('''from ov_explain import sample_images
from ov_explain import audit, sample_images_dir

summary = audit(sample_images_dir() / "ground_truth.csv", OUT / "audit", device="AUTO", restart=True)
print(f"{summary.images} images with {summary.method} on {summary.device}; top-1 accuracy {summary.top1_accuracy:.2f}")
for case, count in summary.cases.items():
    print(f"  {case:34s} {count}")'''),
    md("## Case folders and names\n\nEach file name carries ground truth, the explained class and both confidences: `{stem}_gt_{truth}_{p}_pr_{class}_{p}.jpg`. `parse_name` reads them back."),
    code('''from ov_explain import parse_name

for folder in sorted(p for p in (OUT / "audit").iterdir() if p.is_dir() and p.name != "grids"):
    print(folder.name)
    for file in sorted(folder.glob("*.jpg")):
        parts = parse_name(file.name)
        print(f"   {file.name}\\n      -> stem {parts.stem}, gt {parts.ground_truth} {parts.ground_truth_confidence}, "
              f"map of {parts.target} {parts.target_confidence}")'''),
    md("## The manifest\n\nOne row per image and explained class; `pandas.read_csv` loads it as is."),
    code('''import csv

with open(OUT / "audit" / "manifest.csv", newline="") as handle:
    rows = list(csv.DictReader(handle))
for row in rows:
    print(f"{row['stem']:13s} {row['case']:32s} map of {row['target_class']:16s} ({row['target_role']})")'''),
    md("## Grids per case\n\nLike the seed's `show_use_case_image`: overlays with name, ground truth, prediction and confidence."),
    code('''import matplotlib.pyplot as plt
import matplotlib.image as mpimg

for case in summary.cases:
    grid = mpimg.imread(OUT / "audit" / "grids" / f"{case}.jpg")
    plt.figure(figsize=(12, 12 * grid.shape[0] / grid.shape[1]))
    plt.imshow(grid); plt.axis("off"); plt.title(case)
    plt.show()'''),
    md('''## What the bundled model does on these photos

- **True positive, high confidence** — `coffee` (espresso 0.94) and `camera` (tripod 0.98): the maps sit on the cup and on the tripod's legs; right for the right reasons.
- **True positive, low confidence** — `motorcycle` (moped 0.49, motor scooter 0.20) and `rocket` (missile 0.26, projectile 0.13, space shuttle 0.09): correct, but the probability is shared with neighbouring classes; the maps still cover the vehicle, so the doubt is between similar classes, not about where to look.
- **Two predictions** — `grace_hopper`: academic gown 0.21 and military uniform 0.21 (the truth) tie, with mortarboard 0.21 right behind. The gown map concentrates on the cap (a mortarboard, to this model) and the collar; the uniform map spreads over the cap and the jacket's shoulders. A portrait can honestly fit several ImageNet classes.
- **False positive, low confidence** — `chelsea` (labelled tabby) is called tiger cat 0.40, Egyptian cat 0.33, tabby 0.18: the tiger-cat and tabby maps light the same face and stripes, the classic confusion between near-identical ImageNet cat classes. `astronaut` (labelled space shuttle) is called football helmet 0.17: the helmet map sits on the helmet in the corner and the space-shuttle map on the shuttle at the top right — the model sees both objects, and the label describes the background one.
- No **false positive with high confidence** on these seven photos: the model is never confidently wrong here.'''),
    md("## The HTML report\n\nEvery audit also writes a self-contained `report.html` (filters by case and class, sorting by confidence)."),
    code('''report = OUT / "audit" / "report.html"
print(report, f"{report.stat().st_size / 1024:.0f} KiB")'''),
])

deploy = new_notebook(cells=[
    md("# Deploy: prediction and saliency from one inference\n\nExport an IR with the ReciproCAM head inserted, load it back like any model, and get the prediction and the map from one inference — what an edge device runs."),
    code(SETUP),
    md("## Export the XAI IR\n\nThe same as `ov-explain export-xai --out xai/model.xml`. The preprocessing spec and labels travel beside it."),
    code('''import openvino as ov
from ov_explain import Classifier
from ov_explain.explain import build_xai_model

clf = Classifier(device="CPU")
xai = build_xai_model(clf.model, clf.output_port, "reciprocam")
target = OUT / "xai" / "efficientnet_lite0_xai.xml"
target.parent.mkdir(parents=True, exist_ok=True)
ov.save_model(xai.model, str(target), compress_to_fp16=False)
clf.spec.to_json(target.with_name("efficientnet_lite0_xai.preprocess.json"))
target.with_name("efficientnet_lite0_xai.labels.txt").write_text("\\n".join(clf.labels) + "\\n")
print("outputs:", [sorted(o.get_names()) for o in xai.model.outputs])
print("target layer:", xai.target_layer, "map size:", xai.map_size, "shortcut:", xai.shortcut)'''),
    md("## Load it back and explain with one inference\n\nov_explain recognises the inserted output and uses it directly: `inferences == 1`."),
    code('''from ov_explain import sample_images
from ov_explain.explain import Explainer

edge = Classifier(target, device="AUTO")
explainer = Explainer(edge, mode="whitebox")
photo = next(p for p in sample_images() if p.name == "camera.jpg")
result = explainer.explain(photo)
print(result.prediction.label, f"{result.prediction.top[0].probability:.3f}", "on", result.device,
      "| inferences:", result.inferences, "| maps:", [m.name for m in result.maps])'''),
    md("## Plain OpenVINO on the device\n\nNo ov_explain at all on the edge: the compiled model returns both outputs."),
    code('''import numpy as np
from ov_explain import read_image

compiled = ov.Core().compile_model(str(target), "CPU")
tensor, geometry = edge.spec(read_image(photo))
outputs = compiled(tensor[None])
logits = outputs[compiled.outputs[0]] if "saliency_map" not in compiled.outputs[0].get_names() else outputs[compiled.outputs[1]]
maps = outputs[compiled.output("saliency_map")]
top = int(np.argmax(logits))
print("class", top, edge.labels[top], "| saliency_map", maps.shape)'''),
    code('''import matplotlib.pyplot as plt
from ov_explain import render
from ov_explain.explain.base import to_original

pixels = read_image(photo)
on_image = to_original(maps[0, top], edge.input_size, geometry)
plt.figure(figsize=(5, 5)); plt.imshow(render.overlay(pixels, on_image)); plt.axis("off")
plt.title(f"{edge.labels[top]} — one inference"); plt.show()'''),
    md('''## Choosing the device on an edge machine

- `device="AUTO"` tries **NPU, then GPU, then CPU**; `AUTO:GPU,CPU` sets your own order; a named device (`GPU.0`, `NPU`) gives that one or an error.
- NPUs want static shapes: if compiling the dynamic-batch model fails there, ov_explain reshapes to batch 1 and retries on the same device before falling back, with a warning that says why.
- The compiled-model cache (`OV_EXPLAIN_CACHE_DIR`, on by default) turns the next start's compile into a load — edge devices restart often.
- Every result says which device really ran it (`result.device`, from OpenVINO's `EXECUTION_DEVICES`). On this machine that is the CPU; GPU and NPU paths are tested with injected device lists only.'''),
    code('''from ov_explain import discover

print("devices here:", [d.name for d in discover(ov.Core())], "| ran on:", result.device)'''),
])

drift = new_notebook(cells=[
    md("# Did deployment change what the model looks at?\n\nQuantize the bundled EfficientNet-Lite0 to INT8 with NNCF (`pip install -e \".[quantize]\"`), compare the INT8 deployment with the FP32 one image by image — predictions, cases and maps — look at the images that moved most, and decide with a gate."),
    code(SETUP),
    md("## Quantize\n\nThe same as `ov-explain quantize --calibration examples/images/ground_truth.csv --out int8.xml`: NNCF post-training quantization, calibrated on images read and preprocessed like every other command does. The INT8 IR keeps the spec and labels."),
    code('''from ov_explain import quantize, sample_images_dir

report = quantize(None, sample_images_dir() / "ground_truth.csv", OUT / "int8" / "lite0_int8.xml")
print(f"{report.quantized_ops} quantized ops, {report.calibration_images} calibration images, {report.seconds:.1f} s; "
      f"{report.size_before_bytes / 1e6:.1f} MB -> {report.size_after_bytes / 1e6:.1f} MB")'''),
    md("## Drift: FP32 (f32) against INT8\n\nBoth deployments predict and explain **the same classes** for every image (the reference's top-1, its runner-up when two predictions compete, and the ground truth). Per image and class: top-1 agreement, probability change, both cases, and how far the map moved (Pearson r, overlap of the 10 % most salient cells, peak shift)."),
    code('''from ov_explain import drift

summary = drift(sample_images_dir() / "ground_truth.csv", OUT / "drift", reference_device="CPU",
                candidate=OUT / "int8" / "lite0_int8.xml", restart=True)
print(f"{summary.images} images: top-1 agreement {summary.top1_agreement}, map correlation median "
      f"{summary.map_correlation_median}, 5th percentile {summary.map_correlation_p05}")
for case, count in summary.cases.items():
    print(f"  {case:20s} {count}")
for before, row in summary.case_transitions.items():
    for after, count in row.items():
        print(f"  {before} -> {after}: {count}")'''),
    md("## The images that moved most\n\nEach picture: reference map | candidate map | their difference. Rows are sorted by map correlation, lowest first."),
    code('''import json
import matplotlib.pyplot as plt
import matplotlib.image as mpimg

rows = sorted((json.loads(line) for line in (OUT / "drift" / "drift.jsonl").read_text().splitlines()),
              key=lambda r: r["correlation"])
for row in rows[:3]:
    picture = mpimg.imread(OUT / "drift" / row["image_path"])
    plt.figure(figsize=(12, 12 * picture.shape[0] / picture.shape[1]))
    plt.imshow(picture); plt.axis("off")
    plt.title(f"{row['stem']}: map of {row['target_class']}, r = {row['correlation']:.3f}, "
              f"{row['reference_top1_class']} -> {row['candidate_top1_class']}")
    plt.show()'''),
    md("## The distribution of map correlations"),
    code('''picture = mpimg.imread(OUT / "drift" / "correlation.png")
plt.figure(figsize=(6, 3.2)); plt.imshow(picture); plt.axis("off"); plt.show()'''),
    md("## Decide\n\nA pipeline gates a deployment on limits it chooses: `ov-explain drift ... --fail-on top1-agreement<0.99,map-correlation-p05<0.8` exits with status 4 and names the limits crossed."),
    code('''from ov_explain import check_gate, parse_gate

crossed = check_gate(summary, parse_gate("top1-agreement<0.99,map-correlation-p05<0.8"))
print("deploy" if not crossed else "hold: " + "; ".join(crossed))'''),
])

for name, nb in (("explain", explain), ("audit", audit), ("deploy", deploy), ("drift", drift)):
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for number, cell in enumerate(nb.cells):  # stable cell ids: regenerating changes only what changed
        cell["id"] = f"{name}-{number}"
    nbf.write(nb, Path(__file__).resolve().parents[1] / "notebooks" / f"{name}.ipynb")
