"""``personadual demo``, ``demo-grid`` and ``rl-compare``: Typer command functions, wired up in `personadual.cli`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..cli_args import fail as _fail, stage_settings



def _ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        _fail(f"{flag}: expected comma-separated integers, got {text!r}")


SET_HELP = ("a stage's setting, STAGE:key=value (repeatable; stages: data, tiny, base, sft, rl, eval), e.g. "
            "sft:max_steps=600 or eval:--max-new-tokens=64 (eval takes its CLI flags)")


def parse_stage_settings(items: list[str]) -> dict[str, list[str]]:
    """``STAGE:key=value`` flags -> the demo's stage -> settings lists (eval's become CLI flag pairs)."""
    from .demo import STAGES

    return stage_settings(items, STAGES, ("eval",))


def demo_command(out: Path = typer.Option(Path("runs/demo"), help="output directory"),
                 seed: int = typer.Option(0, help="seed for data and models"),
                 recipes: Optional[Path] = typer.Option(None, help="recipe folder (default: recipes/tiny-cpu)"),
                 jobs: int = typer.Option(2, help="parallel 1-thread jobs"),
                 full: bool = typer.Option(False, "--full", help="demo-full: longer RL, and the authors' estimator (dual_paper) beside dual and grpo"),
                 set_: list[str] = typer.Option([], "--set", help=SET_HELP)):
    """The whole paper on the embedded default (PersonaBench + tiny model). Skips finished stages."""
    from ..config import ConfigError
    from .demo import run_demo

    try:  # a stage's settings are resolved here before its jobs start: a bad key fails with its name
        run_demo(out, seed, recipes, jobs, overrides=parse_stage_settings(set_), full=full)
    except ConfigError as e:
        _fail(str(e))


def demo_grid_command(out: Path = typer.Option(Path("runs/grid"), help="one folder per run, plus grid.md and grid.json"),
                      seeds: str = typer.Option("0,1,2", help="whole-pipeline seeds, comma-separated"),
                      kernels: str = typer.Option("default,native", help="CPU kernel settings, comma-separated: native "
                                                  "(the machine's own), default (no vector kernels), avx2, avx512"),
                      full: bool = typer.Option(False, "--full", help="each run is demo-full"),
                      set_: list[str] = typer.Option([], "--set", help=SET_HELP + "; applied to every run")):
    """The demo over seeds x CPU kernel settings (ATEN_CPU_CAPABILITY): the paper's claims per run, one table."""
    from .grid import GridPlan, run_grid, write_grid

    overrides = parse_stage_settings(set_)  # refuse a bad one before any run starts
    try:
        plan = GridPlan(out, _ints(seeds, "--seeds"), tuple(k.strip() for k in kernels.split(",") if k.strip()),
                        options={"full": full, "overrides": overrides})
    except ValueError as e:
        _fail(str(e))
    result = run_grid(plan)
    typer.echo(write_grid(plan.out, result["rows"]))


def rl_compare_command(out: Path = typer.Option(Path("runs/demo"), help="a finished demo's output directory"),
                       seeds: str = typer.Option("0", help="RL seeds, comma-separated (0 = the demo's own RL models)"),
                       jobs: int = typer.Option(2, help="parallel 1-thread jobs"),
                       set_: list[str] = typer.Option([], "--set", help="an RL setting to sweep, key=value (repeatable; "
                                                      "needs --tag)"),
                       tag: str = typer.Option(None, help="the sweep's name: its models and report go to OUT/sweeps/TAG"),
                       estimators: str = typer.Option("dual,grpo", help="which RL estimators to train and compare (dual_paper: "
                                                                       "after `demo --full`, which trains it)")):
    """The SFT start and the RL estimators on val and test, per RL seed (trains missing seeds)."""
    from .rl_compare import rl_compare

    seed_list = _ints(seeds, "--seeds")
    bad = [s for s in set_ if "=" not in s]
    if bad:
        _fail(f"--set {bad[0]!r}: expected key=value (an RL config field, e.g. temperature=0.5)")
    try:
        rl_compare(out, seed_list, jobs, overrides=tuple(set_), tag=tag,
                   estimators=tuple(e.strip() for e in estimators.split(",") if e.strip()))
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    typer.echo(((out if tag is None else out / "sweeps" / tag) / "rl_compare.md").read_text())
