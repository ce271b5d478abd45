"""Exports of a finished audit or drift audit to where teams review models.

``export(folder, "s3://bucket/prefix")`` (any fsspec URL) uploads RGBA maps and locators
(:mod:`.objects`); ``export(folder, "fiftyone:NAME")`` builds a FiftyOne dataset with heatmaps
(:mod:`.fiftyone_dataset`). Both read the folder through :mod:`.items` and never change what the
audit wrote.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ov_explain.export.items import ExportError, ExportImage, ExportMap, ExportSource, read_source
from ov_explain.export.report import ExportReport, Progress

logger = logging.getLogger(__name__)

__all__ = ["ExportError", "ExportImage", "ExportMap", "ExportReport", "ExportSource", "export", "read_source"]

FIFTYONE_PREFIX = "fiftyone:"


def export(audit_dir: str | os.PathLike, destination: str, *, storage_options: dict[str, Any] | None = None,
           uploads: int = 8, include_images: bool = False, progress: Progress | None = None,
           colormap: str = "jet") -> ExportReport:
    """Export an audit's (or drift audit's) maps to ``destination``: ``fiftyone:NAME`` or an fsspec URL.

    Object storage: ``storage_options`` go to the fsspec backend (``endpoint_url``, ``key``, ``secret``,
    ``profile``, ...), ``uploads`` run at once, ``include_images`` uploads the original images too.
    """
    if uploads < 1:
        raise ExportError(f"uploads: expected >= 1, got {uploads}")
    destination = str(destination)
    if destination.startswith(FIFTYONE_PREFIX):
        from ov_explain.export.fiftyone_dataset import export_to_fiftyone, import_fiftyone

        import_fiftyone()  # the missing extra is said before the folder is read
        if storage_options or include_images:
            raise ExportError("--storage-option and --include-images are for object storage, not fiftyone:")
        return export_to_fiftyone(read_source(audit_dir), destination[len(FIFTYONE_PREFIX):], progress=progress)
    from ov_explain.export.objects import export_to_storage

    return export_to_storage(read_source(audit_dir), destination, storage_options=storage_options, uploads=uploads,
                             include_images=include_images, progress=progress, colormap=colormap)
