"""``personadual study real``: the Typer command function, wired up in `personadual.cli`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..cli_args import fail as _fail, stage_settings

BENCH_SET_HELP = ("a stage's setting, STAGE:key=value (repeatable; stages: data, sft, rl), e.g. sft:max_steps=100, "
                  "data:test_questions=100 or rl:max_steps=20")


def study_real_command(out: Path = typer.Option(Path("runs/study-real"), help="output directory"),
                       seed: int = typer.Option(0, help="seed of the data draws and training runs"),
                       budget: str = typer.Option("full", help="full or smoke (every stage in minutes, to check the "
                                                  "wiring)"),
                       model_dir: Optional[Path] = typer.Option(None, help="start from this model directory instead of "
                                                                "fetching SmolLM2-135M-Instruct"),
                       recipes: Optional[Path] = typer.Option(None, help="recipe folder (default: recipes/smollm2-135m; "
                                                              "its sft-cloze.yaml and rl-cloze.yaml)"),
                       threads: int = typer.Option(2, help="torch threads of every stage"),
                       allow_degenerate: bool = typer.Option(False, help="go on past a dual SFT model whose forced "
                                                             "modes do not differ on val (the check then only warns)"),
                       set_: list[str] = typer.Option([], "--set", help=BENCH_SET_HELP)):
    """PersonaDual on a real model and five real benchmarks (cloze form): SFT, check, DualGRPO, claims. Resumable."""
    from .study_bench import STAGES as BENCH_STAGES, BenchStudyPlan, StudyStopped, run_bench_study

    overrides = stage_settings(set_, BENCH_STAGES, ())
    if model_dir is not None and not model_dir.is_dir():
        _fail(f"--model-dir {model_dir}: no such directory")
    try:
        plan = BenchStudyPlan(out, seed, budget, model_dir, overrides, recipes, threads, allow_degenerate)
        run_bench_study(plan)
    except StudyStopped as e:
        _fail(f"study stopped: {e}", code=StudyStopped.exit_code)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    typer.echo(f"[study] report: {out / 'report.md'}")


SET_HELP = ("a stage's setting, STAGE:key=value (repeatable; stages: data, audit, sft, rl, eval), e.g. "
            "sft:max_steps=100, data:mmlu_eval_bases=60, data:bench.train_bases=50 or eval:--max-new-tokens=64 "
            "(audit and eval take `personadual eval`'s flags)")


def study_mmlu_chat_command(out: Path = typer.Option(Path("runs/study-mmlu-chat"), help="output directory"),
                       budget: str = typer.Option("full", help="full (about 90 minutes on 2 cores: docs/real_models.md) "
                                                  "or smoke (every stage in a few minutes, to check the wiring)"),
                       model_dir: Optional[Path] = typer.Option(None, help="start from this model directory instead of "
                                                                "fetching SmolLM2-135M-Instruct"),
                       mmlu: Optional[Path] = typer.Option(None, help="MMLU items JSONL (any subjects; split by the "
                                                           "fixed subject split) instead of `data get mmlu`"),
                       recipes: Optional[Path] = typer.Option(None, help="recipe folder (default: recipes/smollm2-135m)"),
                       jobs: int = typer.Option(2, help="parallel 1-thread jobs"),
                       seed: int = typer.Option(0, help="seed of the data draws and training runs"),
                       set_: list[str] = typer.Option([], "--set", help=SET_HELP)):
    """The earlier real-model study: MMLU in the chat form with templated reasoning (docs/real_models.md). Resumable."""
    from .study_real import FLAG_STAGES, STAGES, StudyPlan, run_study

    overrides = stage_settings(set_, STAGES, FLAG_STAGES)
    if model_dir is not None and not model_dir.is_dir():
        _fail(f"--model-dir {model_dir}: no such directory")
    if mmlu is not None and not mmlu.is_file():
        _fail(f"--mmlu {mmlu}: no such file")
    try:
        plan = StudyPlan(out, budget, model_dir, mmlu, overrides, recipes, jobs, seed)
        run_study(plan)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))


def study_audit_command(out: Path = typer.Option(Path("runs/audit"), help="output directory"),
                        model: Optional[Path] = typer.Option(None, help="a model directory (default: fetch "
                                                             "SmolLM2-135M-Instruct into OUT/base)"),
                        benchmarks: str = typer.Option(",".join(("piqa", "commonsenseqa", "openbookqa", "siqa",
                                                                 "medmcqa", "mmlu")), help="comma-separated"),
                        forms: str = typer.Option("cloze,text", help="choice forms, comma-separated: cloze, "
                                                  "cloze-chat, text, letter"),
                        questions: int = typer.Option(100, help="test questions per benchmark, each under every "
                                                      "persona condition"),
                        seed: int = typer.Option(0, help="which questions, and the personas drawn for them"),
                        threads: int = typer.Option(2, help="torch threads"),
                        cache: Optional[Path] = typer.Option(None, help="artifact cache (default: $PERSONADUAL_CACHE "
                                                             "or ~/.cache/personadual)")):
    """How far a persona bends a model on six real benchmarks, in the cloze and listed-options forms. Resumable."""
    from ..artifacts import ArtifactError
    from .audit_real import AuditPlan, run_audit

    if model is not None and not model.is_dir():
        _fail(f"--model {model}: no such directory")
    try:
        plan = AuditPlan(out, model, tuple(benchmarks.split(",")), tuple(forms.split(",")), questions, seed, cache,
                         threads)
        run_audit(plan, say=lambda m: typer.echo(m, err=True))
    except (ValueError, FileNotFoundError, ArtifactError) as e:
        _fail(str(e))
    typer.echo(f"[audit] {out / 'audit.md'}")


def study_real_grid_command(out: Path = typer.Option(Path("runs/real-grid"), help="one folder per seed, plus grid.md "
                                                     "and grid.json"),
                            seeds: str = typer.Option("0,1,2", help="comma-separated seeds"),
                            kernels: str = typer.Option("native", help="CPU kernel settings (native, default, avx2, "
                                                        "avx512), comma-separated"),
                            allow_degenerate: bool = typer.Option(False, help="passed to every `study real`")):
    """`study real` over seeds (and CPU kernels), one after the other: a table of its six claims. Resumable."""
    from .grid import GridPlan, run_grid, write_grid

    try:
        plan = GridPlan(out, tuple(int(s) for s in seeds.split(",")), tuple(kernels.split(",")),
                        {"allow_degenerate": allow_degenerate}, study="real")
    except ValueError as e:
        _fail(str(e))
    result = run_grid(plan)
    typer.echo(write_grid(plan.out, result["rows"]))
