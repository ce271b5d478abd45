"""A self-contained HTML report of an audit folder: counts, galleries per case, filters, sorting.

Everything the page needs is inside the one file (styles, script, thumbnails as data URIs), so it
opens from ``file://`` with no network; full-size overlays are linked relative to the report.
Built from the audit's own files, so ``ov-explain report AUDIT_DIR`` can rebuild it at any time.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import os
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ov_explain import render
from ov_explain.core.errors import OvExplainError
from ov_explain.core.images import read_bgr_at_least, read_image
from ov_explain.core.storage import atomic_write_text
from ov_explain.render.grids import thumbnail
from ov_explain.runs.audit.folder import MANIFEST, REPORT, SUMMARY, AuditRow, read_errors, read_row_columns
from ov_explain.runs.cases import CASES
from ov_explain.runs.detection.cases import BOX_CASES
from ov_explain.runs.detection.drift_folder import BOX_DRIFT_CASES, read_box_drift_rows
from ov_explain.runs.detection.folder import read_box_rows
from ov_explain.runs.gallery import Gallery

logger = logging.getLogger(__name__)


class ReportError(OvExplainError):
    """The folder is not an audit (or not a finished one)."""


@dataclass(frozen=True)
class ReportItem:
    """One image of the gallery: its original and its overlays, with what the model said."""

    key: str
    stem: str
    case: str
    ground_truth: str | None
    ground_truth_probability: float | None
    prediction: str
    confidence: float
    original: str | None  # data URI of a thumbnail, or None if the source is gone
    source_link: str | None
    maps: tuple[dict[str, Any], ...]  # {"label", "role", "probability", "thumbnail", "link"}


#: Images (boxes, for a detector) shown per case: the page stays one file that opens at once for 100,000 images.
REPORT_ITEMS = 24


def build_report(audit_dir: str | os.PathLike, *, thumbnail_size: int = 224, per_case: int = REPORT_ITEMS,
                 chosen: Gallery | None = None) -> Path:
    """Write ``report.html`` into an audit folder and return its path: every case's count, and a gallery of
    its ``per_case`` most telling images (the most confident of a high-confidence case, the least confident of
    a low-confidence one, the closest calls of a two-predictions one), chosen in one pass over the rows —
    or ``chosen`` already (an :class:`ImageGallery` fed by the pass that wrote the summary)."""
    out = Path(audit_dir)
    detection = _finished_summary(out).get("task") == "detection"
    try:
        if chosen is not None:
            gallery = chosen
        elif detection:
            gallery = _box_gallery(out, per_case)
        else:
            images = ImageGallery(per_case)
            for row in read_row_columns(out):
                images.add(row)
            gallery = images.finish()
    except ValueError as exc:
        raise ReportError(f"{exc}; run the audit again (it repairs the manifest) or restart it") from None
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        return ReportPictures(out, gallery, detection=detection, thumbnail_size=thumbnail_size, pool=pool).write()


class ReportPictures:
    """A report's gallery with its thumbnails being made on ``pool`` (a classifier audit's: decoding and encoding
    release the GIL, so they share the cores with whatever else the end of a run draws, such as the grids);
    :meth:`write` renders the page once the folder's summary.json is written."""

    def __init__(self, out: Path, gallery: Gallery, *, detection: bool = False, thumbnail_size: int = 224,
                 pool: Executor) -> None:
        self.out, self.gallery, self.detection = out, gallery, detection
        self.case_names = BOX_CASES if detection else CASES
        self.members = [(case, r) for case in self.case_names for r in gallery.members(case)]
        if detection:  # boxes of one image share its original's thumbnail: made in order, when written
            originals: dict[str, tuple[str | None, str | None]] = {}
            self._made = [pool.submit(lambda: [_box_item(out, r, thumbnail_size, originals) for _, r in self.members])]
        else:
            self._made = [pool.submit(_item, out, r, thumbnail_size) for _, r in self.members]

    def _items(self) -> list[ReportItem]:
        if self.detection:
            return self._made[0].result()
        return [made.result() for made in self._made]

    def write(self) -> Path:
        out, gallery, case_names = self.out, self.gallery, self.case_names
        summary = _finished_summary(out)
        try:
            made = self._items()
        except ValueError as exc:
            raise ReportError(f"{exc}; run the audit again (it repairs the manifest) or restart it") from None
        by_case: dict[str, list[ReportItem]] = {case: [] for case in case_names}
        for (case, _), item in zip(self.members, made):
            by_case[case].append(item)
        items = [i for case in case_names for i in by_case[case]]
        errors = read_errors(out)
        classes = sorted({i.ground_truth for i in items if i.ground_truth} | {i.prediction for i in items})
        html = _environment().get_template("report.html.j2").render(
            summary=summary, cases=[(c, by_case[c], gallery.counts[c]) for c in case_names if gallery.counts[c]],
            items=items, errors=errors, classes=classes, per_class=summary.get("per_class", {}),
            case_names=list(case_names), detection=self.detection)
        path = out / REPORT
        atomic_write_text(path, html)
        logger.info("%s: report of %d images, %d shown", path, sum(gallery.counts.values()), len(items))
        return path


def _finished_summary(out: Path) -> dict[str, Any]:
    """The folder's summary.json, or one line saying why the folder is not a finished audit."""
    summary_path = out / SUMMARY
    if not (out / MANIFEST).exists() or not summary_path.exists():
        raise ReportError(f"{out}: not a finished audit (expected manifest.jsonl and summary.json)")
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportError(f"{summary_path}: damaged ({exc}); run the audit again to rewrite it") from None
    if not isinstance(summary, dict):
        raise ReportError(f"{summary_path}: damaged (expected a JSON object); run the audit again to rewrite it")
    return summary


def telling(case: str, confidence: float, runner_up: float | None, key: str) -> tuple[float, str]:
    """The order in which a case's members are worth a look (smallest first): the most confident of a
    high-confidence case, the least confident of a low-confidence one, the closest calls of a two-predictions
    one; the key breaks ties."""
    if case.endswith("_two_predictions"):
        return confidence - (runner_up or 0.0), key
    if case.endswith("_low_confidence") or case == "False_negative":
        return confidence, key
    return -confidence, key


class ImageGallery:
    """A classifier audit's images as their rows stream past (an image's rows are appended together), the
    most telling ``per_case`` of each case kept (:func:`telling`)."""

    def __init__(self, per_case: int) -> None:
        self.per_case = per_case
        self.forget()

    def forget(self) -> None:
        """Start again, none chosen (the rows are given again)."""
        self.gallery = Gallery(self.per_case, key=lambda rows: telling(
            rows[0]["case"], rows[0]["top1_probability"], rows[0].get("top2_probability"), rows[0]["key"]))
        self._current: list[dict[str, Any]] = []

    def add(self, row: dict[str, Any]) -> None:
        if self._current and row["key"] != self._current[0]["key"]:
            self.gallery.add(self._current[0]["case"], self._current)
            self._current = []
        self._current.append(row)

    def finish(self) -> Gallery:
        if self._current:
            self.gallery.add(self._current[0]["case"], self._current)
            self._current = []
        return self.gallery


def _box_gallery(out: Path, per_case: int) -> Gallery:
    """A detection audit's boxes with a picture, the most telling ``per_case`` of each case kept."""
    gallery = Gallery(per_case, key=lambda row: telling(row.case, _box_confidence(row), None,
                                                         f"{row.key}#{row.target_rank:06d}"))
    for row in read_box_rows(out):
        if row.overlay_path is not None:
            gallery.add(row.case, row)
    return gallery


def _box_confidence(row: Any) -> float:
    return row.score if row.detection is not None else row.target_score


@functools.cache
def _environment() -> Any:
    """The report templates' environment, made once per process; the compiled templates are kept in Jinja's
    bytecode cache in the temp folder, so a run loads the page's code (0.4 ms) rather than compiling it (20 ms;
    jinja2 checks the template's source) unless no temp folder can be written."""
    import jinja2

    class QuietBytecodeCache(jinja2.FileSystemBytecodeCache):
        def dump_bytecode(self, bucket: Any) -> None:
            try:
                super().dump_bytecode(bucket)
            except OSError as exc:  # a cache that cannot be written only costs the next run the compile
                logger.debug("report: template cache not written (%s)", exc)

    try:
        cache = QuietBytecodeCache()
    except (OSError, RuntimeError) as exc:  # no private temp folder of ours can be made
        logger.debug("report: no template cache (%s)", exc)
        cache = None
    return jinja2.Environment(loader=jinja2.PackageLoader("ov_explain.render", "templates"),
                              autoescape=True, undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True, bytecode_cache=cache)


def _box_item(out: Path, row: Any, size: int, originals: dict[str, tuple[str | None, str | None]]) -> ReportItem:
    """One box of a detection audit: its overlay (the boxes drawn) beside its image."""
    if row.source not in originals:
        originals[row.source] = _original(out, Path(row.source), size, (row.height, row.width))
    picture = read_bgr_at_least(out / row.overlay_path, size, (row.height, row.width))
    found = row.detection is not None
    label = f"box {row.target_rank}" + ("" if found else " (missed)")
    maps = ({"label": row.target_class, "role": label, "probability": row.target_score, "link": row.overlay_path,
             "thumbnail": None if picture is None else _data_uri(thumbnail(picture, size), bgr=True)},)
    return ReportItem(f"{row.key}#box{row.target_rank}", f"{row.stem} box {row.target_rank}", row.case,
                      row.ground_truth_class, row.iou, row.detected_class if found else "(missed)",
                      _box_confidence(row), *originals[row.source], maps)


def _original(out: Path, source: Path, size: int, image_size: tuple[int, int]) -> tuple[str | None, str | None]:
    """The original's thumbnail (None if it is gone) and its link relative to the report. A JPEG is decoded
    at a reduced scale where its ``image_size`` (height, width, as audited) allows (the thumbnail alone needs it)."""
    original = None
    try:
        reduced = None
        if source.suffix.lower() in (".jpg", ".jpeg"):
            reduced = read_bgr_at_least(source, size, image_size)
        original = _data_uri(thumbnail(reduced, size), bgr=True) if reduced is not None else \
            _data_uri(thumbnail(read_image(source), size))
    except OvExplainError as exc:
        logger.warning("report: original not shown (%s)", exc)
    link = os.path.relpath(source.resolve(), out.resolve()) if source.exists() else None
    return original, None if link is None else Path(link).as_posix()


def _item(out: Path, columns: list[dict[str, Any]], size: int) -> ReportItem:
    """One image of a classifier audit (its rows' columns, as kept while streaming) with its maps."""
    rows = sorted((AuditRow.from_dict(c) for c in columns), key=lambda r: r.target_rank)
    first = rows[0]
    maps = []
    for row in rows:
        picture = read_bgr_at_least(out / row.overlay_path, size, (row.height, row.width))
        maps.append({"label": row.target_class, "role": row.target_role.replace("_", " "),
                     "probability": row.target_probability, "link": row.overlay_path,
                     "thumbnail": None if picture is None else _data_uri(thumbnail(picture, size), bgr=True)})
    return ReportItem(first.key, first.stem, first.case, first.ground_truth_class,
                      first.ground_truth_probability, first.top1.name, first.top1.probability,
                      *_original(out, Path(first.source), size, (first.height, first.width)), tuple(maps))


def _data_uri(picture: Any, *, bgr: bool = False) -> str:
    jpeg = render.encode_jpeg(picture, 80, bgr=bgr)
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def build_drift_report(drift_dir: str | os.PathLike, *, thumbnail_size: int = 540) -> Path:
    """Write ``report.html`` into a drift folder: summary, case transitions, worst classes and the
    side-by-side pictures, most drifted (lowest map correlation) first; self-contained like the audit's."""
    from ov_explain.runs.drift.folder import PLOT, read_drift_rows
    from ov_explain.runs.drift.folder import REPORT as DRIFT_REPORT
    from ov_explain.runs.drift.folder import SUMMARY as DRIFT_SUMMARY

    out = Path(drift_dir)
    try:
        summary = json.loads((out / DRIFT_SUMMARY).read_text(encoding="utf-8"))
        detection = summary.get("task") == "detection"
        items = _box_drift_items(out) if detection else _drift_items(read_drift_rows(out))
    except FileNotFoundError:
        raise ReportError(f"{out}: not a finished drift audit (expected drift.jsonl and summary.json)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReportError(f"{exc}; run the drift audit again (it repairs its rows) or restart it") from None
    for item in items:
        picture = read_bgr_at_least(out / item["link"], thumbnail_size, None)
        item["thumbnail"] = None if picture is None else _data_uri(thumbnail(picture, thumbnail_size), bgr=True)
    plot = None
    if (out / PLOT).is_file():
        plot = "data:image/png;base64," + base64.b64encode((out / PLOT).read_bytes()).decode("ascii")
    html = _environment().get_template("drift.html.j2").render(summary=summary, items=items, plot=plot,
                                                                detection=detection)
    path = out / DRIFT_REPORT
    atomic_write_text(path, html)
    logger.info("%s: drift report of %d maps", path, len(items))
    return path


def _drift_items(rows: list[Any]) -> list[dict[str, Any]]:
    """A classifier drift's pictures, lowest map correlation first."""
    return [{"stem": row.stem, "case": row.case, "target": row.target_class, "correlation": row.correlation,
             "reference": row.reference_top1_class, "reference_probability": row.reference_top1_probability,
             "candidate": row.candidate_top1_class, "candidate_probability": row.candidate_top1_probability,
             "link": row.image_path} for row in sorted(rows, key=lambda r: (r.correlation, r.key, r.target_rank))]


def _box_drift_items(out: Path) -> list[dict[str, Any]]:
    """A detector drift's pictures per box: boxes lost or new first, then by map correlation."""
    rows = [r for r in read_box_drift_rows(out) if r.image_path is not None]
    rows.sort(key=lambda r: (BOX_DRIFT_CASES.index(r.case), r.correlation if r.correlation is not None else -2,
                             r.key, r.target_rank))
    return [{"stem": f"{row.stem} box {row.target_rank}", "case": row.case,
             "target": row.reference_class or row.candidate_class, "correlation": row.correlation,
             "reference": row.reference_class, "reference_probability": row.reference_score,
             "candidate": row.candidate_class, "candidate_probability": row.candidate_score,
             "link": row.image_path} for row in rows]
