"""Metrics from predictions: accuracy per persona condition with bootstrap CIs, interference, helpful
gain, personalized accuracy, mode behaviour, HAcc and the calibration of p(mode | x)."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Sequence

from ..data.schema import OBJECTIVE_CONDITIONS
from .mode_choice import balance, balanced_accuracy, hacc, separation
from .predict import Prediction


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


def accuracy_by_condition(preds: Sequence[Prediction], n_boot: int = 1000) -> dict:
    by = defaultdict(list)
    for p in preds:
        by[p.condition].append(p.correct)
    return {c: bootstrap_ci(by[c], n_boot) for c in (*OBJECTIVE_CONDITIONS, "personalized") if by[c]}


def calibration(runs: dict[str, list[Prediction]], mode: str = "personalized", bins: int = 10) -> dict | None:
    """How well p(mode | x) predicts "this mode is the better one" on decisive items: ECE and Brier."""
    others = [m for m in runs if m not in ("auto", mode)]
    if mode not in runs or not others:
        return None
    pairs = []
    for i, auto in enumerate(runs["auto"]):
        mine, theirs = runs[mode][i].correct, any(runs[m][i].correct for m in others)
        if mine != theirs:
            pairs.append((auto.p_mode.get(mode, 0.0), float(mine)))
    if not pairs:
        return None
    brier = sum((p - y) ** 2 for p, y in pairs) / len(pairs)
    table, ece = [], 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        sel = [(p, y) for p, y in pairs if lo <= p < hi or (b == bins - 1 and p == 1.0)]
        if sel:
            conf, acc = sum(p for p, _ in sel) / len(sel), sum(y for _, y in sel) / len(sel)
            ece += len(sel) / len(pairs) * abs(conf - acc)
            table.append({"bin": [lo, hi], "confidence": round(conf, 4), "frequency": round(acc, 4), "n": len(sel)})
    return {"ece": round(ece, 4), "brier": round(brier, 4), "n": len(pairs), "bins": table}


def _diff(a: dict | None, b: dict | None) -> float | None:
    return round(a["mean"] - b["mean"], 4) if a and b else None


def summarize(preds: Sequence[Prediction], n_boot: int = 1000, plain: bool = False) -> dict:
    """Accuracy and mode behaviour for one set of (auto or forced) predictions. ``plain``: a model
    without modes, so no mode keys; ``unreadable`` counts the replies no answer could be read from."""
    acc = accuracy_by_condition(preds, n_boot)
    mode_share = defaultdict(lambda: defaultdict(int))
    for p in preds:
        mode_share[p.condition][p.mode or "none"] += 1
    out = {
        "n": len(preds),
        "acc": {c: v for c, v in acc.items() if c != "personalized"},
        "personalized_acc": acc.get("personalized"),
        "interference": {"misaligned": _diff(acc.get("none"), acc.get("misaligned")),
                         "irrelevant": _diff(acc.get("none"), acc.get("irrelevant"))},
        "helpful_gain": _diff(acc.get("helpful"), acc.get("none")),
        "balanced_acc": balanced_accuracy(preds),
        "format_error_rate": round(1 - sum(p.well_formed for p in preds) / len(preds), 4) if preds else None,
        "preferred_mode_agreement": round(sum(p.mode == p.preferred_mode for p in preds) / len(preds), 4) if preds else None,
        "mode_share": {c: {m: round(k / sum(v.values()), 4) for m, k in sorted(v.items())} for c, v in sorted(mode_share.items())},
    }
    if plain:
        del out["preferred_mode_agreement"], out["mode_share"]
        bad = sum(not p.well_formed for p in preds)
        out["unreadable"] = {"n": bad, "rate": round(bad / len(preds), 4) if preds else None}
    return out


def compute_metrics(runs: dict[str, list[Prediction]], n_boot: int = 1000, protocol: str = "modes") -> dict:
    """All metrics for a model: auto mode overall and per family, plus forced-mode runs when present.
    ``protocol="plain"``: a model without modes (the same accuracy metrics, no mode metrics)."""
    auto, plain = runs["auto"], protocol == "plain"
    out = {"protocol": protocol, **summarize(auto, n_boot, plain)}
    out["per_family"] = {}
    for fam in sorted({p.family for p in auto}):
        s = summarize([p for p in auto if p.family == fam], n_boot=200, plain=plain)
        keys = ("acc", "personalized_acc", "interference", "helpful_gain") + (() if plain else ("mode_share",))
        out["per_family"][fam] = {k: s[k] for k in keys}
    masses = [p.marker_mass for p in auto if p.marker_mass is not None]
    if masses:  # how much of the first token's probability the markers hold: RL's marker leak (trap 4)
        out["marker_mass"] = {"mean": round(sum(masses) / len(masses), 4), "min": round(min(masses), 4),
                              "below_half": round(sum(m < 0.5 for m in masses) / len(masses), 4)}
    forced = [m for m in runs if m != "auto"]
    if forced:
        out.update(hacc(runs))
        out["separation"] = separation(runs)
        out["calibration"] = calibration(runs)
        out["forced"] = {m: {k: v for k, v in summarize(runs[m], n_boot=200).items() if k in ("acc", "personalized_acc")}
                         for m in forced}
    return out
