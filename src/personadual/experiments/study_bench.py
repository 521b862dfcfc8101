"""`personadual study real` / `make study-real`: PersonaDual on a real pretrained model and five real benchmarks.

SmolLM2-135M-Instruct (`model get`) and the labelled benchmarks of `data get` (PIQA, CommonsenseQA,
OpenBookQA, Social IQa, MedMCQA) go through the whole method on a 2-core CPU, every answer read in the
cloze form of the choice protocol (the question alone, each option's text scored after ``Answer:``),
where the audit shows the model knows something and a persona bends it (docs/results.md):

- data: each benchmark's train partition under persona conditions with templated traces, its val and
  test partitions under every paired condition (`real_data`), and PersonaBench's personalized items
  (the questions whose answer depends on the persona);
- base: the model before training on test, its interference the baseline of our own claim;
- sft: the naive persona-prompted SFT and the dual SFT, both in the cloze form (recipes/smollm2-135m/
  sft-cloze.yaml), one after the other on every core;
- check: the dual SFT model on val, its general mode read two ways (``persona``: the paper's mode, after
  the prompt as given; ``set-aside``: after the prompt without its persona). A model whose forced modes
  (almost) never disagree is DEGENERATE and the study stops there (`StudyStopped`), unless
  ``allow_degenerate``. The general context with the higher balanced accuracy on val is the one every
  later evaluation uses (chosen on val, never on test);
- rl: DualGRPO from the dual SFT model on train-partition questions SFT never saw (recipes/smollm2-135m/
  rl-cloze.yaml), its general rollouts sampled in the general context the check chose, so the marker's
  credit compares the modes as they will be read;
- eval: every model on test, and the mode models on PersonaBench's personalized test items (generated);
- report: report.md and summary.json, the paper's claims and ours (`study_bench_report`).

Each stage is skipped when its outputs are complete, so a killed run resumes; stage_seconds.json keeps
each stage's time across crashes. A run folder is bound to the settings it was started with (study.json).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..files import write_synced, write_text_atomic
from ..training import is_complete
from .jobs import prune_checkpoints
from .pipeline import Job, Stage, model_saved, run_pipeline, training_job

MODEL = "smollm2-135m-instruct"
STAGES = ("data", "sft", "rl")  # what --set STAGE:key=value can address
GENERAL_CONTEXTS = ("persona", "set-aside")
SFT_MIXES = ("persona_prompted", "dual")  # the naive baseline, then PersonaDual's stage 1, one after the other
BUDGETS: dict[str, dict[str, list[str]]] = {
    "full": {},
    "smoke": {"data": ["train_per_benchmark=8", "rl_per_benchmark=2", "val_questions=2", "test_questions=3", "personalized_train=8",
                       "personalized_test=4"],
              "sft": ["max_steps=2", "per_device_train_batch_size=4", "save_steps=1000"],
              "rl": ["max_steps=1", "num_generations=4", "per_device_train_batch_size=4", "max_completion_length=12",
                     "save_steps=1000"]},
}


class StudyStopped(RuntimeError):
    """A stage check failed: the study stops rather than train or report on a model that cannot pass."""

    exit_code = 3  # what `personadual study real` (and a worker process running the study) exits with


@dataclass
class BenchStudyPlan:
    out: Path
    seed: int = 0
    budget: str = "full"
    model_dir: Path | None = None  # start from this model directory instead of fetching SmolLM2
    overrides: dict = field(default_factory=dict)  # stage -> ["key=value", ...], from --set
    recipes: Path | None = None
    threads: int = 2
    allow_degenerate: bool = False  # go on past a DEGENERATE dual SFT model (the check then only warns)
    cache: Path | None = None

    def __post_init__(self):
        from .demo import find_recipes, merge_overrides

        if self.budget not in BUDGETS:
            raise ValueError(f"--budget: expected one of {', '.join(BUDGETS)}, got {self.budget!r}")
        if unknown := set(self.overrides) - set(STAGES):
            raise ValueError(f"--set: unknown stage(s) {sorted(unknown)}; known: {', '.join(STAGES)}")
        self.out = Path(self.out)  # a plan read back from its JSON (a grid's run) holds paths as text
        self.model_dir = Path(self.model_dir) if self.model_dir is not None else None
        self.cache = Path(self.cache) if self.cache is not None else None
        self.recipes = Path(self.recipes) if self.recipes else find_recipes("smollm2-135m")
        self.settings = merge_overrides(BUDGETS[self.budget], self.overrides)

    def identity(self) -> dict:
        return {"study": "benchmarks-cloze", "budget": self.budget, "seed": self.seed, "overrides": self.overrides,
                "model_dir": str(self.model_dir) if self.model_dir else None}


@dataclass
class StudyDataSettings:
    """The data stage's settings (``--set data:key=value``)."""

    benchmarks: list = field(default_factory=lambda: ["piqa", "commonsenseqa", "openbookqa", "siqa", "medmcqa"])
    train_per_benchmark: int = 500
    rl_per_benchmark: int = 40  # RL's prompts: train-partition questions SFT never saw
    val_questions: int = 40
    test_questions: int = 60
    personalized_train: int = 300  # PersonaBench personalized items trained on (chat form, templated traces)
    personalized_test: int = 60


class BenchStudy:
    """The study's stages, declared (`pipeline`). Every stage takes every core, so the training runs go one after
    the other in this process; the evaluations share an engine per model (`_engine`)."""

    def __init__(self, plan: BenchStudyPlan):
        self.p, self.out = plan, plan.out
        self.data, self.ev = plan.out / "data", plan.out / "eval"

    @property
    def base(self) -> Path:
        return Path(self.p.model_dir) if self.p.model_dir else self.out / "base"

    def _set(self, stage: str) -> list[str]:
        return list(self.p.settings.get(stage, []))

    def data_settings(self) -> StudyDataSettings:
        from ..config import parse_overrides

        return StudyDataSettings(**parse_overrides(self._set("data")))

    def pipeline(self) -> list[Stage]:
        sft_runs, rl_run = [self.out / f"sft_{m}" for m in SFT_MIXES], self.out / "rl_dual"
        return [Stage("fetch", work=self.fetch_model, complete=lambda: bool(self.p.model_dir) or is_complete(self.base)),
                Stage("data", work=self.write_data, complete=(self.data / "COMPLETE").exists),
                Stage("sft", jobs=self.sft_jobs, inline=True, after=lambda: prune_checkpoints(sft_runs)),
                Stage("check", work=self.check_stage),
                Stage("rl", jobs=self.rl_jobs, inline=True, after=lambda: prune_checkpoints([rl_run])),
                Stage("eval", work=self.eval_stage),
                Stage("report", work=self.report_stage)]

    # -- stages ----------------------------------------------------------------------------------
    def fetch_model(self) -> None:
        from ..models.gguf import get_model

        get_model(MODEL, self.base, self.p.cache)

    def write_data(self) -> None:
        import random

        from ..data.personabench import BenchConfig, build
        from ..data.schema import read_items, write_items
        from .real_data import RealDataConfig, write_real_data

        s = self.data_settings()
        write_real_data(RealDataConfig(benchmarks=list(s.benchmarks), train_per_benchmark=s.train_per_benchmark,
                                       rl_per_benchmark=s.rl_per_benchmark, val_questions=s.val_questions,
                                       test_questions=s.test_questions, seed=self.p.seed), self.data, self.p.cache)
        pb = build(BenchConfig(seed=self.p.seed, train_bases=0, eval_bases={"val": 0, "test": 0},
                               personalized={"train": s.personalized_train, "val": 0, "test": s.personalized_test}))
        train = read_items(self.data / "train.jsonl") + pb["train"]
        random.Random(f"{self.p.seed}-study-train").shuffle(train)
        write_items(self.data / "sft" / "train.jsonl", train)
        write_items(self.data / "pb_test.jsonl", pb["test"])
        write_synced(self.data / "COMPLETE", "complete\n")

    def sft_jobs(self) -> list[Job]:
        """The naive persona-prompted SFT, then the dual SFT, both in the cloze form."""
        from ..sft.config import SFTRunConfig
        from ..sft.train import main

        jobs = []
        for mix in SFT_MIXES:
            run = self.out / f"sft_{mix}"
            if not model_saved(run):  # a finished run's config is not resolved again
                jobs.append(training_job(run.name, main, SFTRunConfig, self.p.recipes / "sft-cloze.yaml", [
                    f"mix={mix}", f"model={self.base}", f"data={self.data / 'sft'}", f"output_dir={run}",
                    f"threads={self.p.threads}", f"seed={self.p.seed}", *self._set("sft")], run))
        return jobs

    def _engine(self, model: Path):
        """The model's engine, loaded once for all its evaluations (the last model's is kept, one at a time)."""
        if getattr(self, "_loaded", (None, None))[0] != model:
            import torch

            from ..engine import Engine

            torch.set_num_threads(self.p.threads)
            self._loaded = (model, Engine.load(str(model), protocol="auto"))
        return self._loaded[1]

    def _evaluate(self, name: str, model: Path, data: Path, **kw) -> dict:
        from ..eval.run import evaluate

        out = self.ev / name
        if not (out / "metrics.json").exists():
            evaluate(str(model), str(data), str(out), name=name, batch_size=64, engine=self._engine(model), **kw)
        return json.loads((out / "metrics.json").read_text())

    def cloze(self, name: str, model: Path, split: str, context: str = "persona") -> dict:
        plain = model == self.base
        return self._evaluate(name, model, self.data / f"{split}.jsonl", protocol="choice", choice_form="cloze",
                              **({} if plain else {"general_context": context}))

    def check_stage(self) -> bool:
        """The dual SFT model on val, both general contexts; record the context chosen on val (the higher balanced
        accuracy) and stop when the forced modes, read in that context, (almost) never differ: DEGENERATE."""
        from ..eval.verdicts import is_degenerate

        path = self.out / "check.json"
        if path.exists():
            check = json.loads(path.read_text())
            did = False
        else:
            model = self.out / "sft_dual" / "model"
            val = {c: self.cloze(f"val_sft_dual_{c}", model, "val", c) for c in GENERAL_CONTEXTS}
            balanced = {c: val[c]["balanced_acc"] for c in GENERAL_CONTEXTS}
            chosen = max(GENERAL_CONTEXTS, key=lambda c: (balanced[c] or 0.0, c == "persona"))
            sep = val[chosen]["separation"]  # the modes as every later stage reads them
            check = {"separation": sep, "degenerate": is_degenerate(sep), "balanced_acc_val": balanced,
                     "general_context": chosen,
                     "separation_by_context": {c: val[c]["separation"] for c in GENERAL_CONTEXTS}}
            write_text_atomic(path, json.dumps(check, indent=2) + "\n")
            did = True
        if check["degenerate"]:
            message = (f"sft_dual is DEGENERATE: its forced modes differ in correctness on {sep_text(check)} val "
                       "items, so DualGRPO would compare two copies of one rollout. Change the SFT recipe (or pass "
                       "--allow-degenerate to go on regardless)")
            if not self.p.allow_degenerate:
                raise StudyStopped(message)
            print(f"[study] WARNING: {message}")
        return did

    def general_context(self) -> str:
        return json.loads((self.out / "check.json").read_text())["general_context"]

    def rl_jobs(self) -> list[Job]:
        """DualGRPO from the dual SFT model, its general rollouts in the general context the check chose."""
        from ..rl.config import RLRunConfig
        from ..rl.train import main

        run = self.out / "rl_dual"
        if model_saved(run):  # a finished run's config is not resolved again (nor the check read)
            return []
        return [training_job("rl_dual", main, RLRunConfig, self.p.recipes / "rl-cloze.yaml", [
            f"model={self.out / 'sft_dual' / 'model'}", f"data={self.data / 'rl.jsonl'}", f"output_dir={run}",
            f"threads={self.p.threads}", f"seed={self.p.seed}", f"general_context={self.general_context()}",
            *self._set("rl")], run)]

    def models(self) -> dict[str, Path]:
        return {n: self.out / n / "model" for n in ("sft_persona_prompted", "sft_dual", "rl_dual")}

    def eval_stage(self) -> bool:
        done = lambda: {p.parent.name for p in self.ev.glob("*/metrics.json")}  # noqa: E731
        before = done()
        self.cloze("base", self.base, "test")
        context = self.general_context()
        for name, model in self.models().items():
            self.cloze(name, model, "test", "persona" if name == "sft_persona_prompted" else context)
            self._evaluate(f"{name}_personalized", model, self.data / "pb_test.jsonl", forced=False,
                           max_new_tokens=64)
        return done() != before

    def report_stage(self) -> bool:
        from .study_bench_report import write_bench_report

        write_bench_report(self)
        return True


def sep_text(check: dict) -> str:
    sep = check["separation"]
    return f"{sep.get('decisive')} of {sep.get('n')}"


def run_bench_study(plan: BenchStudyPlan) -> dict:
    """Run (or resume) every stage; returns summary.json's content. Raises `StudyStopped` at a failed check."""
    from .jobs import bind_run
    from .study_report import measure_machine

    bind_run(plan)
    st = BenchStudy(plan)
    machine = measure_machine(plan.out)
    times = run_pipeline("[study]", plan.out, plan.out / "logs", st.pipeline())
    summary = json.loads((plan.out / "summary.json").read_text())
    summary["stage_seconds"], summary["machine"] = times, machine
    write_text_atomic(plan.out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
