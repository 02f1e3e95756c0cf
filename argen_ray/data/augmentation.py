"""How many generated clips each scarce class gets (DESIGN 2.5, "How much to augment").

Per scarce class c with n_c real training clips: g_c = max(0, ceil(gamma * m) - n_c), m = the
median training count of the non-scarce classes; explicit per-class counts override. Generated
clips never outnumber the real training clips: when the total would, every class's amount is
scaled down by the same factor (rounded down) and the result says so.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from argen_ray.errors import ArgenError


class AugmentationError(ArgenError, ValueError):
    """Augmentation amounts cannot be computed from these counts or overrides."""


@dataclass
class AugmentationPlan:
    """Generated clips per scarce class, and the numbers they came from."""

    amounts: dict[str, int]
    real: dict[str, int]                 # training count of every class
    median_non_scarce: float
    gamma: float
    overridden: list[str] = field(default_factory=list)
    capped_from: int | None = None       # the total before capping at the real training count

    def table(self, generated: Mapping[str, int] | None = None) -> list[dict]:
        """Per class: real, generated (planned, or `generated` when given) and share of the
        augmented training set."""
        made = dict(self.amounts) if generated is None else dict(generated)
        total = sum(self.real.values()) + sum(made.values())
        return [{"class": c, "real": n, "generated": made.get(c, 0),
                 "share": round((n + made.get(c, 0)) / total, 4) if total else 0.0} for c, n in self.real.items()]

    def as_dict(self) -> dict:
        return {"amounts": self.amounts, "real": self.real, "median_non_scarce": self.median_non_scarce,
                "gamma": self.gamma, "overridden": self.overridden, "capped_from": self.capped_from,
                "table": self.table()}


def augmentation_amounts(train_counts: Mapping[str, int], scarce: Sequence[str], gamma: float = 1.0,
                         per_class: Mapping[str, int] | None = None) -> AugmentationPlan:
    """g_c for every scarce class from the training counts (every class, scarce or not)."""
    per_class = dict(per_class or {})
    unknown = sorted(set(scarce) - set(train_counts)) + sorted(set(per_class) - set(scarce))
    if unknown:
        raise AugmentationError(f"augmentation: class(es) {unknown} are not scarce classes with training counts "
                                f"(scarce: {list(scarce)}; counted: {list(train_counts)})")
    if gamma < 0 or any(int(v) < 0 for v in per_class.values()):
        raise AugmentationError(f"augmentation: gamma ({gamma}) and per-class counts ({per_class}) must be >= 0")
    others = [int(n) for c, n in train_counts.items() if c not in scarce]
    if not others:
        raise AugmentationError("augmentation: every class is scarce, so there is no median of non-scarce classes")
    m = float(np.median(others))
    target = math.ceil(round(gamma * m, 9))  # round: 1.1 * 10 must give 11, not 12
    amounts = {c: int(per_class[c]) if c in per_class else max(0, target - int(train_counts[c])) for c in scarce}
    real_total, planned = sum(int(n) for n in train_counts.values()), sum(amounts.values())
    capped = None
    if planned > real_total:
        capped, scale = planned, real_total / planned
        amounts = {c: int(math.floor(g * scale)) for c, g in amounts.items()}
    return AugmentationPlan(amounts, {c: int(n) for c, n in train_counts.items()}, m, float(gamma),
                            sorted(per_class), capped)


def clips_per_row(row_classes: Sequence[str], amounts: Mapping[str, int]) -> list[int]:
    """How many clips each prompt row makes so that class c gets exactly amounts[c] clips, spread
    as evenly as possible over the class's rows (each row's clips use seeds seed..seed+k-1)."""
    seen: dict[str, int] = {}
    totals = {c: sum(1 for r in row_classes if r == c) for c in set(row_classes)}
    missing = sorted(c for c, g in amounts.items() if g > 0 and not totals.get(c))
    if missing:
        raise AugmentationError(f"augmentation: no prompts for scarce class(es) {missing}; "
                                "run `argen-ray prompts` with them (data.scarce_classes)")
    out = []
    for c in row_classes:
        i = seen.get(c, 0)
        seen[c] = i + 1
        g = int(amounts.get(c, 0))
        out.append(g // totals[c] + (1 if i < g % totals[c] else 0))
    return out


__all__ = ["AugmentationError", "AugmentationPlan", "augmentation_amounts", "clips_per_row"]
