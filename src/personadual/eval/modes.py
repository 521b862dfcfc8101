"""Mode-choice metrics: HAcc (did the model pick the mode that pays?) and balanced accuracy.

HAcc needs forced runs: each item is answered once in every mode (greedy). An item is *decisive*
when the modes disagree on correctness; HAcc is the share of decisive items where the auto-mode
choice is the mode that got it right. Ties (both right or both wrong) say nothing about the choice
and are reported separately as ``tie_share``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from ..data.schema import OBJECTIVE_CONDITIONS, Item
from ..generation import Engine, GenerationConfig
from .predict import Prediction, predict


def runs_by_mode(engine: Engine, items: Sequence[Item], config: GenerationConfig | None = None) -> dict[str, list[Prediction]]:
    """Auto-mode predictions plus one forced run per registered mode, aligned item by item."""
    runs = {"auto": predict(engine, items, "auto", config)}
    for name in engine.modes.names:
        runs[name] = predict(engine, items, name, config)
    return runs


def hacc(runs: dict[str, list[Prediction]]) -> dict:
    mode_names = [k for k in runs if k != "auto"]
    hits = decisive = ties = 0
    for i, auto in enumerate(runs["auto"]):
        right = {m for m in mode_names if runs[m][i].correct}
        if len(right) in (0, len(mode_names)):
            ties += 1
            continue
        decisive += 1
        hits += auto.mode in right
    n = len(runs["auto"])
    return {"hacc": round(hits / decisive, 4) if decisive else None, "decisive": decisive,
            "tie_share": round(ties / n, 4) if n else None}


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


def mode_check(model, tok, modes, eval_data: str, limit: int) -> dict:
    """HAcc, balanced accuracy and the quick summary on a fixed val sample (end of an RL run)."""
    from ..data.schema import read_split, sample_items
    from .predict import quick_summary

    model.eval()
    items = sample_items(read_split(eval_data, "val"), limit)
    runs = runs_by_mode(Engine(model, tok, modes), items, GenerationConfig(max_new_tokens=64))
    result = {**hacc(runs), "balanced_acc": balanced_accuracy(runs["auto"]), **quick_summary(runs["auto"])}
    print(f"[check] HAcc {result['hacc']} (decisive {result['decisive']}), balanced acc {result['balanced_acc']}, "
          f"acc {result['acc']}, personalized {result['personalized_acc']}")
    return result
