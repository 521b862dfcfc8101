"""Accuracy per persona condition, and balanced accuracy: the one number that weighs objective and
personalized items alike, so a model cannot win it by serving one kind and failing the other."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Sequence

from ...data.schema import OBJECTIVE_CONDITIONS
from ..predictions import Prediction
from .intervals import bootstrap_ci


def accuracy_by_condition(preds: Sequence[Prediction], n_boot: int = 1000) -> dict:
    """condition -> accuracy with a bootstrap CI, the objective conditions then the personalized items."""
    by = defaultdict(list)
    for p in preds:
        by[p.condition].append(p.correct)
    return {c: bootstrap_ci(by[c], n_boot) for c in (*OBJECTIVE_CONDITIONS, "personalized") if by[c]}


def rounded_accuracy_by_condition(preds: Sequence[Prediction]) -> dict[str, float]:
    """condition -> accuracy (4 places), every condition present, in name order: no interval, for a check
    run many times during training (the SFT separation callback's forced runs)."""
    by = defaultdict(list)
    for p in preds:
        by[p.condition].append(p.correct)
    return {c: round(sum(v) / len(v), 4) for c, v in sorted(by.items())}


def balance(by_condition: dict[str, float]) -> float | None:
    """Mean of (the objective conditions' values averaged) and the personalized value, where present."""
    obj = [v for c, v in by_condition.items() if c in OBJECTIVE_CONDITIONS]
    parts = ([sum(obj) / len(obj)] if obj else []) + ([by_condition["personalized"]] if "personalized" in by_condition else [])
    return sum(parts) / len(parts) if parts else None


def balanced_accuracy(preds: Sequence[Prediction]) -> float | None:
    """Mean of (objective accuracy averaged over persona conditions) and personalized accuracy."""
    by = defaultdict(list)
    for p in preds:
        by[p.condition].append(p.correct)
    b = balance({c: sum(xs) / len(xs) for c, xs in by.items()})
    return round(b, 4) if b is not None else None


def paired_balanced_diff(a: dict[str, tuple[str, bool]], b: dict[str, tuple[str, bool]], n_boot: int = 1000,
                         seed: int = 0, level: float = 0.95) -> dict | None:
    """Balanced accuracy of model ``a`` minus model ``b`` on the same items, with a paired bootstrap CI.

    ``a`` and ``b`` map item id -> (condition, correct). Balanced accuracy is linear in per-item
    correctness, so the difference is the same average taken over d_i = a_i - b_i: half the mean over
    objective conditions of each condition's mean d, half the personalized mean d. Items are resampled
    within each condition, the same items for both models, so what the two share (a hard item) cancels.
    """
    strata: dict[str, list[float]] = defaultdict(list)
    for i in sorted(a.keys() & b.keys()):
        strata[a[i][0]].append(float(a[i][1]) - float(b[i][1]))
    if not strata:
        return None

    def stat(groups: dict[str, list[float]]) -> float:
        return balance({c: sum(d) / len(d) for c, d in groups.items()})

    rng = random.Random(seed)
    boots = sorted(stat({c: [rng.choice(d) for _ in d] for c, d in strata.items()}) for _ in range(n_boot))
    lo, hi = boots[int((1 - level) / 2 * n_boot)], boots[int((1 + level) / 2 * n_boot) - 1]
    return {"mean": round(stat(strata), 4), "lo": round(lo, 4), "hi": round(hi, 4), "n": sum(map(len, strata.values()))}
