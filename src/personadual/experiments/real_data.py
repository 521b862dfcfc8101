"""The real benchmarks as PersonaDual's training and evaluation data: each question under persona conditions.

From the five labelled benchmarks of `data get` (`data.benchmarks`), by their fixed partitions:

- ``rl.jsonl``: ``rl_per_benchmark`` further train-partition questions of each benchmark, drawn like train
  but never in it: DualGRPO's prompts;
- ``train.jsonl``: up to ``train_per_benchmark`` train-partition questions of each benchmark, each under
  one persona condition (drawn with the conditions' train weights), with templated traces
  (`data.conditions.templated`: the general mode answers the gold; the personalized mode follows a
  persona that points somewhere, the gold where it is helpful);
- ``val.jsonl`` / ``test.jsonl``: ``val_questions`` / ``test_questions`` questions of each benchmark's
  val / test partition, each under every paired condition (none, irrelevant, misaligned, helpful;
  ambiguous for about a third), phrased from the held-out persona pools.

Personas name options by their text (``option_refs: text``): the cloze form lists no options. A
question is in one partition only, so training never sees a val or test question; which questions are
drawn depends on ``seed``, the partition does not.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..config import help_field
from ..data.benchmarks import BENCHMARKS, read_benchmark
from ..data.conditions import ConditionsConfig, build_conditions
from ..data.conditions.templated import with_templated_traces
from ..data.schema import Item, write_items
from ..files import write_text_atomic


@dataclass
class RealDataConfig:
    """Which benchmarks, how many questions of each partition, and the seed of every draw."""

    benchmarks: list[str] = help_field("benchmarks of `data get`", factory=lambda: list(BENCHMARKS))
    train_per_benchmark: int = help_field("train-partition questions per benchmark (one condition each)", 500)
    rl_per_benchmark: int = help_field("further train-partition questions per benchmark, for RL prompts only "
                                       "(rl.jsonl): RL on SFT's own questions would reward what SFT memorised", 40)
    val_questions: int = help_field("val-partition questions per benchmark, each under every condition", 40)
    test_questions: int = help_field("test-partition questions per benchmark, each under every condition", 100)
    seed: int = help_field("which questions are drawn, and the conditions and personas drawn for them", 0)

    def __post_init__(self):
        if unknown := [b for b in self.benchmarks if b not in BENCHMARKS]:
            raise ValueError(f"benchmarks: unknown {unknown}; known: {', '.join(BENCHMARKS)}")
        if min(self.train_per_benchmark, self.rl_per_benchmark, self.val_questions, self.test_questions) < 0:
            raise ValueError("train_per_benchmark, rl_per_benchmark, val_questions and test_questions must be >= 0")


def _draw(items: list[Item], n: int, key: str) -> list[Item]:
    ordered = sorted(items, key=lambda it: it.id)  # the draw does not depend on the file's order
    return ordered if n >= len(ordered) else random.Random(key).sample(ordered, n)


def real_splits(questions: dict[str, list[Item]], cfg: RealDataConfig) -> dict[str, list[Item]]:
    """split -> items, from benchmark -> its questions (each with its fixed ``split``)."""
    want = {"train": cfg.train_per_benchmark + cfg.rl_per_benchmark, "val": cfg.val_questions,
            "test": cfg.test_questions}
    out: dict[str, list[Item]] = {s: [] for s in ("train", "rl", "val", "test")}
    for name in cfg.benchmarks:
        for split, n in want.items():
            chosen = _draw([it for it in questions[name] if it.split == split], n, f"{cfg.seed}-{name}-{split}")
            grid = build_conditions(chosen, ConditionsConfig(seed=cfg.seed, splits={split: 1.0}, option_refs="text",
                                                             keep_splits=True)).get(split, [])
            items = with_templated_traces(grid)
            if split == "train":  # the first train_per_benchmark questions train SFT, the rest are RL's prompts
                sft_ids = {it.id for it in chosen[: cfg.train_per_benchmark]}
                out["rl"] += [it for it in items if it.base_id not in sft_ids]
                items = [it for it in items if it.base_id in sft_ids]
            out[split] += items
    for split in ("train", "rl"):
        random.Random(f"{cfg.seed}-order-{split}").shuffle(out[split])
    return out


def write_real_data(cfg: RealDataConfig, out_dir: str | Path, cache=None) -> dict:
    """Fetch the benchmarks, write ``{train,val,test}.jsonl`` and ``summary.json``; returns the summary."""
    from ..artifacts import fetch

    out_dir = Path(out_dir)
    questions, reports = {}, {}
    for name in cfg.benchmarks:
        questions[name], report = read_benchmark(name, fetch(name, cache).paths)
        reports[name] = {k: (len(v) if isinstance(v, list) else v) for k, v in report.items()}
    splits = real_splits(questions, cfg)
    for split, items in splits.items():
        write_items(out_dir / f"{split}.jsonl", items)
    summary = {"config": asdict(cfg), "benchmarks": reports,
               "items": {s: dict(Counter(it.condition for it in items)) for s, items in splits.items()},
               "by_benchmark": {s: dict(Counter(it.source for it in items)) for s, items in splits.items()}}
    write_text_atomic(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
