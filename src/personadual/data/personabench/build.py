"""Build PersonaBench: train/val/test JSONL and stats.json, byte-identical for the same config.

Train draws one persona condition per base question (weighted). An optional ``rl`` split
(``rl_bases`` > 0) is drawn the same way from the same vocabulary, on base questions of its own:
prompts for stage 2 that stage 1 never trained on (see `BenchConfig.rl_bases`). Val and test are paired: each
base question appears under none / irrelevant / misaligned / helpful (and a third of them under
ambiguous), so interference and helpful gain are measured on the same questions. Val/test use
held-out names, roles and persona frames (see `vocab.pools`).
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..schema import Item, Trace, write_items
from . import vocab
from .families import FAMILIES
from .personas import persona_for, preference_item

SPLITS = ("train", "rl", "val", "test")
PAIRED_CONDITIONS = ("none", "irrelevant", "misaligned", "helpful")


@dataclass
class BenchConfig:
    """Generator knobs. Calibrate difficulty here, never by editing a built split."""

    seed: int = 0
    families: tuple[str, ...] = ("lookup", "compare", "arith", "convert")
    # difficulty range per family, inclusive: facts (lookup), people (compare), addends (arith),
    # number size (convert)
    difficulty: dict = field(default_factory=lambda: {"lookup": [3, 5], "compare": [3, 5], "arith": [2, 3], "convert": [1, 2]})
    train_bases: int = 1500  # base questions per family in train (one condition each)
    # base questions per family in the rl split (0 = no rl split): drawn like train, from train's vocabulary and
    # condition weights, on questions of their own. RL on the SFT data itself sees rewards of memorised items
    # (the general mode solves a trained item it would fail on a new one), which hides what each mode is worth.
    rl_bases: int = 0
    eval_bases: dict = field(default_factory=lambda: {"val": 25, "test": 50})  # per family, paired
    personalized: dict = field(default_factory=lambda: {"train": 1500, "val": 100, "test": 200})
    rl_personalized: int = 0  # personalized items in the rl split
    rl_condition_weights: dict | None = None  # the rl split's persona conditions (None: train's weights)
    train_condition_weights: dict = field(
        default_factory=lambda: {"none": 0.25, "irrelevant": 0.2, "misaligned": 0.25, "helpful": 0.25, "ambiguous": 0.05}
    )
    ambiguous_every: int = 3  # in val/test, every k-th base question also gets an ambiguous persona

    def __post_init__(self):
        unknown = set(self.families) - set(FAMILIES)
        if unknown:
            raise ValueError(f"families: unknown {sorted(unknown)}; known: {sorted(FAMILIES)}")
        for fam in self.families:
            lo, hi = self.difficulty.get(fam, (None, None))
            if lo is None or not 1 <= lo <= hi:
                raise ValueError(f"difficulty.{fam}: need [lo, hi] with 1 <= lo <= hi, got {self.difficulty.get(fam)}")
        for name in ("train_condition_weights", "rl_condition_weights"):
            weights = getattr(self, name)
            if weights is not None and abs(sum(weights.values()) - 1) > 1e-6:
                raise ValueError(f"{name} must sum to 1")


def preferred_mode(condition: str) -> str:
    """The paper's labelling: personalized for personalized items and helpful personas, else general."""
    return "personalized" if condition in ("helpful", "personalized") else "general"


def _objective_item(split, fam, i, condition, base, rng, pool) -> Item:
    persona, pull, p_reasoning = persona_for(condition, base, rng, pool)
    general_answer = base.general_answer or base.gold
    p_answer = pull if condition in ("helpful", "misaligned", "ambiguous") else general_answer
    return Item(
        id=f"{split}-{fam}-{i:05d}-{condition}", base_id=f"{split}-{fam}-{i:05d}", split=split,
        kind="objective", family=fam, difficulty=base.difficulty, condition=condition,
        question=base.question, options=base.options, gold=base.gold, persona=persona, persona_pull=pull,
        traces={"general": Trace(reasoning=base.general_reasoning, answer=general_answer),
                "personalized": Trace(reasoning=p_reasoning, answer=p_answer)},
        preferred_mode=preferred_mode(condition),
    )


def build(cfg: BenchConfig) -> dict[str, list[Item]]:
    out: dict[str, list[Item]] = {}
    for split in SPLITS:
        if split == "rl" and not cfg.rl_bases:
            continue
        pool, items = vocab.pools("train" if split == "rl" else split), []
        for fam in cfg.families:
            rng = random.Random(f"{cfg.seed}-{split}-{fam}")
            lo, hi = cfg.difficulty[fam]
            n = cfg.train_bases if split == "train" else cfg.rl_bases if split == "rl" else cfg.eval_bases[split]
            for i in range(n):
                base = FAMILIES[fam](rng, rng.randint(lo, hi), pool["names"])
                if split in ("train", "rl"):
                    weights = cfg.rl_condition_weights if split == "rl" and cfg.rl_condition_weights else cfg.train_condition_weights
                    conds = rng.choices(list(weights), list(weights.values()))
                else:
                    conds = list(PAIRED_CONDITIONS) + (["ambiguous"] if i % cfg.ambiguous_every == 0 else [])
                items += [_objective_item(split, fam, i, c, base, rng, pool) for c in conds]
        rng = random.Random(f"{cfg.seed}-{split}-preference")
        for i in range(cfg.rl_personalized if split == "rl" else cfg.personalized[split]):
            p = preference_item(rng, pool)
            items.append(Item(
                id=f"{split}-preference-{i:05d}", base_id=f"{split}-preference-{i:05d}", split=split,
                kind="personalized", family="preference", condition="personalized",
                question=p["question"], options=p["options"], gold=p["gold"], persona=p["persona"],
                persona_pull=p["gold"], preferred_mode="personalized", meta=p["meta"],
                traces={m: Trace(reasoning=r, answer=a) for m, (r, a) in p["traces"].items()},
            ))
        out[split] = items
    return out


def stats(splits: dict[str, list[Item]]) -> dict:
    """Counts, and the shares that show the benchmark measures what it claims."""
    s: dict = {"counts": {}, "properties": {}}
    for split, items in splits.items():
        s["counts"][split] = {
            "total": len(items),
            "family": dict(sorted(Counter(it.family for it in items).items())),
            "condition": dict(sorted(Counter(it.condition for it in items).items())),
            "preferred_mode": dict(sorted(Counter(it.preferred_mode for it in items).items())),
        }
        by = defaultdict(list)
        for it in items:
            by[it.condition].append(it)
        share = lambda xs, f: round(sum(map(f, xs)) / len(xs), 4) if xs else None  # noqa: E731
        words = lambda it, m: len(it.traces[m].reasoning.split())  # noqa: E731
        helpful_by_diff = defaultdict(list)
        for it in by["helpful"]:
            helpful_by_diff[f"{it.family}:{it.difficulty}"].append(it)
        s["properties"][split] = {
            # interference is possible: following a misaligned persona gives a wrong answer
            "misaligned_personalized_trace_wrong": share(by["misaligned"], lambda it: not it.trace_correct("personalized")),
            # a helpful persona is a true, cheaper signal: right, and shorter than solving
            "helpful_personalized_trace_right": share(by["helpful"], lambda it: it.trace_correct("personalized")),
            "helpful_trace_words": {
                "general": share(by["helpful"], lambda it: words(it, "general")),
                "personalized": share(by["helpful"], lambda it: words(it, "personalized")),
                "general_by_family_difficulty": {k: share(v, lambda it: words(it, "general")) for k, v in sorted(helpful_by_diff.items())},
            },
            "ambiguous_personalized_trace_right": share(by["ambiguous"], lambda it: it.trace_correct("personalized")),
            # personalized items need the persona: the persona-blind general trace is mostly wrong
            "personalized_general_trace_right": share(by["personalized"], lambda it: it.trace_correct("general")),
            "personalized_personalized_trace_right": share(by["personalized"], lambda it: it.trace_correct("personalized")),
        }
    return s


def write(cfg: BenchConfig, out_dir: str | os.PathLike) -> dict:
    """Build and write ``{train,val,test}.jsonl``, ``stats.json`` and the ``config.json`` used."""
    out_dir = Path(out_dir)
    splits = build(cfg)
    for split, items in splits.items():
        write_items(out_dir / f"{split}.jsonl", items)
    st = stats(splits)
    for name, obj in (("stats.json", st), ("config.json", asdict(cfg))):
        tmp = out_dir / (name + ".tmp")
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, out_dir / name)
    return st
