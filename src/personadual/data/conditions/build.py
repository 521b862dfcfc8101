"""PersonaBench's persona-condition grid for real multiple-choice items.

Every persona-less objective item (a base question) goes to one split. In train it appears under
one condition drawn with ``train_condition_weights``; in val and test it is paired: the same
question under none / irrelevant / misaligned / helpful (and, for about one base in
``ambiguous_every``, ambiguous), so the effect of a persona is measured on the same questions.
Val and test draw their personas from the held-out phrasings (`phrasings.pool_of`).

Every draw is seeded by the config's seed and an item id, never by position, so the output does
not depend on input order and adding items never changes the ones already there.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ...files import write_text_atomic
from ..personabench.build import PAIRED_CONDITIONS, BenchConfig, preferred_mode
from ..schema import OBJECTIVE_CONDITIONS, Item, write_items
from .phrasings import IRRELEVANT, TEMPLATES, fill, pool_of

SPLITS = ("train", "val", "test")
HELDOUT_PERSONA_SHARE = 1 / 3  # of PersonaHub personas, kept for val/test (as the built-in pools)


@dataclass
class ConditionsConfig:
    """How items are split and which conditions each base question gets."""

    seed: int = 0
    splits: dict = field(default_factory=lambda: {"test": 1.0})  # split name -> share of base questions
    ambiguous_every: int = 3  # in val/test about one base in k also gets an ambiguous persona; 0: none
    train_condition_weights: dict = field(default_factory=lambda: dict(BenchConfig().train_condition_weights))
    # "any": content personas quote short options and say "option X" for long ones, and the `letter` kinds
    # name letters; "text": every option named by its text and no `letter` kinds, for prompts that do not
    # list the options (the cloze form of the choice protocol), where a letter means nothing
    option_refs: str = "any"
    keep_splits: bool = False  # items that carry a split (`data get` benchmarks) keep it instead of a seeded draw

    def __post_init__(self):
        if not isinstance(self.splits, dict) or not self.splits:
            raise ValueError(f"splits: need a mapping of split name to share, got {self.splits!r}")
        if unknown := set(self.splits) - set(SPLITS):
            raise ValueError(f"splits: unknown split(s) {sorted(unknown)}; known: {', '.join(SPLITS)}")
        if any(not isinstance(v, (int, float)) or v < 0 for v in self.splits.values()):
            raise ValueError(f"splits: shares must be numbers >= 0, got {self.splits}")
        if abs(sum(self.splits.values()) - 1) > 1e-6:
            raise ValueError(f"splits: shares must sum to 1, got {sum(self.splits.values())} from {self.splits}")
        if not isinstance(self.ambiguous_every, int) or self.ambiguous_every < 0:
            raise ValueError("ambiguous_every: need an integer >= 0 (0: no ambiguous personas), "
                             f"got {self.ambiguous_every!r}")
        weights = self.train_condition_weights
        if unknown := set(weights) - set(OBJECTIVE_CONDITIONS):
            raise ValueError(f"train_condition_weights: unknown condition(s) {sorted(unknown)}; "
                             f"known: {', '.join(OBJECTIVE_CONDITIONS)}")
        if any(v < 0 for v in weights.values()) or abs(sum(weights.values()) - 1) > 1e-6:
            raise ValueError(f"train_condition_weights: need weights >= 0 that sum to 1, got {weights}")
        if self.option_refs not in ("any", "text"):
            raise ValueError(f"option_refs: expected any or text, got {self.option_refs!r}")


def split_of(key: str, cfg: ConditionsConfig, given: str | None = None) -> str:
    """The split a base question belongs to, from (seed, its id) alone; with ``cfg.keep_splits``, the split
    the item already has (``given``) where it is one of the config's splits."""
    if cfg.keep_splits and given is not None:
        if given not in cfg.splits:
            raise ValueError(f"keep_splits: an item's split {given!r} is not among the splits {sorted(cfg.splits)}")
        return given
    u, total = random.Random(f"{cfg.seed}-split-{key}").random(), 0.0
    shares = [(name, cfg.splits.get(name, 0)) for name in SPLITS if cfg.splits.get(name, 0) > 0]
    for name, share in shares:
        total += share
        if u < total:
            return name
    return shares[-1][0]  # u just under 1 when the shares' sum rounds below it


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def irrelevant_pools(personas: list[str] | None) -> dict[str, tuple[list[str], str]]:
    """pool -> (irrelevant persona texts, their source), PersonaHub's when given, else built-in.

    PersonaHub personas are split by a hash of their text, so train and held-out never share one
    and the split does not depend on the file's order. A side left empty (a one-persona file)
    falls back to the built-in pool rather than reuse a train persona in evaluation.
    """
    ranked = sorted({p.strip() for p in personas or [] if p and p.strip()}, key=_hash)
    n_heldout = max(1, int(len(ranked) * HELDOUT_PERSONA_SHARE)) if len(ranked) >= 2 else 0
    given = {"heldout": ranked[:n_heldout], "train": ranked[n_heldout:]}
    return {pool: (given[pool], "personahub") if given[pool] else (list(IRRELEVANT[pool]), "builtin")
            for pool in ("train", "heldout")}


def draw_persona(condition: str, item: Item, rng: random.Random, pool: str, irrelevant: dict,
                 text_only: bool = False) -> dict:
    """The persona fields of ``item`` under ``condition``: text, the option it points to, and its phrasing.
    ``text_only``: only phrasings that name options by their text (`ConditionsConfig.option_refs`)."""
    if condition == "none":
        return {"persona": None, "pull": None, "kind": "none", "template": None, "source": None}
    if condition == "irrelevant":
        texts, source = irrelevant[pool]
        persona = rng.choice(texts)
        return {"persona": persona, "pull": None, "kind": "unrelated", "template": persona, "source": source}
    kinds = TEMPLATES[condition]
    kind = rng.choice(sorted(k for k in kinds if not (text_only and k == "letter")))
    template = rng.choice(kinds[kind][pool])
    wrong = [o for o in item.options if o != item.gold]
    if condition == "misaligned":
        pull = rng.choice(wrong)
        persona = fill(template, kind, item, option=pull, text_only=text_only)
    elif condition == "helpful":
        pull = item.gold
        persona = fill(template, kind, item, option=pull, text_only=text_only)
    else:  # ambiguous: the gold option and a wrong one, in a random order; the first named is the pull
        other = rng.choice(wrong)
        pull, second = (item.gold, other) if rng.random() < 0.5 else (other, item.gold)
        persona = fill(template, kind, item, first=pull, second=second, text_only=text_only)
    return {"persona": persona, "pull": pull, "kind": kind, "template": template, "source": "builtin"}


def with_persona(item: Item, condition: str, split: str | None, drawn: dict, item_id: str) -> Item:
    """A copy of ``item`` under ``condition``: same question, options, gold and meta; no traces yet."""
    meta = {**item.meta, "persona_kind": drawn["kind"], "persona_source": drawn["source"],
            "persona_template": drawn["template"]}
    return Item.model_validate({
        **item.model_dump(), "id": item_id, "base_id": item.base_id or item.id, "split": split,
        "condition": condition, "persona": drawn["persona"], "persona_pull": drawn["pull"], "traces": {},
        "preferred_mode": preferred_mode(condition), "meta": meta})


def conditions_of(item: Item, split: str, cfg: ConditionsConfig) -> list[str]:
    """The conditions a base question appears under in its split."""
    rng = random.Random(f"{cfg.seed}-conditions-{item.id}")
    if split == "train":
        return rng.choices(list(cfg.train_condition_weights), list(cfg.train_condition_weights.values()))
    # A seeded draw per base (rather than every k-th in some order): whether a base gets an
    # ambiguous persona then depends on that base alone, not on which other items are in the input.
    ambiguous = cfg.ambiguous_every > 0 and rng.random() < 1 / cfg.ambiguous_every
    return list(PAIRED_CONDITIONS) + (["ambiguous"] if ambiguous else [])


def is_base(item: Item) -> bool:
    """A question without a persona yet: the grid is built from these."""
    return item.kind == "objective" and item.condition == "none"


def build_conditions(items: list[Item], cfg: ConditionsConfig | None = None,
                     personas: list[str] | None = None) -> dict[str, list[Item]]:
    """split -> items: each base question under its conditions, the other items passed through.

    Items that already have a persona, and personalized items, keep everything but ``split``.
    A base's variants get ids ``{id}-{condition}`` and ``base_id`` = the base's own; duplicate ids
    (the same input twice, or a variant colliding with a passed-through item) are a ValueError.
    """
    cfg = cfg or ConditionsConfig()
    irrelevant = irrelevant_pools(personas)
    out: dict[str, list[Item]] = {name: [] for name in SPLITS if name in cfg.splits}
    for item in items:
        # keyed by base_id where there is one, so every condition of a question lands in one split
        split = split_of(item.base_id or item.id, cfg, item.split)
        if not is_base(item):
            out[split].append(item.model_copy(update={"split": split}))
            continue
        for condition in conditions_of(item, split, cfg):
            rng = random.Random(f"{cfg.seed}-{condition}-{item.id}")
            drawn = draw_persona(condition, item, rng, pool_of(split), irrelevant, cfg.option_refs == "text")
            out[split].append(with_persona(item, condition, split, drawn, f"{item.id}-{condition}"))
    ids = Counter(it.id for part in out.values() for it in part)
    if dupes := sorted(i for i, n in ids.items() if n > 1):
        raise ValueError(f"{len(dupes)} duplicate item id(s) in the output, e.g. {dupes[:5]}: "
                         "give each input item its own id")
    return out


def fill_aligned_slots(items: list[Item], seed: int = 0, split: str = "train") -> list[Item]:
    """Give items marked ``meta.persona_slot == "aligned"`` a built-in helpful persona.

    `attach_personas` leaves such items persona-less for an aligned persona; this writes one from
    the helpful phrasings (train ones for ``split="train"``, held-out ones for val/test), so they
    become condition "helpful" pointing to the gold option, preferred mode personalized. The id
    stays, so the item is replaced, not duplicated. Other items pass through unchanged.
    """
    pool = pool_of(split)
    out = []
    for item in items:
        if not (is_base(item) and item.meta.get("persona_slot") == "aligned"):
            out.append(item)
            continue
        drawn = draw_persona("helpful", item, random.Random(f"{seed}-aligned-{item.id}"), pool, {})
        out.append(with_persona(item, "helpful", item.split, drawn, item.id))
    return out


def _share(items: list[Item], test) -> float | None:
    return round(sum(map(test, items)) / len(items), 4) if items else None


def stats(splits: dict[str, list[Item]]) -> dict:
    """Counts per split, and the properties that show the grid measures what it claims."""
    counted = ("condition", "family", "kind", "preferred_mode")
    s: dict = {"counts": {}, "properties": {}}
    phrasings = {name: {it.meta.get("persona_template") for it in items} - {None} for name, items in splits.items()}
    for name, items in splits.items():
        c = {"total": len(items), **{k: dict(sorted(Counter(getattr(it, k) for it in items).items())) for k in counted}}
        for key in ("persona_kind", "persona_source"):  # "unrecorded": passed through from elsewhere
            labels = ("none" if v is None else str(v) for v in (it.meta.get(key, "unrecorded") for it in items))
            c[key] = dict(sorted(Counter(labels).items()))
        s["counts"][name] = c
        by = defaultdict(list)
        for it in items:
            by[it.condition].append(it)
        paired = defaultdict(set)
        for it in items:
            paired[it.base_id or it.id].add(it.condition)
        s["properties"][name] = {
            # interference is possible: following a misaligned persona always gives a wrong answer
            "misaligned_pull_not_gold": _share(by["misaligned"], lambda it: it.persona_pull != it.gold),
            # a helpful persona is a true signal
            "helpful_pull_gold": _share(by["helpful"], lambda it: it.persona_pull == it.gold),
            "ambiguous_pull_gold": _share(by["ambiguous"], lambda it: it.persona_pull == it.gold),
            "bases_under_all_paired_conditions": sum(set(PAIRED_CONDITIONS) <= conds for conds in paired.values()),
            "distinct_phrasings": len(phrasings[name]),
            # evaluation phrasings a model could have memorised in training: must be 0
            "phrasings_shared_with_train": (len(phrasings[name] & phrasings["train"])
                                            if name != "train" and "train" in phrasings else None),
        }
    return s


def write_conditions(items: list[Item], cfg: ConditionsConfig, out_dir: str | os.PathLike,
                     personas: list[str] | None = None) -> dict:
    """Build and write ``{split}.jsonl`` (non-empty splits), ``stats.json`` and ``config.json``; returns the stats.

    A split file left from an earlier run with other splits is removed: `personadual eval --data DIR`
    reads ``DIR/test.jsonl``, and a stale one would be evaluated as if this run had written it.
    """
    out_dir = Path(out_dir)
    splits = build_conditions(items, cfg, personas)
    written = {name: part for name, part in splits.items() if part}
    for name in SPLITS:
        path = out_dir / f"{name}.jsonl"
        if name in written:
            write_items(path, written[name])
        elif path.exists():
            path.unlink()
    st = stats(written)
    for name, obj in (("stats.json", st), ("config.json", asdict(cfg))):
        write_text_atomic(out_dir / name, json.dumps(obj, indent=2, sort_keys=True) + "\n")
    return st
