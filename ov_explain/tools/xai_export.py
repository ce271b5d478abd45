"""An IR that returns the prediction and its saliency maps in one inference, checked on the device and saved
with its preprocessing and labels (and model_api's ``model_info`` keys)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ov_explain.core.devices import compile_with_fallback
from ov_explain.core.errors import OvExplainError, one_line
from ov_explain.core.labels import resolve_class
from ov_explain.core.storage import ensure_writable_folder
from ov_explain.explain.whitebox import MapSelection, build_xai_model
from ov_explain.tools.model_info import add_model_api_info

logger = logging.getLogger(__name__)


class ExportError(OvExplainError):
    """The XAI IR cannot be built or written."""


@dataclass(frozen=True)
class XaiExport:
    """What was written: the IR, what it computes and where the check compile ran."""

    path: Path
    method: str
    target_layer: str  # where the maps attach (a detector: the backbone outputs it cuts at)
    map_size: tuple[int, int]
    classes: str  # which classes have maps: "all", "top-3", ... (a detector: every anchor and class)
    readout: str | None
    shortcut: bool
    outputs: tuple[str, ...]
    execution_devices: tuple[str, ...]
    precision: str


def export_xai(classifier: Any, out_path: Path, *, method: str | None = None, target_layer: str | None = None,
               maps: str = "all", readout: str | None = None, embed_preprocessing: bool = False) -> XaiExport:
    """Build the XAI IR of ``classifier``'s model, compile it once on the classifier's device in its requested
    precision (an export the device cannot run fails here), and save it with its sidecar files."""

    if out_path.suffix.lower() != ".xml":
        raise ExportError(f"{out_path}: the output must be an IR path ending in .xml")
    if embed_preprocessing and classifier.custom_fn is not None:
        raise ExportError("--embed-preprocessing needs a preprocessing spec; a custom function cannot go into the "
                          "graph")
    try:
        selection = MapSelection.parse(maps, lambda item: resolve_class(int(item) if item.isdigit() else item,
                                                                        classifier.labels, classifier.num_classes))
    except OvExplainError as exc:
        raise ExportError(f"--maps: {exc}") from None
    xai = build_xai_model(classifier.model, classifier.output_port, method, target_layer=target_layer,
                          maps=selection, output_kind=classifier.output_kind,
                          **({} if readout is None else {"readout": readout}))
    exported = xai.model
    if embed_preprocessing and not classifier.embedded:
        exported = classifier.spec.embed(exported)
    if classifier.custom_fn is None:
        add_model_api_info(exported, classifier.spec, classifier.labels,
                           embedded=classifier.embedded or embed_preprocessing)
    checked = compile_with_fallback(classifier.core, exported, classifier.compile_info.device, cache_dir=None,
                                    precision=classifier.requested_precision)
    _save(exported, out_path, classifier)
    outputs = tuple(sorted(next(iter(o.get_names()), "?") for o in xai.model.outputs))
    return XaiExport(out_path, xai.method, xai.target_layer, tuple(xai.map_size), xai.maps.describe(), xai.readout,
                     bool(xai.shortcut), outputs, tuple(checked.execution_devices), checked.precision)


#: rt_info key of a detector's XAI IR: how to read its mosaic output without ov_explain.
DETECTION_INFO_KEY = ["model_info", "ov_explain_detection_mosaic"]


def export_detection_xai(detector: Any, out_path: Path, *, grid: int | None = None,
                         readout: str = "logit") -> XaiExport:
    """A detector's graph plus :data:`~ov_explain.core.detection.MOSAIC_OUTPUT`, checked on the
    detector's device in its requested precision and saved with its spec, labels and reading instructions
    (rt_info ``model_info/ov_explain_detection_mosaic``: the grid, the read-out, the cuts, the output format).

    Without ov_explain: for image n and a box decoded from output 0 at anchor a with class c, its map over
    the model input is ``mosaic[n * K:(n + 1) * K, c, a].reshape(rows, columns)`` (K = rows x columns) —
    class logits with ``readout=logit``; with ``probability`` the mosaic is output 0's layout per copy.
    """
    import json

    from ov_explain.explain.detection_graph import MOSAIC_OUTPUT, neck_cuts
    from ov_explain.explain.registry import METHODS

    if out_path.suffix.lower() != ".xml":
        raise ExportError(f"{out_path}: the output must be an IR path ending in .xml")
    method = METHODS["detreciprocam"]
    settings = method.check({"grid": grid, "readout": readout})
    model, (rows, columns) = method.build(detector.model, detector.num_classes, settings)
    cuts = neck_cuts(detector.model, detector.num_classes)
    info = {"method": method.name, "grid": [rows, columns], "copies": rows * columns, "readout": readout,
            "output": MOSAIC_OUTPUT, "output_format": detector.output_format,
            "layout": "(N * copies, classes, anchors) class logits" if readout == "logit" else
            "(N * copies, ...) the detector's own output per copy", "cuts": [c.name for c in cuts]}
    model.set_rt_info(json.dumps(info), DETECTION_INFO_KEY)
    checked = compile_with_fallback(detector.core, model, detector.compile_info.device, cache_dir=None,
                                    precision=detector.requested_precision)
    _save(model, out_path, detector)
    outputs = tuple(sorted(next(iter(o.get_names()), "?") for o in model.outputs))
    return XaiExport(out_path, method.name, ", ".join(c.name for c in cuts), (rows, columns), "every anchor's",
                     settings["readout"], False, outputs, tuple(checked.execution_devices), checked.precision)


def _save(model: Any, out_path: Path, source: Any) -> None:
    """The IR and its sidecars (spec, labels), or one :class:`ExportError` naming the file."""
    import openvino as ov

    stem = out_path.name[: -len(out_path.suffix)]
    try:
        ensure_writable_folder(out_path.parent)
        ov.save_model(model, str(out_path), compress_to_fp16=False)
        if source.custom_fn is None:
            source.spec.to_json(out_path.with_name(f"{stem}.preprocess.json"))
        if source.labels is not None:
            out_path.with_name(f"{stem}.labels.txt").write_text("\n".join(source.labels) + "\n", encoding="utf-8")
    except OvExplainError as exc:
        raise ExportError(f"--out {exc}") from None
    except (OSError, RuntimeError) as exc:  # OpenVINO's writer raises RuntimeError ("Can't open bin file")
        raise ExportError(f"--out {out_path}: cannot write the IR ({one_line(exc)})") from None
