"""Means with percentile bootstrap CIs, and the paired differences the studies' claims rest on.

Pairing is what makes a small test set say something: the same question (or the same item) on both
sides of a difference, resampled as one unit, so what the question alone decides (an easy gold, a
hard passage) cancels and only the change being measured is left.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Sequence

from ..predictions import Prediction


def bootstrap_ci(xs: Sequence[bool | float], n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict | None:
    """Mean with a percentile bootstrap CI."""
    if not xs:
        return None
    xs = [float(x) for x in xs]
    rng = random.Random(seed)
    n = len(xs)
    means = sorted(sum(rng.choice(xs) for _ in range(n)) / n for _ in range(n_boot))
    lo, hi = means[int((1 - level) / 2 * n_boot)], means[int((1 + level) / 2 * n_boot) - 1]
    return {"mean": round(sum(xs) / n, 4), "lo": round(lo, 4), "hi": round(hi, 4), "n": n}


def paired_condition_diff(correct: dict[str, tuple[str, bool]], cond_a: str, cond_b: str, n_boot: int = 1000,
                          seed: int = 0, level: float = 0.95) -> dict | None:
    """One model's accuracy under ``cond_a`` minus under ``cond_b``, on the same questions, with a paired
    bootstrap CI (interference is none - misaligned; the helpful gain helpful - none).

    ``correct`` maps item id -> (condition, correct). PersonaBench asks each question under every
    condition, as ``<question>-<condition>``; the questions asked under both are resampled, so a
    question's own difficulty cancels and only what the persona changed is left. None when no question
    is asked under both. (The same resampling as `bootstrap_ci`, over the per-question differences.)
    """
    by_question: dict[str, dict[str, float]] = defaultdict(dict)
    for i, (cond, ok) in correct.items():
        if cond in (cond_a, cond_b) and i.endswith("-" + cond):
            by_question[i[: -len(cond) - 1]][cond] = float(ok)
    return bootstrap_ci([q[cond_a] - q[cond_b] for _, q in sorted(by_question.items()) if len(q) == 2], n_boot, seed, level)


def paired_item_diff(a: dict[str, tuple[str, bool]], b: dict[str, tuple[str, bool]], condition: str,
                     n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict | None:
    """Model ``a``'s accuracy minus model ``b``'s on the items of one condition both answered, paired bootstrap CI."""
    return bootstrap_ci([float(a[i][1]) - float(b[i][1]) for i in sorted(a.keys() & b.keys()) if a[i][0] == condition],
                        n_boot, seed, level)


def paired_gap(preds: Sequence[Prediction], first: str, second: str, n_boot: int = 1000, seed: int = 0) -> dict | None:
    """Accuracy under ``first`` minus under ``second`` on the same questions, with a paired bootstrap 95% CI:
    interference is ``paired_gap(preds, "none", "misaligned")``, helpful gain ``(preds, "helpful", "none")``.
    Pairing by base question cancels what the question alone decides (an easy gold), as `pull.pull_differences` does."""
    by: dict[str, dict[str, bool]] = defaultdict(dict)
    for p in preds:
        if p.base_id is not None and p.condition in (first, second):
            by[p.base_id][p.condition] = p.correct
    diffs = [float(c[first]) - float(c[second]) for c in by.values() if len(c) == 2]
    return bootstrap_ci(diffs, n_boot, seed)
