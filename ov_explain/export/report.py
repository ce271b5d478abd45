"""What an export did: the result every destination returns (and the CLI and ``--json`` print)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Progress callback: (objects or samples done, total).
Progress = Callable[[int, int], None]


@dataclass
class ExportReport:
    """One export: where to, what, how much was uploaded or already there, how long, what failed."""

    destination: str  # the URL or fiftyone:NAME, without credentials
    kind: str  # "audit" or "drift"
    images: int
    maps: int
    objects: int  # files or objects the destination holds for this export (maps, images, locators)
    uploaded: int  # written by this run
    unchanged: int  # already there with the same bytes: skipped
    bytes_uploaded: int
    seconds: float
    failed: list[str] = field(default_factory=list)  # one line each; re-running the export retries them
    locators: str | None = None  # object storage: the locators.jsonl URL (None until every object is there)
    dataset: str | None = None  # FiftyOne: the dataset's name
    samples: int | None = None  # FiftyOne: samples in the dataset

    def __post_init__(self) -> None:
        if self.uploaded + self.unchanged + len(self.failed) > self.objects:
            raise ValueError(f"{self.uploaded} uploaded + {self.unchanged} unchanged + {len(self.failed)} failed "
                             f"exceed the {self.objects} objects")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
