"""Where the bundled model and sample photos live: a source checkout, or inside the installed wheel."""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # ov_explain/
BUNDLED_MODEL_NAME = "efficientnet_lite0"


def _first_existing(*candidates: Path) -> Path:
    for candidate in candidates:
        if candidate.exists():
            return candidate
    return candidates[0]


def models_dir() -> Path:
    """``models/`` of the source checkout (editable install) or ``ov_explain/_bundled/models`` (wheel)."""
    return _first_existing(_PACKAGE_DIR.parent / "models", _PACKAGE_DIR / "_bundled" / "models")


def default_model_path() -> Path:
    """The bundled EfficientNet-Lite0 FP16 IR."""
    return models_dir() / BUNDLED_MODEL_NAME / f"{BUNDLED_MODEL_NAME}.xml"


def user_models_dir() -> Path:
    """Where models converted on this machine go (not bundled): ``$XDG_CACHE_HOME/ov_explain/models``,
    else ``~/.cache/ov_explain/models``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ov_explain" / "models"


def sample_images_dir() -> Path:
    """The bundled sample photos (see ``examples/images/PROVENANCE.md``)."""
    return _first_existing(_PACKAGE_DIR.parent / "examples" / "images", _PACKAGE_DIR / "_bundled" / "images")


def sample_images() -> list[Path]:
    """The bundled photos, sorted by name."""
    return sorted(p for p in sample_images_dir().iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
