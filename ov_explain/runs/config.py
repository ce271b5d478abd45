"""Which images a run reads and how it runs them, declared once (audits and drift audits share both)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ov_explain.core.config import ConfigError, from_dict, to_dict
from ov_explain.runs.dataset import (
    DATASET_KINDS,
    DatasetError,
    LabelResolver,
    Sample,
    default_label_map,
    read_dataset,
    read_label_map,
    select,
)
from ov_explain.runs.detection.dataset import BOX_DATASET_KINDS, BoxSample, read_box_dataset
from ov_explain.runs.ray_engine import RayOptions

logger = logging.getLogger(__name__)

#: Where the per-image work runs: this process's threads, or Ray Data actors (the ``distributed`` extra).
ENGINES = ("local", "ray")
#: Dataset layouts: a classifier's, then those with boxes (a detector's).
KINDS = (*DATASET_KINDS, *(k for k in BOX_DATASET_KINDS if k not in DATASET_KINDS))


@dataclass(frozen=True)
class DatasetConfig:
    """How a dataset is read and which of its images a run takes.

    ``kind``: the layout (auto: by suffix / folder contents; ``coco`` / ``yolo``: boxes, for detectors);
    ``images``: where a COCO file's images are (None: beside it); ``label_map``: dataset labels (folder ids,
    box class names) to classes, a file or a dict (None: the model's synsets file when there is one);
    ``classes`` / ``limit`` / ``sample`` (seeded by ``sample_seed``): only these labels (a detection dataset:
    images with a box of them), the first N, a random N.
    """

    kind: str = "auto"
    label_map: str | os.PathLike | Mapping[str, str] | None = None
    classes: Sequence[str] | None = None
    limit: int | None = None
    sample: int | None = None
    sample_seed: int = 0
    images: str | os.PathLike | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"kind must be one of {list(KINDS)}, got {self.kind!r}")
        for name in ("limit", "sample"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name}: expected an integer >= 1, got {value!r}")
        if isinstance(self.classes, str):  # "a,b" as the CLI takes it
            object.__setattr__(self, "classes", tuple(c.strip() for c in self.classes.split(",") if c.strip()))
        elif self.classes is not None:
            object.__setattr__(self, "classes", tuple(self.classes))

    def read(self, dataset: str | os.PathLike, exclude: str | os.PathLike | None) -> tuple[list[Sample], list[Sample]]:
        """(every sample, the chosen ones); ``exclude`` is a folder never read (the run's own output)."""
        if self.images is not None:
            raise DatasetError(f"{dataset}: --images names where a COCO file's images are (a detector's dataset); "
                               "a classifier's dataset lists its own images")
        everything = read_dataset(dataset, kind=self.kind, exclude=exclude)
        return everything, select(everything, classes=self.classes, limit=self.limit, sample=self.sample,
                                  seed=self.sample_seed)

    def read_boxes(self, dataset: str | os.PathLike,
                   exclude: str | os.PathLike | None) -> tuple[list[BoxSample], list[BoxSample]]:
        """(every image, the chosen ones) of a dataset with boxes, for a detector."""
        if self.kind not in BOX_DATASET_KINDS:
            raise DatasetError(f"{dataset}: a detector audits a COCO file, a YOLO folder or a folder of images "
                               f"(--kind {' / '.join(BOX_DATASET_KINDS)}), not --kind {self.kind}")
        everything = read_box_dataset(dataset, kind=self.kind, images=self.images, exclude=exclude)
        return everything, select(everything, classes=self.classes, limit=self.limit, sample=self.sample,
                                  seed=self.sample_seed)

    def label_mapping(self, model_path: Path, samples: Sequence[Sample]) -> dict[str, str] | None:
        """The label map as a dict: the one given, or the model's own when the samples have labels."""
        given = self.label_map
        if given is None and any(s.label is not None for s in samples):
            given = default_label_map(model_path)
        return dict(given) if isinstance(given, Mapping) else None if given is None else read_label_map(given)

    def resolver(self, classifier: Any, samples: Sequence[Sample]) -> LabelResolver:
        return LabelResolver(classifier.labels, classifier.num_classes,
                             self.label_mapping(classifier.files.model, samples))

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DatasetConfig":
        return from_dict(cls, data)


@dataclass(frozen=True)
class RunConfig:
    """How a run runs: the row ``engine`` (local threads or Ray), ``workers`` = inferences in flight for
    the whole run (None: what fills the device), ``ray`` (where and how wide, for the Ray engine) and
    ``restart`` (delete the run already in the folder first)."""

    engine: str = "local"
    workers: int | None = None
    ray: RayOptions = field(default_factory=RayOptions)
    restart: bool = False

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ConfigError(f"engine: expected one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.workers is not None and (isinstance(self.workers, bool) or self.workers < 1):
            raise ConfigError(f"workers: expected >= 1, got {self.workers}")

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunConfig":
        data = dict(data)
        if isinstance(data.get("ray"), Mapping):
            data["ray"] = RayOptions(**data["ray"])
        return from_dict(cls, data)

