"""A minimal stand-in for torchvision, for importing timm where torchvision has no CPU build.

timm imports a few torchvision names at import time (a frozen batch norm, transform and dataset
classes, an interpolation enum); model definitions need none of them but the frozen batch norm.
Anything else is a placeholder that refuses to be used, so nothing silently runs on a fake.
"""

__version__ = "0.0+ov_explain.standin"


def placeholder(module: str, name: str) -> type:
    """A class named like torchvision's that raises if anything tries to use it."""

    def refuse(*args, **kwargs):
        raise NotImplementedError(f"{module}.{name} is not available: this torchvision is ov_explain's stand-in "
                                  "for importing timm's model definitions")

    return type(name, (), {"__init__": refuse, "__module__": module})
