"""Helpers shared by the export tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

BUCKET = "audits"
#: Class names for the hostile audit: chelsea's prediction and coffee's class climb and script.
HOSTILE = {282: "../../x", 967: '<script>alert("x")</script>'}


def tree_digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and its SHA-256: to prove an export changed nothing there."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def objects_under(client, prefix: str) -> dict[str, dict]:
    """Key -> {ETag, LastModified, Size} of every object under ``prefix``."""
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"]] = {"ETag": item["ETag"], "LastModified": item["LastModified"], "Size": item["Size"]}
    return found
