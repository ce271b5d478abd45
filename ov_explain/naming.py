"""File names that are safe on every filesystem, built in one place."""

from __future__ import annotations

import re
import unicodedata

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_component(text: str, *, max_length: int = 80, empty: str = "unnamed") -> str:
    """One path component from any label: no separators, no ``..``, no control characters.

    Unicode is folded to ASCII where possible; runs of anything else become ``_``; leading dots are
    dropped so nothing hides or climbs directories.
    """
    folded = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii")
    cleaned = _UNSAFE.sub("_", folded).strip("._ ")
    cleaned = re.sub(r"\.{2,}", ".", cleaned)
    return cleaned[:max_length].rstrip("._ ") or empty
