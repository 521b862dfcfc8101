"""Metrics from predictions: accuracy per persona condition with bootstrap CIs, interference, helpful
gain, personalized accuracy, persona pull, the answers' letter distribution, mode behaviour, HAcc and
the calibration of p(mode | x)."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Sequence

from ..data.schema import OBJECTIVE_CONDITIONS
from ..scoring.mode_choice import balance, balanced_accuracy, hacc, separation
from ..scoring.predict import Prediction


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


PULL_CONDITIONS = ("misaligned", "helpful", "ambiguous")  # the conditions whose persona points to an option


def pull_target(p: Prediction) -> str | None:
    """The option a prediction's persona points to: gold for a helpful persona (a true signal), the
    item's ``persona_pull`` for a misaligned or ambiguous one; none for the other conditions."""
    if p.condition == "helpful":
        return p.gold
    return p.persona_pull if p.condition in PULL_CONDITIONS else None


def target_weight(p: Prediction, target: str) -> float:
    """How much of the answer goes to ``target``: its probability where the options were scored (choice),
    else 1 or 0 by whether the answer is it."""
    if p.option_probs is not None:
        return float(p.option_probs.get(target, 0.0))
    return float(p.answer == target)


def pull_differences(preds: Sequence[Prediction]) -> dict[str, list[float]]:
    """condition -> one difference per base question: weight on the persona's target with the persona,
    minus the same question's weight on that option with no persona.

    Why paired: the same question under ``none`` is the counterfactual, so what the question alone
    makes likely (an easy gold, a model's favourite letter) cancels, and what is left is the move the
    persona caused. Accuracy cannot show this near chance, where moving mass between wrong options
    and the target changes little; the target's probability still moves.
    """
    none = {p.base_id: p for p in preds if p.condition == "none" and p.base_id is not None}
    diffs: dict[str, list[float]] = defaultdict(list)
    for p in preds:
        target = pull_target(p)
        if target is not None and p.base_id in none:
            diffs[p.condition].append(target_weight(p, target) - target_weight(none[p.base_id], target))
    return diffs


def persona_pull(preds: Sequence[Prediction], n_boot: int = 1000, seed: int = 0) -> dict:
    """condition -> mean pull toward the persona's target with a paired bootstrap 95% CI (pairs resampled
    as units), and n; conditions without a target (irrelevant) or without paired items are absent."""
    diffs = pull_differences(preds)
    return {c: bootstrap_ci(diffs[c], n_boot, seed) for c in PULL_CONDITIONS if diffs.get(c)}


def paired_gap(preds: Sequence[Prediction], first: str, second: str, n_boot: int = 1000, seed: int = 0) -> dict | None:
    """Accuracy under ``first`` minus under ``second`` on the same questions, with a paired bootstrap 95% CI:
    interference is ``paired_gap(preds, "none", "misaligned")``, helpful gain ``(preds, "helpful", "none")``.
    Pairing by base question cancels what the question alone decides (an easy gold), as `pull_differences` does."""
    by: dict[str, dict[str, bool]] = defaultdict(dict)
    for p in preds:
        if p.base_id is not None and p.condition in (first, second):
            by[p.base_id][p.condition] = p.correct
    diffs = [float(c[first]) - float(c[second]) for c in by.values() if len(c) == 2]
    return bootstrap_ci(diffs, n_boot, seed)


def letter_distribution(preds: Sequence[Prediction]) -> dict:
    """The share of each option letter among the answers given, beside its share among the gold answers:
    a small model's first failure is often one letter for everything."""
    def shares(letters: list[str]) -> dict[str, float]:
        counts = defaultdict(int)
        for x in letters:
            counts[x] += 1
        return {k: round(v / len(letters), 4) for k, v in sorted(counts.items())}

    answered = [p for p in preds if p.answer is not None]
    answers = shares([p.answer for p in answered]) if answered else {}
    top = max(answers, key=answers.get, default=None)
    return {"answers": answers, "gold": shares([p.gold for p in preds]) if preds else {}, "n": len(answered),
            "one_option": top is not None and answers[top] > ONE_OPTION_SHARE}


ONE_OPTION_SHARE = 0.8  # answers one option on more than this share of the items: a constant, not a reading


def _diff(a: dict | None, b: dict | None) -> float | None:
    return round(a["mean"] - b["mean"], 4) if a and b else None


def summarize(preds: Sequence[Prediction], n_boot: int = 1000, plain: bool = False,
              unreadable: bool | None = None) -> dict:
    """Accuracy and mode behaviour for one set of (auto or forced) predictions. ``plain``: a model
    without modes, so no mode keys; ``unreadable`` (default: ``plain``) counts the replies no answer
    could be read from (a protocol that scores the options has none)."""
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
        "pull": persona_pull(preds, n_boot),
        "balanced_acc": balanced_accuracy(preds),
        "format_error_rate": round(1 - sum(p.well_formed for p in preds) / len(preds), 4) if preds else None,
        "preferred_mode_agreement": round(sum(p.mode == p.preferred_mode for p in preds) / len(preds), 4) if preds else None,
        "mode_share": {c: {m: round(k / sum(v.values()), 4) for m, k in sorted(v.items())} for c, v in sorted(mode_share.items())},
    }
    if plain:
        del out["preferred_mode_agreement"], out["mode_share"]
    if plain if unreadable is None else unreadable:
        bad = sum(not p.well_formed for p in preds)
        out["unreadable"] = {"n": bad, "rate": round(bad / len(preds), 4) if preds else None}
    return out


def compute_metrics(runs: dict[str, list[Prediction]], n_boot: int = 1000, protocol: str = "modes",
                    modes: bool | None = None) -> dict:
    """All metrics for a model: auto mode overall and per family, plus forced-mode runs when present.
    ``protocol="plain"``: a model without modes (the same accuracy metrics, no mode metrics).
    ``modes``: whether the predictions carry modes (default: the modes protocol's do); the choice
    protocol has them on a mode model and never has unreadable answers."""
    auto = runs["auto"]
    plain = protocol == "plain" if modes is None else not modes
    out = {"protocol": protocol, **summarize(auto, n_boot, plain, unreadable=protocol == "plain")}
    out["letters"] = letter_distribution(auto)
    out["per_family"] = {}
    for fam in sorted({p.family for p in auto}):
        s = summarize([p for p in auto if p.family == fam], n_boot=200, plain=plain, unreadable=False)
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
        out["forced"] = {m: {k: v for k, v in summarize(runs[m], n_boot=200).items()
                             if k in ("acc", "personalized_acc", "pull")} for m in forced}
    return out
