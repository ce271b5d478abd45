"""Which case a prediction falls into, and which classes to explain for it: pure rules.

The first four cases are the seed notebook's; the others complete the partition so every image
lands in exactly one case:

=================================== ===============================================================
case                                rule (``p1``/``p2``: top-1/top-2 probability, ``gt``: truth)
=================================== ===============================================================
True_positive_two_predictions       ``gt`` is top-1 or top-2 and ``p2 >= two_predictions``
True_positive_high_confidence       top-1 is ``gt`` and ``p1 >= high_confidence``
True_positive_low_confidence        top-1 is ``gt`` and ``p1 <  high_confidence``
False_positive_high_confidence      top-1 is not ``gt`` and ``p1 >= high_confidence``
False_positive_low_confidence       top-1 is not ``gt`` and ``p1 <  high_confidence``
No_ground_truth_two_predictions     no label and ``p2 >= two_predictions``
No_ground_truth_high_confidence     no label and ``p1 >= high_confidence``
No_ground_truth_low_confidence      no label and ``p1 <  high_confidence``
=================================== ===============================================================

Rules are checked top to bottom. Defaults: ``high_confidence = 0.5`` — from there the top class
holds more probability than all others together, so "confident" means the same for 10 or 1000
classes; the seed's high-confidence examples sit at 0.78-0.98 and its low ones at 0.18-0.20.
``two_predictions = 0.2`` — a runner-up with a fifth of the mass is a real competitor (the
seed's examples have runners-up at 0.30 and 0.39), while 0.05-0.15 runners-up are ordinary on
1000-class models.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

TP_HIGH = "True_positive_high_confidence"
TP_LOW = "True_positive_low_confidence"
FP_HIGH = "False_positive_high_confidence"
FP_LOW = "False_positive_low_confidence"
TP_TWO = "True_positive_two_predictions"
NO_GT_HIGH = "No_ground_truth_high_confidence"
NO_GT_LOW = "No_ground_truth_low_confidence"
NO_GT_TWO = "No_ground_truth_two_predictions"

#: Every case, in the order reports list them.
CASES = (TP_HIGH, TP_LOW, TP_TWO, FP_HIGH, FP_LOW, NO_GT_HIGH, NO_GT_LOW, NO_GT_TWO)

#: Why a class is explained for an image.
ROLE_PREDICTED, ROLE_RUNNER_UP, ROLE_GROUND_TRUTH = "predicted", "runner_up", "ground_truth"


@dataclass(frozen=True)
class CaseThresholds:
    """The two probabilities the rules compare against (see the module docstring)."""

    high_confidence: float = 0.5
    two_predictions: float = 0.2

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name}: expected a probability in (0, 1], got {value!r}")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class CaseDecision:
    """The case of one image and the classes to explain, each with its role."""

    case: str
    targets: tuple[tuple[int, str], ...]  # (class index, role)


def classify_case(probabilities: np.ndarray, ground_truth: int | None,
                  thresholds: CaseThresholds = CaseThresholds()) -> CaseDecision:
    """Apply the case rules to one probability vector."""
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 1 or probabilities.size < 2:
        raise ValueError(f"probabilities: expected shape (num_classes >= 2,), got {probabilities.shape}")
    order = np.argsort(-probabilities, kind="stable")
    first, second = int(order[0]), int(order[1])
    p1, p2 = float(probabilities[first]), float(probabilities[second])
    two = p2 >= thresholds.two_predictions
    high = p1 >= thresholds.high_confidence
    predicted = ((first, ROLE_PREDICTED),)
    both = ((first, ROLE_PREDICTED), (second, ROLE_RUNNER_UP))
    if ground_truth is None:
        if two:
            return CaseDecision(NO_GT_TWO, both)
        return CaseDecision(NO_GT_HIGH if high else NO_GT_LOW, predicted)
    if not 0 <= ground_truth < probabilities.size:
        raise ValueError(f"ground_truth: class {ground_truth} out of range 0..{probabilities.size - 1}")
    if two and ground_truth in (first, second):
        return CaseDecision(TP_TWO, both)
    if first == ground_truth:
        return CaseDecision(TP_HIGH if high else TP_LOW, predicted)
    return CaseDecision(FP_HIGH if high else FP_LOW, ((first, ROLE_PREDICTED), (ground_truth, ROLE_GROUND_TRUTH)))
