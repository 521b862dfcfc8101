"""Mode-choice metrics, from forced runs (every item answered once in each mode, greedy) beside the auto run.

HAcc: did the model pick the mode that pays? An item is *decisive* when the modes disagree on
correctness; HAcc is the share of decisive items where the auto-mode choice is the mode that got it
right. Ties (both right or both wrong) say nothing about the choice and are reported separately as
``tie_share``. Separation: how far apart the forced modes are at all, what DualGRPO's mode comparison
needs. Calibration: how well p(mode | x) predicts which mode is the better one.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from ..predictions import Prediction


def hacc(runs: dict[str, list[Prediction]]) -> dict:
    """HAcc, the decisive count and tie share, and ``hacc_cell_oracle``: the HAcc of the best policy
    that picks one mode per (task family, persona condition), chosen with hindsight on these items.

    The oracle separates two kinds of miss. Where one mode is systematically better in a cell, a
    miss is a choice the model could learn. Where both modes solve the items and differ only in
    which one happens to err, no choice made before answering can beat the cell's majority, so
    HAcc near the oracle means the model chooses about as well as anything that cannot foresee its
    own item-level errors (docs/lab_notebook.md, "HAcc stops below 90 on the tiny model, near what any mode
    policy could reach").
    """
    mode_names = [k for k in runs if k != "auto"]
    hits = decisive = ties = 0
    wins: dict[tuple, Counter] = defaultdict(Counter)  # (family, condition) -> the right mode's counts
    for i, auto in enumerate(runs["auto"]):
        right = {m for m in mode_names if runs[m][i].correct}
        if len(right) in (0, len(mode_names)):
            ties += 1
            continue
        decisive += 1
        hits += auto.mode in right
        wins[auto.family, auto.condition].update(right)
    n = len(runs["auto"])
    oracle = sum(max(c.values()) for c in wins.values())
    return {"hacc": round(hits / decisive, 4) if decisive else None, "decisive": decisive,
            "tie_share": round(ties / n, 4) if n else None,
            "hacc_cell_oracle": round(oracle / decisive, 4) if decisive else None}


def separation(runs: dict[str, list[Prediction]]) -> dict:
    """How far apart the forced modes are: what forced exploration in RL has to compare.

    ``answers_differ``: per condition, the share of items whose forced answers differ between the
    modes (on misaligned items a separated model's personalized mode follows the persona and its
    general mode solves). ``decisive``: items where the modes differ in correctness (HAcc's
    denominator). A dual model whose marker does not steer its reasoning answers the same in every
    mode: both numbers near zero, and DualGRPO's mode comparison has nothing to learn from
    (`verdicts.is_degenerate`).
    """
    mode_names = [k for k in runs if k != "auto"]
    n = len(runs[mode_names[0]]) if mode_names else 0
    differ: dict[str, list[bool]] = defaultdict(list)
    decisive = 0
    for i in range(n):
        preds = [runs[m][i] for m in mode_names]
        differ[preds[0].condition].append(len({p.answer for p in preds}) > 1)
        decisive += len({p.correct for p in preds}) > 1
    return {"decisive": decisive, "decisive_share": round(decisive / n, 4) if n else None, "n": n,
            "answers_differ": {c: round(sum(v) / len(v), 4) for c, v in sorted(differ.items())}}


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
