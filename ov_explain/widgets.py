"""The notebook explorer: an ipywidgets UI on the same engine as the CLI (needs the ``notebook`` extra).

    from ov_explain.widgets import explore
    explore()                      # the bundled model and photos

Pick a device, an image (bundled photo, a path or an upload), a mode and method, a class (top
predictions first) — or, for a detector, one of its boxes — the overlay's opacity and colour map, and
compare several methods side by side.
Black-box methods run in a background thread with a progress bar and a Cancel button, so the kernel
stays usable. Every picture is an ``ipywidgets.Image`` and every text an ``HTML`` widget, which is
also what lets the tests drive the UI without a browser.
"""

from __future__ import annotations

import html
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ov_explain import render
from ov_explain.core.config import ModelConfig
from ov_explain.core.devices import DEFAULT_PRECISION, PRECISIONS, check_precision
from ov_explain.core.errors import OvExplainError
from ov_explain.core.images import decode_image, read_image
from ov_explain.core.resources import sample_images
from ov_explain.explain.blackbox import Cancelled
from ov_explain.explain.config import ExplainConfig
from ov_explain.explain.explainer import METHODS
from ov_explain.explain.registry import method_names

logger = logging.getLogger(__name__)

AUTO_METHOD = "(mode default)"
PATH_CHOICE = "(path below)"
UPLOAD_CHOICE = "(uploaded file)"


@dataclass
class _Job:
    thread: threading.Thread | None = None
    cancel: threading.Event | None = None


class Explorer:
    """The widget tree and its behaviour; ``Explorer(...).ui`` is what a notebook displays."""

    def __init__(self, model: str | Path | None = None, *, device: str = "AUTO", images: list[Path] | None = None,
                 core: Any = None, preset: str = "speed", precision: str = DEFAULT_PRECISION) -> None:
        import ipywidgets as w
        import openvino as ov

        self._w = w
        self.model_path, self.preset = model, preset
        self.core = core if core is not None else ov.Core()
        self.task = ModelConfig(model).resolved_task()  # classification, or detection (boxes to pick)
        methods = method_names(task=self.task)
        self._classifiers: dict[tuple[str, str], Any] = {}
        self._explainers: dict[tuple[str, str, str, str | None], Any] = {}
        self._job = _Job()
        self._lock = threading.Lock()
        photos = images if images is not None else sample_images()

        self.device = w.Dropdown(description="Device", options=["AUTO", *self.core.available_devices], value=device)
        self.precision = w.Dropdown(description="Precision", options=list(PRECISIONS), value=check_precision(precision))
        self.image = w.Dropdown(description="Image", options=[(p.name, str(p)) for p in photos]
                                + [(PATH_CHOICE, PATH_CHOICE), (UPLOAD_CHOICE, UPLOAD_CHOICE)])
        self.path = w.Text(description="Path", placeholder="/path/to/image.jpg (choose '(path below)')")
        self.upload = w.FileUpload(description="Upload", accept="image/*", multiple=False)
        self.mode = w.Dropdown(description="Mode", options=["auto", "whitebox", "blackbox"], value="auto")
        self.method = w.Dropdown(description="Method", options=[AUTO_METHOD, *methods], value=AUTO_METHOD)
        self.target = w.Combobox(description="Box" if self.task == "detection" else "Class",
                                 placeholder="type to search", ensure_option=True)
        self.opacity = w.FloatSlider(description="Opacity", min=0.0, max=1.0, step=0.05, value=0.5)
        self.colormap = w.Dropdown(description="Colormap", options=list(render.COLORMAPS), value="jet")
        first = "detreciprocam" if self.task == "detection" else "reciprocam"
        self.compare = w.SelectMultiple(description="Compare", options=methods, value=(first,), rows=len(methods))
        self.run_button = w.Button(description="Explain", button_style="primary", icon="play")
        self.compare_button = w.Button(description="Compare methods", icon="columns")
        self.cancel_button = w.Button(description="Cancel", button_style="warning", icon="stop", disabled=True)
        self.progress = w.FloatProgress(description="", min=0.0, max=1.0, value=0.0, layout={"width": "300px"})
        self.status = w.HTML()
        self.predictions = w.HTML()
        self.picture = w.Image(format="png", layout={"max_width": "640px"})
        self.gallery = w.HBox()

        controls = w.VBox([self.device, self.precision, self.image, self.path, self.upload, self.mode, self.method,
                           self.target, self.opacity, self.colormap,
                           w.HBox([self.run_button, self.cancel_button, self.progress]),
                           self.compare, self.compare_button])
        self.ui = w.VBox([w.HBox([controls, w.VBox([self.predictions, self.picture])]), self.status,
                          self.gallery])

        self._explanation: Any = None
        self._pixels: np.ndarray | None = None
        self._quiet = False  # set while the explorer itself changes widget values
        self.run_button.on_click(lambda _: self.explain())
        self.compare_button.on_click(lambda _: self.compare_methods())
        self.cancel_button.on_click(lambda _: self.cancel())
        for widget in (self.device, self.precision, self.image, self.path, self.upload, self.mode, self.method,
                       self.target):
            widget.observe(self._on_input_change, names="value")
        for widget in (self.opacity, self.colormap):
            widget.observe(lambda _: self._redraw(), names="value")
        self.explain()

    # ----- engine ------------------------------------------------------------------------------------
    def classifier(self) -> Any:
        """The model on the chosen device and precision: a Classifier, or a Detector."""
        key = (self.device.value, self.precision.value)
        if key not in self._classifiers:
            self._classifiers[key] = ModelConfig(self.model_path, device=key[0], precision=key[1],
                                                 task=self.task).load(core=self.core)
        return self._classifiers[key]

    def explainer(self, method: str | None = None) -> Any:
        mode = self.mode.value if method is None else METHODS[method].mode
        method = method if method is not None else (None if self.method.value == AUTO_METHOD else self.method.value)
        key = (self.device.value, self.precision.value, mode, method)
        if key not in self._explainers:
            self._explainers[key] = ExplainConfig(mode=mode, method=method, preset=self.preset).create(
                self.classifier())
        return self._explainers[key]

    def _run(self, explainer: Any, pixels: np.ndarray, progress: Any) -> Any:
        """One explanation: of the chosen class, or of every box (one pass; the chosen one is shown)."""
        if self.task == "detection":
            return explainer.explain(pixels, "all", progress=progress)
        return explainer.explain(pixels, self._choose_target, top_k=1, progress=progress)

    def current_pixels(self) -> np.ndarray:
        """The chosen image as RGB uint8."""
        choice = self.image.value
        if choice == UPLOAD_CHOICE:
            files = self.upload.value
            if not files:
                raise OvExplainError("no file uploaded yet: use the Upload button")
            item = files[0] if isinstance(files, (list, tuple)) else next(iter(files.values()))
            return decode_image(bytes(item["content"]), source=str(item.get("name", "upload")))
        if choice == PATH_CHOICE:
            if not self.path.value.strip():
                raise OvExplainError("type a path to an image in the Path box")
            return read_image(Path(self.path.value.strip()).expanduser())
        return read_image(choice)

    # ----- actions -----------------------------------------------------------------------------------
    def explain(self, *, wait: bool = False) -> None:
        """Predict and explain the current image for the chosen class (background thread for black-box)."""
        try:
            pixels = self.current_pixels()
            explainer = self.explainer()
        except OvExplainError as exc:
            self._show_error(exc)
            return
        self._pixels = pixels
        self._start(lambda progress: self._run(explainer, pixels, progress), self._show_explanation,
                    blackbox=explainer.mode == "blackbox", wait=wait)

    def compare_methods(self, *, wait: bool = False) -> None:
        """The same image and class explained by each method chosen in Compare, side by side."""
        methods = list(self.compare.value)
        try:
            pixels = self.current_pixels()
            explainers = [(m, self.explainer(m)) for m in methods]
        except OvExplainError as exc:
            self._show_error(exc)
            return
        self._pixels = pixels

        def work(progress: Callable[[int, int], bool]) -> list[tuple[str, Any]]:
            results = []
            for i, (name, explainer) in enumerate(explainers):
                def step(done: int, total: int, i: int = i) -> bool:
                    return progress(i * total + done, total * len(explainers))
                results.append((name, self._run(explainer, pixels, step)))
            return results

        self._start(work, self._show_comparison,
                    blackbox=any(e.mode == "blackbox" for _, e in explainers), wait=wait)

    def cancel(self) -> None:
        if self._job.cancel is not None:
            self._job.cancel.set()
            self.status.value = "<b>cancelling…</b>"

    def wait(self, timeout: float | None = None) -> None:
        """Block until the running explanation (if any) finishes: for scripts and tests."""
        thread = self._job.thread
        if thread is not None:
            thread.join(timeout)

    # ----- internals ---------------------------------------------------------------------------------
    def _on_input_change(self, change: dict) -> None:
        if self._quiet:
            return
        if change["owner"] in (self.device, self.precision, self.image, self.path, self.upload):
            self._set(self.target, "value", "")  # a new image gets its own top classes
        if change["owner"] is self.target and change["new"] and change["new"] not in self.target.options:
            return  # typing: wait for a complete class name
        if change["owner"] is self.target and self.task == "detection":
            self._redraw()  # every box's map is already there
            return
        mode = self.mode.value
        if change["owner"] is self.mode and self.method.value != AUTO_METHOD and \
                METHODS[self.method.value].mode != mode and mode != "auto":
            self._set(self.method, "value", AUTO_METHOD)
        if self._is_blackbox():
            self.status.value = "black-box methods take seconds to minutes: press <b>Explain</b>"
            return
        self.explain()

    def _set(self, widget: Any, name: str, value: Any) -> None:
        self._quiet = True
        try:
            setattr(widget, name, value)
        finally:
            self._quiet = False

    def _is_blackbox(self) -> bool:
        if self.method.value != AUTO_METHOD:
            return METHODS[self.method.value].mode == "blackbox"
        return self.mode.value == "blackbox"

    def _choose_target(self, prediction: Any) -> list[int]:
        """The chosen class (top-1 if none), from the explanation's own prediction; also lists this
        image's top predictions first among the class options."""
        names = self.classifier().labels or [str(i) for i in range(prediction.probabilities.size)]
        top = [names[s.index] for s in prediction.top]
        options = top + [n for n in names if n not in top]
        if list(self.target.options) != options:
            self._set(self.target, "options", options)
        return [names.index(self.target.value) if self.target.value else prediction.top[0].index]

    def _start(self, work: Callable[[Callable[[int, int], bool]], Any], show: Callable[[Any, float], None], *,
               blackbox: bool, wait: bool) -> None:
        with self._lock:
            if self._job.thread is not None and self._job.thread.is_alive():
                self.status.value = "<b>busy:</b> an explanation is running (Cancel it first)"
                return
            cancel = threading.Event()
            self.progress.value = 0.0

            def progress(done: int, total: int) -> bool:
                self.progress.value = done / max(total, 1)
                return cancel.is_set()

            def run() -> None:
                started = time.perf_counter()
                try:
                    result = work(progress)
                    show(result, (time.perf_counter() - started) * 1000)
                except Cancelled:
                    self.status.value = "<b>cancelled</b>: nothing was changed"
                except OvExplainError as exc:
                    self._show_error(exc)
                except Exception as exc:  # a background thread has no one else to tell
                    logger.exception("explorer: unexpected error")
                    self._show_error(exc)
                finally:
                    self.cancel_button.disabled = True
                    self.run_button.disabled = self.compare_button.disabled = False

            self.cancel_button.disabled = not blackbox
            self.run_button.disabled = self.compare_button.disabled = True
            self.status.value = "working…"
            if blackbox:
                self._job = _Job(threading.Thread(target=run, daemon=True, name="ov-explain-explorer"), cancel)
                self._job.thread.start()
            else:
                self._job = _Job(None, cancel)
                run()
        if wait:
            self.wait()

    def _box_options(self, explanation: Any) -> list[str]:
        return [f"{i}: {d.label} {d.score:.2f}" for i, d in enumerate(explanation.detections.detections)]

    def _shown_map(self, explanation: Any) -> Any | None:
        """The map to draw: the class's, or the chosen box's (the first box's when none is chosen)."""
        if self.task != "detection":
            return explanation.maps[0]
        if not explanation.maps:
            return None
        value = self.target.value
        chosen = int(value.split(":", 1)[0]) if value and value in self.target.options else explanation.explained[0]
        return explanation.maps[explanation.explained.index(chosen)] if chosen in explanation.explained else None

    def _show_detections(self, explanation: Any, elapsed_ms: float) -> None:
        options = self._box_options(explanation)
        if list(self.target.options) != options:
            self._set(self.target, "options", options)
            if self.target.value not in options:
                self._set(self.target, "value", options[0] if options else "")
        rows = "".join(f"<tr><td>{i}</td><td>{html.escape(d.label)}</td><td>{d.score:.3f}</td><td>"
                       f"{', '.join(f'{v:.0f}' for v in d.box)}</td></tr>"
                       for i, d in enumerate(explanation.detections.detections))
        self.predictions.value = ("<table><tr><th>box</th><th>class</th><th>score</th><th>x1, y1, x2, y2</th></tr>"
                                  f"{rows}</table>" if rows else "<i>no detections</i>")
        self.status.value = (f"<b>{html.escape(explanation.method)}</b> ({explanation.mode}) on "
                             f"<b>{html.escape(explanation.device)}</b> in {html.escape(explanation.precision)}: "
                             f"{len(options)} box(es), {explanation.inferences} inference(s), {elapsed_ms:.0f} ms")
        self._redraw()

    def _show_explanation(self, explanation: Any, elapsed_ms: float) -> None:
        self._explanation = explanation
        self.progress.value = 1.0
        if self.task == "detection":
            self._show_detections(explanation, elapsed_ms)
            return
        prediction = explanation.prediction
        rows = "".join(f"<tr><td>{html.escape(s.name or str(s.index))}</td><td>{s.probability:.3f}</td></tr>"
                       for s in prediction.top)
        self.predictions.value = f"<table><tr><th>class</th><th>probability</th></tr>{rows}</table>"
        saliency = explanation.maps[0]
        fallback = getattr(self._explainers.get((self.device.value, self.precision.value, self.mode.value, None)),
                           "fallback_reason", None)
        layer = f", layer <code>{html.escape(explanation.target_layer)}</code>" if explanation.target_layer else ""
        self.status.value = (f"<b>{html.escape(explanation.method)}</b> ({explanation.mode}{layer}) on "
                             f"<b>{html.escape(explanation.device)}</b> in {html.escape(explanation.precision)} "
                             f"for <b>{html.escape(saliency.label)}</b>: "
                             f"{explanation.inferences} inference(s), {elapsed_ms:.0f} ms"
                             + (f" — fell back: {html.escape(fallback)}" if fallback else ""))
        self._redraw()

    def _show_comparison(self, results: list[tuple[str, Any]], elapsed_ms: float) -> None:
        w = self._w
        cells = []
        for name, explanation in results:
            saliency = self._shown_map(explanation)
            if saliency is None:
                continue
            picture = self._overlay_png(saliency)
            cells.append(w.VBox([w.HTML(f"<b>{html.escape(name)}</b> ({explanation.mode}), "
                                        f"{explanation.timings_ms and sum(explanation.timings_ms.values()):.0f} ms"),
                                 w.Image(value=picture, format="png", layout={"max_width": "320px"})]))
        self.gallery.children = tuple(cells)
        self.progress.value = 1.0
        self.status.value = f"compared {len(results)} methods in {elapsed_ms:.0f} ms"

    def _redraw(self) -> None:
        if self._explanation is None:
            return
        saliency = self._shown_map(self._explanation)
        if saliency is not None:
            self.picture.value = self._overlay_png(saliency)
        elif self._pixels is not None:  # a detector that found nothing: the photo itself
            self.picture.value = render.encode_png(self._pixels)

    def _overlay_png(self, saliency: Any) -> bytes:
        assert self._pixels is not None
        picture = render.overlay(self._pixels, saliency.on_image, weight=self.opacity.value,
                                 colormap=self.colormap.value)
        if saliency.box is not None:
            picture = render.draw_box(picture, saliency.box, f"{saliency.label} {saliency.probability:.2f}")
        return render.encode_png(picture)

    def _show_error(self, exc: Exception) -> None:
        self.status.value = f"<b style='color:#b00020'>error:</b> {html.escape(str(exc))}"


def explore(model: str | Path | None = None, **kwargs: Any) -> Any:
    """Build the explorer and return its widget (a notebook displays it when it is the cell's value)."""
    return Explorer(model, **kwargs).ui
