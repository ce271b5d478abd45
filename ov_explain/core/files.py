"""A model on disk: the .xml / .onnx file, the sidecar files beside it, and their digest."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ov_explain.core import resources
from ov_explain.core.errors import ModelLoadError, one_line


@dataclass(frozen=True)
class ModelFiles:
    """A model file and the sidecar files found beside it."""

    model: Path
    preprocess: Path | None
    labels: Path | None

    @classmethod
    def locate(cls, path: str | os.PathLike | None) -> "ModelFiles":
        """Find the model (a file, or the single .xml/.onnx in a folder) and its sidecars.

        Sidecars: ``<stem>.preprocess.json`` / ``<stem>.labels.txt``, else ``preprocess.json`` /
        ``labels.txt`` in the same folder.
        """
        path = Path(path) if path is not None else resources.default_model_path()
        if path.is_dir():
            found = sorted(path.glob("*.xml")) or sorted(path.glob("*.onnx"))
            if len(found) != 1:
                raise ModelLoadError(f"{path}: expected exactly one .xml or .onnx model in the folder, "
                                     f"found {len(found)}")
            path = found[0]
        if not path.is_file():
            raise ModelLoadError(f"{path}: model file not found")
        if path.suffix.lower() not in (".xml", ".onnx"):
            raise ModelLoadError(f"{path}: expected an OpenVINO IR (.xml) or ONNX (.onnx) model")
        stem = path.name[: -len(path.suffix)]

        def sidecar(*names: str) -> Path | None:
            return next((path.parent / n for n in names if (path.parent / n).is_file()), None)

        return cls(path, sidecar(f"{stem}.preprocess.json", "preprocess.json"),
                   sidecar(f"{stem}.labels.txt", "labels.txt"))

    def digest(self) -> str:
        """SHA-256 of the model's files (the .xml or .onnx, and the .bin beside an IR)."""
        import hashlib

        digest = hashlib.sha256()
        for part in (self.model, self.model.with_suffix(".bin")):
            if part.is_file():
                with open(part, "rb") as handle:
                    for chunk in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(chunk)
        return digest.hexdigest()


@dataclass(frozen=True)
class ReadModel:
    """A model file already read (its files and its ``ov.Model``), to hand on instead of reading it again: what
    :meth:`ov_explain.core.config.ModelConfig.load` read to find the task is what the model is built from."""

    files: ModelFiles
    model: Any


def read_model(path: str | os.PathLike | ReadModel | None, core: Any) -> ReadModel:
    """The model file found from ``path`` (see :meth:`ModelFiles.locate`) read by ``core``, or one
    :class:`ModelLoadError`; a :class:`ReadModel` is returned as it is."""
    if isinstance(path, ReadModel):
        return path
    files = ModelFiles.locate(path)
    try:
        return ReadModel(files, core.read_model(str(files.model)))
    except Exception as exc:  # OpenVINO raises RuntimeError with the parser's text
        raise ModelLoadError(f"{files.model}: cannot read model ({one_line(exc)})") from None
