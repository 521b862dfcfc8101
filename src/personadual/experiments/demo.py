"""`personadual demo` / `make demo`: the whole paper on the embedded default, on a 2-core CPU.

PersonaBench -> tiny model -> base "pretraining" -> SFT variants (dual, general_only,
personalized_only, persona_prompted) -> RL variants from the dual SFT model (dual and grpo;
dual_paper too with ``full``) -> evaluation of every model on the test split (plus the no-persona upper bound) -> report.

Every stage is skipped when its output is complete (a COMPLETE marker, or metrics.json written
last), so a rerun after a crash resumes; a resumed stage's time in stage_seconds.json includes what
ran before the crash (saved every 10 s, `StageClock`). Independent jobs run as parallel
1-thread processes (on 2 cores, two 1-thread jobs beat one 2-thread job). The demo only declares its
stages (`Stages.pipeline`) and writes its report; skipping, resuming, timing and the worker processes
are the runner's (`pipeline`), the same for every study.
The stage settings live in recipes/tiny-cpu/; the demo only adds paths and thread counts (and, for
demo-full, FULL_OVERRIDES).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..files import write_text_atomic
from ..training import is_complete
from .demo_report import degenerate_sentence, print_table, run_environment
from .pipeline import Job, Stage, model_saved, run_pipeline, training_job

STAGES = ("data", "tiny", "base", "sft", "rl", "eval")  # what `overrides` (and `demo --set`) can address
SFT_VARIANTS = ("dual", "general_only", "personalized_only", "persona_prompted")
# `make demo-full`: the demo with twice the RL steps (what longer RL does: docs/lab_notebook.md, "The three
# estimators tie on balanced accuracy")
FULL_OVERRIDES = {"rl": ["max_steps=300", "save_steps=100"]}
RL_ESTIMATORS = ("dual", "dual_paper", "grpo")  # every estimator the demo can train
# `make demo`: DualGRPO against plain GRPO, the paper's RL baseline. The authors' estimator as published reduces to
# GRPO times two under a balanced split (docs/dualgrpo.md), so it joins only in demo-full, as a third job that would
# otherwise share two cores with these two
RL_VARIANTS = ("dual", "grpo")
UPPER_BOUND = "upper_bound_no_persona"
# The paper's base-model baseline: the pretrained model before any persona or marker, asked as any model is
# (the plain protocol: the answer read from its text)
BASE_PLAIN = "base_plain"
# Models whose forced modes are checked on val: the RL start, and what RL made of it
CHECKED = ("sft_dual", *(f"rl_{e}" for e in RL_ESTIMATORS))  # each one the run trained (val_checks skips the others)


@dataclass
class DemoPlan:
    out: Path
    seed: int = 0
    recipes: Path = Path("recipes/tiny-cpu")
    jobs: int = 2  # parallel 1-thread processes
    overrides: dict = field(default_factory=dict)  # stage -> extra key=value list (demo-full uses it)
    rl_variants: tuple[str, ...] = RL_VARIANTS

    def __post_init__(self):  # a plan read back from its JSON (a grid's run) holds text and lists
        self.out, self.recipes, self.rl_variants = Path(self.out), Path(self.recipes), tuple(self.rl_variants)


class Stages:
    """The demo's stages, declared (`pipeline`): what each makes, from what, with which settings."""

    def __init__(self, plan: DemoPlan):
        self.p, self.out = plan, plan.out
        self.data, self.logs = plan.out / "data", plan.out / "logs"

    def _extra(self, stage: str) -> list[str]:
        return list(self.p.overrides.get(stage, []))

    def pipeline(self) -> list[Stage]:
        p = self.p
        return [Stage("data", work=self.write_data, complete=lambda: (self.data / "stats.json").exists()),
                Stage("tiny_model", work=self.init_tiny, complete=lambda: is_complete(self.out / "tiny")),
                Stage("base_model", jobs=self.base_jobs, threads=os.cpu_count() or 1, desc="base model"),  # alone: all cores
                Stage("sft", jobs=self.sft_jobs, parallel=p.jobs, desc="SFT variants"),
                Stage("check", jobs=self.check_jobs, parallel=p.jobs, deal=p.jobs, desc="val checks",
                      notes=lambda: _warn_about_the_rl_start(self.stage_checks().get("sft_dual", {}))),
                # every variant at once (demo-full's three too: two at a time would leave the third alone on one core)
                Stage("rl", jobs=self.rl_jobs, parallel=max(p.jobs, len(p.rl_variants)), desc="RL variants"),
                Stage("eval", jobs=self.eval_jobs, parallel=p.jobs, deal=p.jobs, desc="evaluation"),
                Stage("report", work=self.write_report, complete=lambda: (self.out / "report.md").exists(),
                      rerun_after_changes=True)]

    def write_data(self) -> None:
        from ..config import load_config
        from ..data.personabench import BenchConfig, write

        recipe = self.p.recipes / "data.yaml"  # the benchmark's knobs (an older recipe folder may have none)
        write(load_config(BenchConfig, recipe if recipe.exists() else None, [f"seed={self.p.seed}", *self._extra("data")]),
              self.data)

    def init_tiny(self) -> None:
        from ..config import load_config
        from ..models.tiny import TinyModelConfig, init_tiny

        init_tiny(self.data, self.out / "tiny", load_config(TinyModelConfig, None, [f"seed={self.p.seed}", *self._extra("tiny")]))

    def base_jobs(self) -> list[Job]:
        """The tiny model's 'pretraining': objective traces, no personas, no mode markers (`mix: pretrain`)."""
        from ..sft.config import SFTRunConfig
        from ..sft.train import main

        run = self.out / "base"
        if model_saved(run):  # a finished run's config is not resolved again
            return []
        return [training_job("base", main, SFTRunConfig, self.p.recipes / "pretrain.yaml", [
            f"model={self.out / 'tiny'}", f"data={self.data}", f"output_dir={run}", "mix=pretrain", f"seed={self.p.seed}",
            *self._extra("base")], run)]

    def _variants(self, stage: str, key: str, variants: tuple[str, ...], start: Path) -> list[Job]:
        """One training job per variant (``key=variant``), all starting from ``start``."""
        if stage == "sft":
            from ..sft.config import SFTRunConfig as cls
            from ..sft.train import main
        else:
            from ..rl.config import RLRunConfig as cls
            from ..rl.train import main
        jobs = []
        for v in variants:
            run = self.out / f"{stage}_{v}"
            if not model_saved(run):  # a finished run's config is not resolved again
                jobs.append(training_job(run.name, main, cls, self.p.recipes / f"{stage}.yaml", [
                    f"{key}={v}", f"model={start}", f"data={self.data}", f"eval_data={self.data}", f"output_dir={run}",
                    "threads=1", "eval_limit=0", f"seed={self.p.seed}", *self._extra(stage)], run))
        return jobs

    def sft_jobs(self) -> list[Job]:
        return self._variants("sft", "mix", SFT_VARIANTS, self.out / "base" / "model")

    def rl_jobs(self) -> list[Job]:
        return self._variants("rl", "estimator.name", self.p.rl_variants, self.out / "sft_dual" / "model")

    def _eval(self, name: str, model: Path, split: str, **settings) -> Job:
        from .eval_jobs import eval_job, evaluation

        out = self.out / ("eval" if split == "test" else f"eval_{split}") / name
        return eval_job(name, evaluation(name, model, self.data / f"{split}.jsonl", out, self._extra("eval"), **settings))

    def check_jobs(self) -> list[Job]:
        """The dual SFT model's forced modes on val, before RL starts from it (`stage_checks`)."""
        return [self._eval("sft_dual", self.models()["sft_dual"], "val")]

    def stage_checks(self) -> dict[str, dict]:
        """model -> its forced modes' separation on val and whether it is degenerate (modes that (almost)
        never disagree: nothing for DualGRPO to choose between, and a dual model that is one model twice)."""
        return val_checks(self.out)

    def models(self) -> dict[str, Path]:
        ms = {f"sft_{m}": self.out / f"sft_{m}" / "model" for m in SFT_VARIANTS}
        ms.update({f"rl_{e}": self.out / f"rl_{e}" / "model" for e in self.p.rl_variants})
        return ms

    def eval_jobs(self) -> list[Job]:
        models = self.models()
        return [self._eval(BASE_PLAIN, self.out / "base" / "model", "test", protocol="plain"),
                *(self._eval(k, v, "test") for k, v in models.items()),
                # no mode choice to score once personas are gone: the upper bound runs auto mode only
                self._eval(UPPER_BOUND, models["rl_dual"], "test", drop_persona=True, forced=False),
                *(self._eval(n, models[n], "val") for n in CHECKED if n in models and n != "sft_dual")]

    def write_report(self) -> None:
        from ..eval.report import compare_runs, load_run
        from .demo_report import demo_report

        names = [BASE_PLAIN, *self.models(), UPPER_BOUND]
        compare_runs([str(self.out / "eval" / n) for n in names], self.out / "report", names)
        metrics = {n: load_run(self.out / "eval" / n) for n in names}
        write_text_atomic(self.out / "report.md", demo_report(metrics, self.out, run_environment(self.p.seed),
                                                                 self.stage_checks()))


def val_checks(out: Path) -> dict[str, dict]:
    """A demo folder's val checks (`Stages.stage_checks`), read from its eval_val/ evaluations."""
    from ..eval.report import load_run
    from ..eval.verdicts import (is_degenerate, misplaced_personalized_share, misplaces_personalized_mode,
                                 misreads_helpful_personas)

    checks = {}
    for n in CHECKED:
        path = Path(out) / "eval_val" / n / "metrics.json"
        if path.exists():
            m = load_run(path)
            helpful = (m.get("forced", {}).get("personalized", {}).get("acc", {}).get("helpful") or {}).get("mean")
            worst = misplaced_personalized_share(m.get("mode_share", {}))
            checks[n] = {**m["separation"], "degenerate": is_degenerate(m["separation"]),
                         "personalized_on_helpful": helpful, "misreads_helpful": misreads_helpful_personas(helpful),
                         "misplaced": list(worst) if worst else None, "misplaces_personalized": misplaces_personalized_mode(worst)}
    return checks


def run_demo(out: str | Path = "runs/demo", seed: int = 0, recipes: str | Path | None = None, jobs: int = 2,
             overrides: dict | None = None, full: bool = False) -> dict:
    """Run (or resume) the whole pipeline; returns summary.json's content.

    ``overrides`` maps a stage (data, tiny, base, sft, rl, eval) to extra ``key=value`` settings
    (CLI flags for eval): the toy-sized test uses it. ``full`` adds FULL_OVERRIDES and the authors'
    estimator (``demo-full``).
    """
    return run_plan(demo_plan(out, seed, recipes, jobs, overrides, full))


def demo_plan(out: str | Path = "runs/demo", seed: int = 0, recipes: str | Path | None = None, jobs: int = 2,
              overrides: dict | None = None, full: bool = False) -> DemoPlan:
    """What `run_demo` runs: the overrides layered over demo-full's, the recipes found, the RL variants chosen."""
    overrides = merge_overrides(FULL_OVERRIDES if full else {}, overrides or {})
    recipes = Path(recipes) if recipes else find_recipes("tiny-cpu")
    return DemoPlan(Path(out), seed, recipes, jobs, overrides or {}, RL_ESTIMATORS if full else RL_VARIANTS)


def run_plan(plan: DemoPlan) -> dict:
    """Run (or resume) the demo ``plan`` declares, then write summary.json (the demo's report function)."""
    st = Stages(plan)
    times = run_pipeline("[demo]", plan.out, st.logs, st.pipeline())
    summary = build_summary(plan.out, times, plan.rl_variants)
    summary["environment"] = run_environment(plan.seed)
    summary["stage_checks"] = st.stage_checks()
    write_text_atomic(plan.out / "summary.json", json.dumps(summary, indent=2) + "\n")
    print_table(summary)
    print(f"[demo] report: {plan.out / 'report.md'}  plots: {plan.out / 'report'}/*.png  summary: {plan.out / 'summary.json'}")
    return summary


def _warn_about_the_rl_start(check: dict) -> None:
    if check.get("degenerate"):
        print(f"[demo] WARNING: {degenerate_sentence('sft_dual', check)} "
              "RL goes on so the report is complete; the report names it.")
    if check.get("misreads_helpful"):
        print("[demo] WARNING: sft_dual's personalized mode misreads helpful personas on val (right on "
              f"{100 * check['personalized_on_helpful']:.0f}%); the report names it.")


def merge_overrides(*layers: dict) -> dict:
    """Stage -> key=value lists, concatenated in order: a later layer's setting wins."""
    return {k: [kv for layer in layers for kv in layer.get(k, [])] for k in set().union(*layers)}


def build_summary(out: Path, times: dict, rl_variants: tuple[str, ...] = RL_VARIANTS) -> dict:
    from ..eval.report import load_run

    def entry(m: dict) -> dict:
        return {"acc": {c: v["mean"] for c, v in m["acc"].items()},
                "personalized_acc": (m.get("personalized_acc") or {}).get("mean"), "hacc": m.get("hacc"),
                "format_error_rate": m.get("format_error_rate"), "balanced_acc": m.get("balanced_acc"),
                "interference": m["interference"]["misaligned"], "helpful_gain": m["helpful_gain"],
                "mode_share_personalized": {c: s.get("personalized", 0.0) for c, s in m.get("mode_share", {}).items()}}

    names = [BASE_PLAIN, *(f"sft_{m}" for m in SFT_VARIANTS), *(f"rl_{e}" for e in rl_variants), UPPER_BOUND]
    summary = {n: entry(load_run(out / "eval" / n)) for n in names}
    summary["stage_seconds"] = times
    return summary


def find_recipes(name: str) -> Path:
    """recipes/<name> of the working directory, or of the checkout this package runs from."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        if (base / "recipes" / name / "sft.yaml").exists():
            return base / "recipes" / name
    raise FileNotFoundError(f"recipes/{name} not found: run from the repository root or pass --recipes")
