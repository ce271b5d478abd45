"""Post-training INT8 quantization with NNCF, calibrated on images read and preprocessed the way
every other command reads them, into an IR that carries the same preprocessing and labels.

NNCF is the ``quantize`` extra (``pip install -e ".[quantize]"``); without it the command says so.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ov_explain.core.errors import OvExplainError

logger = logging.getLogger(__name__)

PRESETS = ("performance", "mixed")
MODEL_TYPES = ("cnn", "transformer")


class QuantizeError(OvExplainError):
    """Quantization cannot run (NNCF missing, no calibration image, an output that cannot be written)."""


@dataclass(frozen=True)
class QuantizeReport:
    """What a quantization did, as printed and written beside the IR (``<stem>.quantize.json``)."""

    model: str
    output: str
    calibration: str
    calibration_images: int
    preset: str
    model_type: str
    seconds: float
    quantized_ops: int  # FakeQuantize nodes NNCF inserted
    size_before_bytes: int
    size_after_bytes: int
    nncf_version: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _nncf() -> Any:
    try:
        import nncf
    except ImportError as exc:
        raise QuantizeError(f"quantization needs NNCF, which is not installed ({exc}); install the extra: "
                            "pip install -e '.[quantize]'") from None
    return nncf


def _ir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, path.with_suffix(".bin")) if p.is_file())


def quantize(model: str | os.PathLike | None, calibration: str | os.PathLike, out: str | os.PathLike, *,
             subset_size: int = 300, preset: str = "performance", model_type: str = "cnn",
             preprocess: Any = None, labels: Any = None, kind: str = "auto") -> QuantizeReport:
    """Quantize ``model`` to INT8 with ``calibration`` images and save the IR at ``out`` (.xml)."""
    import openvino as ov

    from ov_explain.core.config import ModelConfig
    from ov_explain.core.detector import framework_info
    from ov_explain.core.preprocess import RT_INFO_EMBEDDED_KEY, RT_INFO_KEY, rt_info_str
    from ov_explain.runs.dataset import default_label_map, read_dataset

    nncf = _nncf()
    if preset not in PRESETS:
        raise QuantizeError(f"preset must be one of {list(PRESETS)}, got {preset!r}")
    if model_type not in MODEL_TYPES:
        raise QuantizeError(f"model type must be one of {list(MODEL_TYPES)}, got {model_type!r}")
    if subset_size < 1:
        raise QuantizeError(f"subset size must be >= 1, got {subset_size}")
    out = Path(out)
    if out.suffix.lower() != ".xml":
        raise QuantizeError(f"{out}: the output must be an IR path ending in .xml")
    samples = read_dataset(calibration, kind=kind)
    if not samples:
        raise QuantizeError(f"{calibration}: no calibration image")
    # A classifier or a detector (its letterbox preprocessing calibrates it), whichever the file is.
    classifier = ModelConfig(model, device="CPU", preprocess=preprocess, labels=labels, cache_dir=None).load()
    with classifier:
        chosen = samples[:subset_size]
        tensors = [classifier.prepare(s.path).tensor[None] for s in chosen]
        started = time.perf_counter()
        original = classifier.core.read_model(str(classifier.files.model))
        quantized = nncf.quantize(
            original, nncf.Dataset(tensors), subset_size=len(tensors),
            preset=getattr(nncf.QuantizationPreset, preset.upper()),
            model_type=nncf.ModelType.TRANSFORMER if model_type == "transformer" else None)
        seconds = time.perf_counter() - started
        fake_quantize = sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ordered_ops())
        for key in (RT_INFO_KEY, RT_INFO_EMBEDDED_KEY, ["model_info", "model_name"]):
            if original.has_rt_info(key) and not quantized.has_rt_info(key):
                quantized.set_rt_info(rt_info_str(original.get_rt_info(key)), key)
        for name, value in framework_info(original).items():  # an exporter's (Ultralytics: names, task, size)
            if not quantized.has_rt_info(["framework", name]):
                quantized.set_rt_info(value, ["framework", name])
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            ov.save_model(quantized, str(out))
            stem = out.name[: -len(out.suffix)]
            if classifier.custom_fn is None:
                classifier.spec.to_json(out.with_name(f"{stem}.preprocess.json"))
            if classifier.labels is not None:
                out.with_name(f"{stem}.labels.txt").write_text("\n".join(classifier.labels) + "\n", encoding="utf-8")
            synsets = default_label_map(classifier.files.model)
            if synsets is not None:  # the dataset label map (ids -> classes) travels with the model
                shutil.copy(synsets, out.with_name(f"{stem}.synsets.txt"))
        except OSError as exc:
            raise QuantizeError(f"{out}: cannot write the IR ({exc})") from None
        report = QuantizeReport(str(classifier.files.model), str(out), str(calibration), len(tensors), preset,
                                model_type, round(seconds, 3), fake_quantize, _ir_size(classifier.files.model),
                                _ir_size(out), getattr(nncf, "__version__", "unknown"))
        out.with_name(f"{stem}.quantize.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n",
                                                          encoding="utf-8")
    logger.info("quantized %s with %d images in %.1f s: %d FakeQuantize ops", classifier.files.model.name,
                len(tensors), seconds, fake_quantize)
    return report
