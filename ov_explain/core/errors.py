"""Exception types: every failure a user can cause has one, with a one-line message naming the culprit."""


class OvExplainError(Exception):
    """Base class; the CLI turns these into one-line messages and a non-zero exit status."""


class ImageReadError(OvExplainError):
    """An image file is missing, unreadable, corrupt or of a kind that cannot be converted."""


class PreprocessError(OvExplainError):
    """A preprocessing spec or custom preprocessing function is invalid."""


class ModelLoadError(OvExplainError):
    """A model file is missing, unreadable, or not an image classifier we can drive."""


class LabelsError(OvExplainError):
    """A labels file is missing or does not match the model's number of classes."""


class DeviceError(OvExplainError):
    """No requested device exists, or compiling failed on every candidate device."""


def one_line(exc: BaseException, limit: int = 200) -> str:
    """The useful first line of an exception text (OpenVINO's start with a source location)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Exception from", "Check '"))] or lines
    text = useful[0] if useful else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def last_line(exc: BaseException, limit: int = 200) -> str:
    """The last non-empty line of an exception text: where OpenVINO's plugins put the actual reason
    (after the "Exception from ..." source locations)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[-1] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
