"""What the tool sees in a model before it explains anything: ports, scores, preprocessing, the
white-box target and what each device makes of the graph.

Pure gathering: :func:`inspect_model` (or :func:`inspect_classifier` on a loaded
:class:`~ov_explain.core.model.Classifier`) returns a :class:`ModelReport`; the CLI formats it.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ov_explain.core.devices import DEFAULT_PRECISION, compile_with_fallback, discover
from ov_explain.core.errors import DeviceError, OvExplainError, one_line
from ov_explain.core.model import Classifier
from ov_explain.core.ports import output_position, output_softmax
from ov_explain.explain.base import ExplainError, WhiteboxUnsupportedError
from ov_explain.explain.graph import (
    feature_map_candidates,
    find_target_layer,
    find_token_layer,
    is_transformer,
    match_linear_head,
    token_layer_candidates,
    with_visible_head,
)
from ov_explain.explain.registry import DEFAULT_BLACKBOX
from ov_explain.explain.whitebox import SALIENCY_OUTPUT, build_xai_model, whitebox_method

logger = logging.getLogger(__name__)

#: How many candidate layers besides the target a report lists (the ones nearest the head).
OTHER_CANDIDATES = 5


@dataclass(frozen=True)
class PortReport:
    """One model input or output: its shape (None = dynamic), element type and role."""

    name: str
    shape: tuple[int | None, ...]
    element_type: str
    role: str  # "image", "classification", "saliency" or "other"
    layout: str | None = None  # inputs: the layout the tool feeds (NCHW / NHWC)
    ir_layout: str | None = None  # the layout the IR declares, if it declares one


@dataclass(frozen=True)
class ScoresReport:
    """What the classification output holds and how that was decided."""

    output: str
    num_classes: int
    kind: str  # "logits", "probabilities" or "auto" (undecided)
    decided_by: str  # e.g. "Softmax in the graph", "--output", "values on a grey image"
    softmax_node: str | None  # the in-graph Softmax a white-box "logit" read-out would read before
    labels: bool
    labels_origin: str | None


@dataclass(frozen=True)
class PreprocessReport:
    """The preprocessing the classifier applies and where it came from."""

    origin: str
    found: bool  # False: no spec anywhere, a plain resize is used
    embedded: bool
    custom_function: bool
    size: tuple[int, int]
    layout: str
    resize: str
    crop_fraction: float
    interpolation: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    color: str
    pad_value: int = 0  # letterbox padding


@dataclass(frozen=True)
class LayerReport:
    """A place a white-box method can attach: a CNN feature map or a transformer token stream."""

    name: str
    kind: str  # "feature_map" (shape C, H, W) or "token_stream" (shape tokens, dim)
    shape: tuple[int, ...]
    grid: tuple[int, int]  # the saliency map's H x W
    layout: str | None = None  # feature maps: NCHW / NHWC
    aux_tokens: int | None = None  # token streams: CLS and other non-patch tokens


@dataclass(frozen=True)
class WhiteboxReport:
    """Whether a white-box explanation can be built on the graph, where it attaches and why not."""

    architecture: str  # "cnn" or "transformer"
    method: str
    works: bool
    reason: str | None  # why not, when it does not
    fallback: str | None  # the black-box method ``mode=auto`` runs instead (None: auto fails too)
    target: LayerReport | None
    other_candidates: list[LayerReport]
    linear_head: bool | None  # GAP + linear head after the feature map (None: not a CNN target)
    shortcut: bool | None  # the maps come from one matrix product (CAM, ReciproCAM's shortcut)
    map_size: tuple[int, int] | None
    readout: str | None = None  # class scores read as "logit" (before a softmax in the graph) or "probability"


@dataclass(frozen=True)
class DeviceReport:
    """One device's compile of the model: where it executes, in what precision, how long it took."""

    device: str
    full_name: str
    ok: bool
    execution_devices: tuple[str, ...] = ()
    precision: str | None = None
    default_precision: str | None = None
    compile_ms: float | None = None
    static_shapes: bool = False
    error: str | None = None


@dataclass(frozen=True)
class DetectionReport:
    """What a detector's outputs hold and how the tool reads them."""

    output_format: str
    decided_by: str  # "the output shapes" or "--output-format"
    num_classes: int
    labels_origin: str
    classes: list[str]  # the first names, for a glance
    confidence: float
    iou: float
    exporter: dict[str, str]  # the exporter's metadata (Ultralytics: task, imgsz, stride, ...), names left out
    methods: list[str]  # the registry's detection methods


@dataclass(frozen=True)
class ModelReport:
    """Everything :func:`inspect_model` found; :meth:`to_dict` is its JSON form."""

    model: str
    format: str  # "OpenVINO IR" or "ONNX"
    name: str
    ops: int
    inputs: list[PortReport]
    outputs: list[PortReport]
    scores: ScoresReport | None  # a classifier's class scores (None for a detector)
    preprocess: PreprocessReport
    whitebox: WhiteboxReport
    devices: list[DeviceReport] = field(default_factory=list)
    precision: str = DEFAULT_PRECISION  # what the device compiles were asked for
    task: str = "classification"
    detection: DetectionReport | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for device in data["devices"]:
            if device["compile_ms"] is not None:
                device["compile_ms"] = round(device["compile_ms"], 1)
        return data


def inspect_model(model_path: str | os.PathLike | None = None, *, preprocess: Any = None,
                  labels: Sequence[str] | str | os.PathLike | None = None, output: str = "auto",
                  method: str | None = None, target_layer: str | None = None,
                  precision: str = DEFAULT_PRECISION, device: str = "AUTO", core: Any = None,
                  probe_devices: bool = True, task: str = "auto", output_format: str = "auto") -> ModelReport:
    """Load the model as every command does (``device`` only for that load) and report on it.

    ``core`` is the OpenVINO ``Core`` (or a stand-in) whose devices are compiled on, one by one. ``task``
    / ``output_format`` as for :class:`~ov_explain.core.config.ModelConfig` (a detector is found by itself).
    """
    from ov_explain.core.config import ModelConfig

    if ModelConfig(model_path, task=task, output_format=output_format).resolved_task() == "detection":
        from ov_explain.core.detector import Detector

        with Detector(model_path, device=device, preprocess=preprocess, labels=labels, output_format=output_format,
                      cache_dir=None, precision=precision) as detector:
            return inspect_detector(detector, format_given=output_format != "auto", precision=precision,
                                    core=core, probe_devices=probe_devices)
    with Classifier(model_path, device=device, preprocess=preprocess, labels=labels, output=output,
                    cache_dir=None, precision=precision) as classifier:
        origin = None if labels is None else str(labels) if isinstance(labels, (str, os.PathLike)) \
            else "given by the caller"
        return inspect_classifier(classifier, labels_origin=origin, method=method, target_layer=target_layer,
                                  precision=precision, core=core, probe_devices=probe_devices,
                                  output_given=output != "auto")


def inspect_classifier(classifier: Classifier, *, labels_origin: str | None = None, method: str | None = None,
                       target_layer: str | None = None, precision: str = DEFAULT_PRECISION, core: Any = None,
                       probe_devices: bool = True, output_given: bool = False) -> ModelReport:
    """The report for a loaded classifier (``labels_origin``: where its labels came from, if not beside
    the model; ``output_given``: its output kind was set by the caller rather than found)."""
    model = classifier.model
    path = classifier.files.model
    position = output_position(model.outputs, classifier.output_port)
    return ModelReport(
        model=str(path), format=model_format(path),
        name=model.get_friendly_name(), ops=len(model.get_ordered_ops()),
        inputs=[_input_report(classifier, port) for port in model.inputs],
        outputs=[_port_report(port, _output_role(port, i == position)) for i, port in enumerate(model.outputs)],
        scores=_scores_report(classifier, labels_origin, output_given),
        preprocess=_preprocess_report(classifier),
        whitebox=whitebox_report(model, classifier.output_port, method, target_layer, classifier.output_kind),
        devices=device_reports(core if core is not None else classifier.core, model, precision)
        if probe_devices else [],
        precision=precision)


def inspect_detector(detector: Any, *, format_given: bool = False, precision: str = DEFAULT_PRECISION,
                     core: Any = None, probe_devices: bool = True) -> ModelReport:
    """The report for a loaded detector: its format and classes, and what explains it."""
    from ov_explain.explain.registry import DEFAULT_DETECTION_BLACKBOX, method_names

    model, path = detector.model, detector.files.model
    if detector.files.labels is not None:
        labels_origin = str(detector.files.labels)
    elif detector.labels is not None and detector.labels == metadata_names_of(detector):
        labels_origin = "the exporter's metadata (names)"
    else:
        labels_origin = "given by the caller" if detector.labels is not None else "none (classes shown by index)"
    detection = DetectionReport(
        detector.output_format, "--output-format" if format_given else "the output shapes", detector.num_classes,
        labels_origin, detector.names[:20], detector.confidence, detector.iou,
        {k: v for k, v in detector.framework.items() if k != "names"}, method_names(task="detection"))
    from ov_explain.explain.detection_graph import neck_cuts
    from ov_explain.explain.registry import DEFAULT_DETECTION_WHITEBOX

    try:
        cuts = neck_cuts(model, detector.num_classes)
        layers = [LayerReport(c.name, "backbone_output", (c.channels, c.height, c.width), (c.height, c.width))
                  for c in cuts]
        whitebox = WhiteboxReport("detector", DEFAULT_DETECTION_WHITEBOX, True, None, None, layers[-1], layers[:-1],
                                  None, None, layers[-1].grid, "logit")
    except (WhiteboxUnsupportedError, OvExplainError) as exc:
        whitebox = WhiteboxReport("detector", DEFAULT_DETECTION_WHITEBOX, False, str(exc), DEFAULT_DETECTION_BLACKBOX,
                                  None, [], None, None, None)
    return ModelReport(
        model=str(path), format=model_format(path), name=model.get_friendly_name(), ops=len(model.get_ordered_ops()),
        inputs=[_input_report(detector, port) for port in model.inputs],
        outputs=[_port_report(port, "detection") for port in model.outputs], scores=None,
        preprocess=_preprocess_report(detector), whitebox=whitebox,
        devices=device_reports(core if core is not None else detector.core, model, precision) if probe_devices else [],
        precision=precision, task="detection", detection=detection)


def metadata_names_of(detector: Any) -> list[str] | None:
    from ov_explain.core.detector import metadata_names

    return metadata_names(detector.framework)


# ----- ports and scores ---------------------------------------------------------------------------
def _port_name(port: Any) -> str:
    names = sorted(port.get_names())
    return names[0] if names else port.get_node().get_friendly_name()


def _shape(port: Any) -> tuple[int | None, ...]:
    shape = port.get_partial_shape()
    if shape.rank.is_dynamic:
        return ()
    return tuple(d.get_length() if d.is_static else None for d in shape)


def _port_report(port: Any, role: str, layout: str | None = None, ir_layout: str | None = None) -> PortReport:
    return PortReport(_port_name(port), _shape(port), port.get_element_type().get_type_name(), role, layout,
                      ir_layout)


def _input_report(classifier: Classifier, port: Any) -> PortReport:
    declared = port.get_node().get_layout()
    ir_layout = None if declared.empty else declared.to_string().strip("[]").replace(",", "")
    return _port_report(port, "image", "N" + classifier.input_layout, ir_layout)


def _output_role(port: Any, classification: bool) -> str:
    if classification:
        return "classification"
    return "saliency" if SALIENCY_OUTPUT in port.get_names() else "other"


def _scores_report(classifier: Classifier, labels_origin: str | None, output_given: bool) -> ScoresReport:
    softmax = output_softmax(classifier.output_port)
    kind = classifier.output_kind
    if output_given:
        decided_by = "--output"
    elif softmax is not None:
        decided_by = "Softmax in the graph"
    else:
        kind, decided_by = _kind_from_values(classifier)
    if classifier.labels is None:
        labels_origin = None
    elif labels_origin is None:
        labels_origin = str(classifier.files.labels) if classifier.files.labels else "given by the caller"
    return ScoresReport(_port_name(classifier.output_port), classifier.num_classes, kind, decided_by,
                        softmax.get_friendly_name() if softmax is not None else None,
                        classifier.labels is not None, labels_origin)


def _kind_from_values(classifier: Classifier) -> tuple[str, str]:
    """No Softmax in the graph: read the scores of one mid-grey image as the run-time rule would."""
    height, width = classifier.spec.size
    try:
        prepared = classifier.prepare(np.full((height, width, 3), 128, np.uint8), source="<grey>")
        raw = classifier.infer(prepared.tensor[None])
    except (OvExplainError, RuntimeError) as exc:
        logger.warning("could not run a test image to read the output kind: %s", one_line(exc))
        return "auto", f"undecided: no Softmax in the graph, and a test image failed ({one_line(exc)})"
    return classifier.to_probabilities(raw)[1], "no Softmax in the graph; values on a grey image"


def _preprocess_report(classifier: Classifier) -> PreprocessReport:
    spec = classifier.spec
    origin = classifier.preprocess_origin
    return PreprocessReport(origin, not origin.startswith("none found"), classifier.embedded,
                            classifier.custom_fn is not None, spec.size,
                            "NHWC" if classifier.embedded else spec.layout, spec.resize, spec.crop_fraction,
                            spec.interpolation, tuple(spec.mean), tuple(spec.std), spec.color, spec.pad_value)


# ----- white-box ----------------------------------------------------------------------------------
def _layer(candidate: Any) -> LayerReport:
    if hasattr(candidate, "tokens"):
        return LayerReport(candidate.name, "token_stream", (candidate.tokens, candidate.dim),
                           (candidate.height, candidate.width), aux_tokens=candidate.aux_tokens)
    return LayerReport(candidate.name, "feature_map", (candidate.channels, candidate.height, candidate.width),
                       (candidate.height, candidate.width), layout=candidate.layout)


def whitebox_report(model: Any, classification_output: Any, method: str | None = None,
                    target_layer: str | None = None, output_kind: str = "auto") -> WhiteboxReport:
    """Find the white-box target and build the XAI model once: it works, or here is why not."""
    transformer = is_transformer(model)
    # A black-box name is the caller's mistake: ExplainError.
    chosen = whitebox_method(model, method, output_position(model.outputs, classification_output), target_layer)
    tokens = chosen.for_transformers
    candidates = token_layer_candidates(model) if tokens else feature_map_candidates(model)
    try:
        target = find_token_layer(model, target_layer) if tokens else find_target_layer(model, target_layer)
    except ExplainError:  # no target, or a bad target_layer: the build below gives the reason
        target = None
    if transformer and not tokens and target_layer is None:
        target = None  # a transformer's rank-4 tensors are patch embeddings, not a CNN feature map
    others = [c for c in candidates if target is None or c.name != target.name]
    linear_head = None
    if target is not None and not tokens:
        position = output_position(model.outputs, classification_output)
        visible = with_visible_head(model, position, target.name)  # an ONNX head shows after constant folding
        linear_head = match_linear_head(find_target_layer(visible, target.name), visible.outputs[position]) is not None
    works, reason, fallback, shortcut, map_size, readout = True, None, None, None, None, None
    try:
        xai = build_xai_model(model, classification_output, chosen.name, target_layer=target_layer,
                              output_kind=output_kind)
        shortcut, map_size, readout = xai.shortcut, xai.map_size, xai.readout
    except WhiteboxUnsupportedError as exc:
        # Only `auto` with no method named falls back (a named method runs in its own mode).
        works, reason, fallback = False, str(exc), DEFAULT_BLACKBOX if method is None else None
    except ExplainError as exc:  # a request the user can fix (method, layer name): auto does not fall back
        works, reason = False, str(exc)
    return WhiteboxReport("transformer" if transformer else "cnn", chosen.name, works, reason, fallback,
                          _layer(target) if target is not None else None,
                          [_layer(c) for c in reversed(others[-OTHER_CANDIDATES:])], linear_head, shortcut, map_size,
                          readout)


# ----- devices ------------------------------------------------------------------------------------
def device_reports(core: Any, model: Any, precision: str = DEFAULT_PRECISION) -> list[DeviceReport]:
    """Compile ``model`` on every device ``core`` reports, one at a time without the model cache."""
    reports = []
    for info in discover(core):
        started = time.perf_counter()
        try:
            compiled = compile_with_fallback(core, model, info.name, cache_dir=None, precision=precision)
        except DeviceError as exc:
            attempts = getattr(exc, "attempts", None)
            error = "; ".join(dict.fromkeys(a.reason for a in attempts if a.reason)) if attempts else str(exc)
            reports.append(DeviceReport(info.name, info.full_name, False, default_precision=info.default_precision,
                                        error=error))
            continue
        elapsed = (time.perf_counter() - started) * 1000.0
        reports.append(DeviceReport(info.name, info.full_name, True, compiled.execution_devices, compiled.precision,
                                    info.default_precision, elapsed, compiled.static_shapes))
        del compiled
    return reports


def model_format(path: Path) -> str:
    return "ONNX" if path.suffix.lower() == ".onnx" else "OpenVINO IR"
