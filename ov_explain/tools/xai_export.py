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
    xai: Any  # the XaiModel (method, target layer, map size, classes with maps, read-out)
    outputs: tuple[str, ...]
    execution_devices: tuple[str, ...]
    precision: str


def export_xai(classifier: Any, out_path: Path, *, method: str | None = None, target_layer: str | None = None,
               maps: str = "all", readout: str | None = None, embed_preprocessing: bool = False) -> XaiExport:
    """Build the XAI IR of ``classifier``'s model, compile it once on the classifier's device in its requested
    precision (an export the device cannot run fails here), and save it with its sidecar files."""
    import openvino as ov

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
    stem = out_path.name[: -len(out_path.suffix)]
    try:
        ensure_writable_folder(out_path.parent)
        ov.save_model(exported, str(out_path), compress_to_fp16=False)
        if classifier.custom_fn is None:
            classifier.spec.to_json(out_path.with_name(f"{stem}.preprocess.json"))
        if classifier.labels is not None:
            out_path.with_name(f"{stem}.labels.txt").write_text("\n".join(classifier.labels) + "\n",
                                                                encoding="utf-8")
    except OvExplainError as exc:
        raise ExportError(f"--out {exc}") from None
    except (OSError, RuntimeError) as exc:  # OpenVINO's writer raises RuntimeError ("Can't open bin file")
        raise ExportError(f"--out {out_path}: cannot write the IR ({one_line(exc)})") from None
    outputs = tuple(sorted(next(iter(o.get_names()), "?") for o in xai.model.outputs))
    return XaiExport(out_path, xai, outputs, tuple(checked.execution_devices), checked.precision)
