"""Mode-choice metrics: HAcc (did the model pick the mode that pays?) and balanced accuracy.

HAcc needs forced runs: each item is answered once in every mode (greedy). An item is *decisive*
when the modes disagree on correctness; HAcc is the share of decisive items where the auto-mode
choice is the mode that got it right. Ties (both right or both wrong) say nothing about the choice
and are reported separately as ``tie_share``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import replace
from typing import Sequence

import torch

from ..data.schema import OBJECTIVE_CONDITIONS, Item
from ..engine import Engine, GenerationConfig, choose_modes
from ..modes import AUTO
from .predict import Prediction, predict


def runs_by_mode(engine: Engine, items: Sequence[Item], config: GenerationConfig | None = None,
                 drop_persona: bool = False, progress=None) -> dict[str, list[Prediction]]:
    """Auto-mode predictions plus one forced run per registered mode, aligned item by item.

    An auto response opens with the marker the model chooses from p(mode | x) and continues exactly
    as that mode's forced response (`choose_modes`), so the auto run is assembled from the forced
    runs rather than generated a third time: each auto prediction *is* the chosen mode's forced one,
    and HAcc compares like with like. p(mode | x) is read before any marker, so the first forced run
    computes it and the others reuse it. ``progress`` is told each generation batch's size.
    """
    cfg = config or GenerationConfig()
    runs: dict[str, list[Prediction]] = {}
    p_mode = None
    for name in engine.modes.names:
        runs[name] = predict(engine, items, name, cfg, drop_persona=drop_persona, p_mode=p_mode, progress=progress)
        if p_mode is None:
            p_mode = [[p.p_mode[m] for m in engine.modes.names] for p in runs[name]]
    return with_auto_run(runs, engine.modes.names, cfg.temperature, cfg.seed)


def with_auto_run(runs: dict[str, list[Prediction]], names: Sequence[str], temperature: float = 0.0,
                  seed: int | None = None) -> dict[str, list[Prediction]]:
    """Forced runs (aligned item by item) plus the auto run assembled from them: each item's auto
    prediction is the forced prediction of the mode the model chooses from p(mode | x) (`choose_modes`).
    p(mode | x) and the marker mass come from the first mode's run (they are read before any marker,
    so every run has the same ones; a server may round them differently per request)."""
    first = runs[names[0]]
    p_mode = [[p.p_mode[m] for m in names] for p in first]
    runs = {m: [replace(p, marker_mass=first[i].marker_mass, p_mode=first[i].p_mode) for i, p in enumerate(preds)]
            for m, preds in runs.items()}
    if seed is not None:
        torch.manual_seed(seed)
    chosen = choose_modes(p_mode, list(names), temperature) if first else []
    return {"auto": [replace(runs[c][i], requested_mode=AUTO) for i, c in enumerate(chosen)], **runs}


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
    mode: both numbers near zero, and DualGRPO's mode comparison has nothing to learn from.
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


DEGENERATE_BELOW = 0.05  # decisive share on val: separated dual models of the tiny recipe sit at 27-84%, collapsed ones at 1-2%


def is_degenerate(sep: dict, min_decisive_share: float = DEGENERATE_BELOW) -> bool:
    """A dual model whose modes (almost) never disagree: fewer than ``min_decisive_share`` decisive items.

    Separation comes on suddenly during SFT (a few items for many steps, then a third of them within
    25 steps), so a model is either well above the line or on the floor; the line sits between."""
    return (sep.get("decisive_share") or 0.0) < min_decisive_share


def misreads_helpful_personas(forced_personalized_helpful_acc: float | None, min_acc: float = 0.9) -> bool:
    """A personalized mode that, forced onto helpful personas (whose text names the gold option), answers
    fewer than ``min_acc`` of them right: it cannot read the persona, so choosing it gains nothing, and a
    helpful-persona gain cannot be expected from the model. Reading a named option is the mode's easiest
    job; on PersonaBench a sound model is right on 95-100% of them."""
    return forced_personalized_helpful_acc is not None and forced_personalized_helpful_acc < min_acc


# objective items whose persona has nothing reliable to give (none, off-topic, a wrong pull, self-contradicting)
SET_ASIDE_CONDITIONS = ("none", "irrelevant", "misaligned", "ambiguous")
MISPLACED_ABOVE = 0.2  # personalized share on those: sound dual models of the tiny recipe choose it on 0-8% of them


def misplaced_personalized_share(mode_share: dict[str, dict[str, float]]) -> tuple[str, float] | None:
    """(condition, share): the set-aside condition where auto mode picks the personalized mode most often.

    On an objective item with no persona, an irrelevant, a misaligned or a self-contradicting one, the
    general mode is the right choice; the personalized mode can only follow the persona there. ``mode_share`` maps a
    condition to its auto-mode shares (`metrics.json`'s ``mode_share``); None without such conditions."""
    shares = [(c, mode_share[c].get("personalized", 0.0)) for c in SET_ASIDE_CONDITIONS if c in mode_share]
    return max(shares, key=lambda cs: cs[1]) if shares else None


def misplaces_personalized_mode(worst: tuple[str, float] | None, max_share: float = MISPLACED_ABOVE) -> bool:
    """A model that chooses the personalized mode on more than ``max_share`` of a set-aside condition's
    items (`misplaced_personalized_share`): its mode choice has spread onto personas it should ignore,
    as an RL run can, after an SFT start that was sound, and that condition's accuracy pays for it."""
    return worst is not None and worst[1] > max_share


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


def mode_check(model, tok, modes, eval_data: str, limit: int, chat_template_kwargs: dict | None = None) -> dict:
    """HAcc, balanced accuracy and the quick summary on a fixed val sample (end of an RL run)."""
    from ..data.schema import read_split, sample_items
    from .predict import quick_summary

    model.eval()
    items = sample_items(read_split(eval_data, "val"), limit)
    runs = runs_by_mode(Engine(model, tok, modes, dict(chat_template_kwargs or {})), items, GenerationConfig(max_new_tokens=64))
    result = {**hacc(runs), "balanced_acc": balanced_accuracy(runs["auto"]), **quick_summary(runs["auto"])}
    print(f"[check] HAcc {result['hacc']} (decisive {result['decisive']}), balanced acc {result['balanced_acc']}, "
          f"acc {result['acc']}, personalized {result['personalized_acc']}")
    return result
