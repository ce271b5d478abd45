"""torchvision.datasets stand-in: placeholders."""

from .. import placeholder


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    return placeholder(__name__, name)
