"""Export to object storage (any fsspec URL: ``s3://``, ``gs://``, ``az://``, ``file://``): RGBA maps and locators.

Every map becomes an RGBA PNG at the map's own resolution laid over its whole image (viewers stretch
it onto the image), under ``{prefix}/{case}/{structured name}.rgba.png``; ``locators.jsonl`` and
``locators.csv`` beside them say, per map, the image, ground truth, prediction, case, class, role and
the map's URL. Objects already there with the same bytes are skipped (checksums), so an interrupted
export resumes; the locators are written last, once every object they point to is in place.

Credentials come from where the backend looks (environment, profiles) or from ``storage_options``;
they are never written anywhere, and are blanked out of any message that could carry them.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import logging
import re
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ov_explain.core.errors import one_line
from ov_explain.core.storage import json_line
from ov_explain.export.items import SAFE_FILE, ExportError, ExportImage, ExportMap, ExportSource
from ov_explain.export.pictures import levels_of
from ov_explain.export.report import ExportReport, Progress
from ov_explain.render import rgba_png
from ov_explain.runs.audit.folder import box_columns

logger = logging.getLogger(__name__)

LOCATORS_JSONL, LOCATORS_CSV, IMAGES = "locators.jsonl", "locators.csv", "images"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp")
LOCATOR_COLUMNS = ("key", "image", "image_locator", "ground_truth", "prediction", "confidence", "case",
                   "target_class", "target_index", "target_role", "target_probability", "deployment",
                   "map_locator", "method", "device", "precision",
                   # detection audits: the explained box and the ground-truth box it was compared with
                   "box_left", "box_top", "box_right", "box_bottom", "truth_left", "truth_top", "truth_right",
                   "truth_bottom", "iou")
#: Which package serves which URL scheme (fsspec names it too; this names our extra).
BACKEND_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs",
                    "abfss": "adlfs"}
_SECRET_WORDS = re.compile(r"key|secret|token|password|credential|sas|signature", re.IGNORECASE)


@dataclass(frozen=True)
class _Object:
    """One object to put: its path under the prefix, and how to make its bytes (late: in a worker)."""

    relative: str
    make: Callable[[], bytes]


def export_to_storage(source: ExportSource, url: str, *, storage_options: dict[str, Any] | None = None,
                      uploads: int = 8, include_images: bool = False, progress: Progress | None = None,
                      colormap: str = "jet") -> ExportReport:
    """Upload ``source``'s maps (and, with ``include_images``, the original images) and the locators to ``url``."""
    options = dict(storage_options or {})
    started = time.perf_counter()
    fs, root = _filesystem(url, options)
    shown = _public(url)
    existing = _listing(fs, root, shown, options)
    objects, rows = _plan(source, fs, root, include_images, colormap)
    if _is_local(fs):
        fs.makedirs(root, exist_ok=True)
    uploaded, unchanged, sent, failed = _put_all(fs, root, objects, existing, uploads, progress, options)
    if not failed:  # last, so that every locator points at an object that is there
        locator_files = [_Object(LOCATORS_JSONL, lambda: _jsonl(rows)), _Object(LOCATORS_CSV, lambda: _csv(rows))]
        counts = _put_all(fs, root, locator_files, existing, 1, None, options)
        uploaded, unchanged, sent, failed = (a + b for a, b in zip((uploaded, unchanged, sent, failed), counts))
    report = ExportReport(destination=shown, kind=source.kind, images=len(source.images), maps=source.maps,
                          objects=len(objects) + 2, uploaded=uploaded, unchanged=unchanged, bytes_uploaded=sent,
                          seconds=round(time.perf_counter() - started, 3), failed=failed,
                          locators=None if failed else fs.unstrip_protocol(f"{root}/{LOCATORS_JSONL}"))
    logger.info("export to %s: %d objects, %d uploaded, %d unchanged, %d failed", shown, report.objects, uploaded,
                unchanged, len(failed))
    return report


# ----- the destination -----------------------------------------------------------------------------------
def _filesystem(url: str, options: dict[str, Any]) -> tuple[Any, str]:
    try:
        import fsspec
    except ImportError:
        raise ExportError('exporting to object storage needs fsspec: pip install "ov-explain[export]"') from None
    scheme = url.split("://", 1)[0].lower() if "://" in url else "file"
    try:
        fs, root = fsspec.core.url_to_fs(url, **options)
    except ImportError:
        package = BACKEND_PACKAGES.get(scheme, f"the fsspec backend for {scheme}://")
        extra = ' (pip install "ov-explain[export]")' if package == "s3fs" else ""
        raise ExportError(f"{_public(url)}: {scheme}:// needs the package {package}{extra}") from None
    except (ValueError, TypeError) as exc:
        raise ExportError(_scrub(f"{_public(url)}: {one_line(exc)}", options)) from None
    root = root.rstrip("/")
    if not root or (not _is_local(fs) and "/" not in root):  # a whole bucket would be listed and mixed with ours
        raise ExportError(f"{_public(url)}: give a bucket and a prefix, e.g. s3://bucket/audits/run-1")
    return fs, root


def _listing(fs: Any, root: str, shown: str, options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What is already under the prefix (one listing, not a request per object); access problems here
    are one line before anything is uploaded."""
    try:
        found = fs.find(root, detail=True)
    except PermissionError as exc:
        raise ExportError(_scrub(f"{shown}: access denied ({one_line(exc)}); check the credentials (environment, "
                                 "profile, or --storage-option key=... secret=...)", options)) from None
    except FileNotFoundError as exc:
        raise ExportError(_scrub(f"{shown}: not found ({one_line(exc)}); create the bucket first", options)) from None
    except Exception as exc:  # unreachable endpoint, bad option, ...: one line
        raise ExportError(_scrub(f"{shown}: cannot list the destination ({type(exc).__name__}: {one_line(exc)})",
                                 options)) from None
    return {path.rstrip("/"): info for path, info in (found or {}).items()}


def _is_local(fs: Any) -> bool:
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    return "file" in protocols or "local" in protocols


def _public(url: str) -> str:
    """A URL fit to print: any ``user:password@`` part removed."""
    return re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@", r"\1", str(url))


def is_secret_option(name: str) -> bool:
    """A storage option whose value must never be shown (keys, secrets, tokens, passwords, SAS)."""
    return bool(_SECRET_WORDS.search(str(name)))


def _secret_values(options: dict[str, Any]) -> list[str]:
    found = []
    for name, value in options.items():
        if isinstance(value, dict):  # client_kwargs={"aws_secret_access_key": ...}
            found += _secret_values(value)
        elif is_secret_option(name) and value is not None and len(str(value)) >= 4:
            found.append(str(value))
    return found


def _scrub(message: str, options: dict[str, Any]) -> str:
    """Blank out any secret storage option's value that found its way into a message."""
    for value in sorted(_secret_values(options), key=len, reverse=True):
        message = message.replace(value, "***")
    return message


# ----- what to upload ------------------------------------------------------------------------------------
def _plan(source: ExportSource, fs: Any, root: str, include_images: bool,
          colormap: str) -> tuple[list[_Object], list[dict[str, Any]]]:
    """The objects (maps, then images) and one locator row per map, in dataset order."""
    objects: list[_Object] = []
    rows: list[dict[str, Any]] = []
    for image in source.images:
        image_locator = None
        if include_images:
            relative = _image_key(image)
            objects.append(_Object(relative, lambda image=image: _read_original(image)))
            image_locator = fs.unstrip_protocol(f"{root}/{relative}")
        for item in image.maps:
            relative = f"{item.name}.rgba.png"
            objects.append(_Object(relative, lambda image=image, item=item: rgba_png(levels_of(image, item), colormap)))
            rows.append(_locator_row(image, item, image_locator, fs.unstrip_protocol(f"{root}/{relative}")))
    return objects, rows


def _image_key(image: ExportImage) -> str:
    suffix = Path(image.source).suffix.lower()
    if suffix not in IMAGE_SUFFIXES:  # only pictures leave the machine, whatever a row names
        raise ExportError(f"{image.source}: not an image file name ({', '.join(IMAGE_SUFFIXES)}); the rows are damaged")
    if not SAFE_FILE.match(image.stem + suffix):
        raise ExportError(f"{image.source}: its stem {image.stem!r} is not a name this audit writes; "
                          "the rows are damaged")
    return f"{IMAGES}/{image.stem}{suffix}"


def _read_original(image: ExportImage) -> bytes:
    try:
        return Path(image.source).read_bytes()
    except OSError as exc:
        raise ExportError(f"{image.source}: cannot read the original image ({exc.strerror or exc})") from None


def _locator_row(image: ExportImage, item: ExportMap, image_locator: str | None, map_locator: str) -> dict[str, Any]:
    provenance = image.provenance.get(item.deployment, {}) if item.deployment else image.provenance
    row = {"key": image.key, "image": image.source, "image_locator": image_locator,
           "ground_truth": image.ground_truth, "case": image.case, "target_class": item.target_class,
           "target_index": item.target_index, "target_role": item.target_role,
           "target_probability": item.target_probability, "deployment": item.deployment, "map_locator": map_locator,
           **{k: provenance.get(k) for k in ("method", "device", "precision")}}
    if item.detection is None:
        row["prediction"], row["confidence"] = image.predictions[item.deployment or "prediction"]
        return row
    box = item.detection  # a box of a detection audit: its own case, classes, score, boxes and IoU
    row.update(ground_truth=box["ground_truth"], prediction=box["detected_class"], confidence=box["score"],
               case=box["case"], iou=box["iou"], **box_columns("box", box["box"]),
               **box_columns("truth", box["truth_box"]))
    return row


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json_line(row) for row in rows).encode("utf-8")


def _csv(rows: list[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(LOCATOR_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


# ----- putting objects --------------------------------------------------------------------------------------
def _put_all(fs: Any, root: str, objects: list[_Object], existing: dict[str, dict[str, Any]], uploads: int,
             progress: Progress | None, options: dict[str, Any]) -> tuple[int, int, int, list[str]]:
    """Put every object, ``uploads`` at a time (a bounded window: a million maps are not a million
    futures); returns (uploaded, unchanged, bytes sent, failures as one line each)."""
    uploaded = unchanged = sent = done = 0
    failed: list[str] = []
    if progress is not None:
        progress(0, len(objects))

    def one(item: _Object) -> int:
        path = f"{root}/{item.relative}"
        data = item.make()
        if _is_local(fs):
            fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        return len(data) if _put(fs, path, data, existing.get(path)) else -1

    with ThreadPoolExecutor(max_workers=max(1, uploads), thread_name_prefix="ov-explain-export") as pool:
        pending: dict[Future, _Object] = {}
        queue = iter(objects)
        try:
            while True:
                while len(pending) < 4 * max(1, uploads):
                    item = next(queue, None)
                    if item is None:
                        break
                    pending[pool.submit(one, item)] = item
                if not pending:
                    break
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    item = pending.pop(future)
                    try:
                        size = future.result()
                    except ExportError as exc:
                        failed.append(str(exc))
                    except Exception as exc:  # a backend's error for this object: one line, the others go on
                        failed.append(_scrub(f"{_public(fs.unstrip_protocol(f'{root}/{item.relative}'))}: "
                                             f"{type(exc).__name__}: {one_line(exc)}", options))
                    else:
                        uploaded, unchanged, sent = (uploaded + 1, unchanged, sent + size) if size >= 0 else \
                            (uploaded, unchanged + 1, sent)
                    done += 1
                    if progress is not None:
                        progress(done, len(objects))
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return uploaded, unchanged, sent, failed


def _put(fs: Any, path: str, data: bytes, info: dict[str, Any] | None) -> bool:
    """Upload ``data`` unless the object is there with the same bytes; True if it was uploaded."""
    if info is not None and _same_content(fs, path, info, data):
        return False
    fs.pipe_file(path, data)
    return True


def _same_content(fs: Any, path: str, info: dict[str, Any], data: bytes) -> bool:
    """Compare by the checksum the backend keeps (S3 ETag, GCS md5Hash) or, lacking one, by the bytes."""
    size = info.get("size", info.get("Size"))
    if size is not None and int(size) != len(data):
        return False
    md5 = hashlib.md5(data).hexdigest()
    etag = str(info.get("ETag", info.get("etag", ""))).strip('"')
    encrypted = info.get("ServerSideEncryption") == "aws:kms" or info.get("SSECustomerAlgorithm")
    if re.fullmatch(r"[0-9a-f]{32}", etag) and not encrypted:  # a single-part, unencrypted upload's ETag is its MD5
        return etag == md5
    if info.get("md5Hash"):
        return base64.b64decode(info["md5Hash"]).hex() == md5
    try:
        return hashlib.md5(fs.cat_file(path)).hexdigest() == md5
    except OSError:
        return False
