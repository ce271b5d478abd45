"""torchvision.transforms stand-in: placeholders (timm's data pipeline is not used with it)."""

from .. import placeholder
from . import functional  # noqa: F401  (timm imports it as an attribute too)


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    return placeholder(__name__, name)
