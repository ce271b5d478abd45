"""Datasets with boxes: COCO ``instances.json`` and YOLO folders, read into samples whose ground truth is boxes
in the image's pixels (x1, y1, x2, y2) with class names as the dataset writes them.

- COCO: ``images`` (``file_name``, ``id``), ``annotations`` (``image_id``, ``category_id``, ``bbox`` [x, y, w, h],
  ``iscrowd``), ``categories`` (``id``, ``name``); image files relative to the JSON's folder or under ``images``.
  An image with no annotation has no box (it is a negative image, not an unlabeled one).
- YOLO: ``images/`` and ``labels/`` side by side (``labels/<stem>.txt``: ``class cx cy w h`` in 0..1 of the
  image, scaled to pixels once the worker has read the image), class names from ``data.yaml`` (``names``: a list
  or an index map) or ``classes.txt``; an image without a labels file is a background image (no boxes), as in
  Ultralytics; without ``labels/`` at all the dataset says nothing about any image.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ov_explain.core.images import is_image_file
from ov_explain.runs.dataset import DatasetError, check_utf8_names, read_dataset

logger = logging.getLogger(__name__)

BOX_DATASET_KINDS = ("auto", "coco", "yolo", "unlabeled")


@dataclass(frozen=True)
class GroundTruthBox:
    """One box as the dataset writes it: its class name, x1, y1, x2, y2 in the image's pixels (``relative``: in
    fractions of its width and height, YOLO's labels, scaled once the image is read), crowd flag."""

    label: str
    box: tuple[float, float, float, float]
    crowd: bool = False
    relative: bool = False


@dataclass(frozen=True)
class BoxSample:
    """One image and its ground-truth boxes (None: the dataset says nothing about it)."""

    path: Path
    key: str
    boxes: tuple[GroundTruthBox, ...] | None = field(default=None)
    label: None = None  # what the row engine's error rows read: an image with boxes has no one label

    @property
    def labels(self) -> tuple[str, ...]:
        """Its boxes' class names (what ``--classes`` selects images by)."""
        return tuple(dict.fromkeys(b.label for b in self.boxes or ()))


def read_box_dataset(source: str | os.PathLike, *, kind: str = "auto", images: str | os.PathLike | None = None,
                     exclude: str | os.PathLike | None = None) -> list[BoxSample]:
    """Every image of a COCO file, a YOLO folder or a folder of images without ground truth (``unlabeled``:
    cases by score alone), in a stable order. ``images``: where COCO's files are; ``exclude``: a folder a
    plain folder's walk skips (the audit's own output).

    ``auto``: a ``.json`` file is COCO, a folder holding ``images/`` is YOLO, any other folder unlabeled."""
    source = Path(source)
    if kind not in BOX_DATASET_KINDS:
        raise DatasetError(f"a detection dataset is one of {list(BOX_DATASET_KINDS)}, got {kind!r}")
    if not source.exists():
        raise DatasetError(f"{source}: dataset not found")
    if kind == "auto" and source.is_file() and source.suffix.lower() != ".json":
        raise DatasetError(f"{source}: a detector's dataset is a COCO instances .json, a YOLO folder (images/, "
                           "labels/) or a folder of images")
    if kind == "auto":
        kind = "coco" if source.suffix.lower() == ".json" else "yolo" if (source / "images").is_dir() else "unlabeled"
    if images is not None and kind != "coco":
        raise DatasetError(f"{source}: --images names where a COCO file's images are; a {kind} dataset holds its own")
    if kind == "unlabeled":
        return [BoxSample(s.path, s.key, None) for s in read_dataset(source, kind="unlabeled", exclude=exclude)]
    samples = read_coco(source, images) if kind == "coco" else read_yolo(source)
    if not samples:
        raise DatasetError(f"{source}: no images listed")
    check_utf8_names(samples)
    logger.info("%s: %d images, %d boxes (%s)", source, len(samples), sum(len(s.boxes or ()) for s in samples), kind)
    return samples


def read_coco(path: Path, images: str | os.PathLike | None = None) -> list[BoxSample]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        names = {int(c["id"]): str(c["name"]) for c in data["categories"]}
        files = {int(i["id"]): str(i["file_name"]) for i in data["images"]}
        annotations = data.get("annotations", [])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{path}: not a COCO instances file ({type(exc).__name__}: {exc}); expected images, "
                           "annotations and categories") from None
    root = Path(images) if images is not None else path.parent
    boxes: dict[int, list[GroundTruthBox]] = {i: [] for i in files}
    for number, item in enumerate(annotations, 1):
        try:
            x, y, w, h = (float(v) for v in item["bbox"])
            if not (w >= 0 and h >= 0):
                raise ValueError(f"width and height must not be negative, got {w} x {h}")
            image, category = int(item["image_id"]), int(item["category_id"])
            boxes[image].append(GroundTruthBox(names[category], (x, y, x + w, y + h), bool(item.get("iscrowd", 0))))
        except (KeyError, ValueError, TypeError) as exc:
            raise DatasetError(f"{path}: annotation {number} is not an image_id / category_id / bbox [x, y, w, h] "
                               f"of the file ({type(exc).__name__}: {exc})") from None
    return [BoxSample(root / files[i], files[i], tuple(boxes[i])) for i in sorted(files, key=lambda i: files[i])]


def yolo_names(root: Path) -> list[str]:
    """Class names of a YOLO folder: ``data.yaml``'s ``names`` (a list or {index: name}) or ``classes.txt``."""
    for name in ("data.yaml", "dataset.yaml"):
        if (root / name).is_file():
            import yaml

            try:
                names = yaml.safe_load((root / name).read_text(encoding="utf-8"))["names"]
            except (yaml.YAMLError, KeyError, TypeError) as exc:
                raise DatasetError(f"{root / name}: no class names ({type(exc).__name__}: {exc})") from None
            if isinstance(names, dict):
                return [str(names[k]) for k in sorted(names)]
            return [str(n) for n in names]
    if (root / "classes.txt").is_file():
        lines = (root / "classes.txt").read_text(encoding="utf-8").splitlines()
        return [line.strip() for line in lines if line.strip()]
    raise DatasetError(f"{root}: a YOLO folder needs data.yaml (names) or classes.txt for its class names")


def read_yolo(root: Path) -> list[BoxSample]:
    if not (root / "images").is_dir():
        raise DatasetError(f"{root}: a YOLO folder holds images/ and labels/ (no images/ here)")
    names = yolo_names(root)
    labelled = (root / "labels").is_dir()
    samples = []
    for image in sorted(p for p in (root / "images").rglob("*") if is_image_file(p)):
        relative = image.relative_to(root / "images")
        labels = (root / "labels" / relative).with_suffix(".txt")
        boxes = _yolo_boxes(labels, names) if labels.is_file() else () if labelled else None
        samples.append(BoxSample(image, str(relative), boxes))
    return samples


def _yolo_boxes(labels: Path, names: list[str]) -> tuple[GroundTruthBox, ...]:
    """One labels file's boxes, in fractions of the image (the image is not read here: that is the worker's)."""
    try:
        text = labels.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{labels}: cannot read the labels file ({type(exc).__name__}: {exc}); expected UTF-8 "
                           "lines 'class cx cy w h'") from None
    boxes = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            cls, *numbers = line.split()[:5]
            index = int(cls)
            cx, cy, w, h = (float(v) for v in numbers)
            valid = 0 <= index < len(names)
        except ValueError:
            valid = False
        if not valid:
            raise DatasetError(f"{labels}: line {number}: expected 'class cx cy w h' with a class of "
                               f"0..{len(names) - 1} and four numbers, got {line.strip()!r}")
        boxes.append(GroundTruthBox(names[index], (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), relative=True))
    return tuple(boxes)
