"""`personadual rl-compare` / `make rl-compare`: the SFT start and the three RL estimators side by side.

The estimators compared over RL seeds. It starts from a finished demo: its data, its `sft_dual` model and
its three RL models (seed 0). Each extra seed trains the three estimators again from `sft_dual` with
the seed-0 run's own resolved config (so equal steps and settings by construction; the seed changes
the prompt order and the rollouts, nothing upstream). Every model is then evaluated on val and test.
One seed cannot separate estimators that differ by a point: a difference that holds in every seed
is worth a sentence, one that flips sign is noise.

Writes OUT/rl_compare.json (split -> model -> seed -> HAcc, balanced accuracy) and OUT/rl_compare.md.
Trained models and evaluations are reused when complete, so a rerun only adds what is missing.
Run it from the directory the demo ran in: the saved RL configs hold paths relative to it.

A sweep (`--set key=value ... --tag NAME`) asks the same question of a changed RL setting: every seed,
0 included, trains again with the overrides under OUT/sweeps/NAME/, against the same SFT start, and
the comparison is written there. `--estimators dual` trains only that estimator (rivals are then absent).
"""

from __future__ import annotations

import json
from pathlib import Path
from statistics import mean

from ..training import is_complete
from .demo import RL_ESTIMATORS, RL_VARIANTS
from .pipeline import Job, Stage, run_stage, training_job
from ..eval.report import load_run, percent

SPLITS = ("val", "test")
START = "sft_dual"


def model_dir(out: Path, name: str, seed: int, tag: str | None = None) -> Path:
    """Seed 0 is the demo's own model; other seeds live under OUT/seeds/, a sweep's under OUT/sweeps/TAG/."""
    if name == START or (seed == 0 and tag is None):
        return out / name / "model"
    return _home(out, tag) / f"{name}_s{seed}" / "model"


def eval_dir(out: Path, name: str, seed: int, split: str, tag: str | None = None) -> Path:
    if name == START or (seed == 0 and tag is None):  # where the demo (test) and earlier comparisons (val) put them
        return out / ("eval" if split == "test" else "eval_val") / name
    return _home(out, tag) / f"eval_{split}" / f"{name}_s{seed}"


def _home(out: Path, tag: str | None) -> Path:
    return out / "seeds" if tag is None else out / "sweeps" / tag


def rl_compare(out: str | Path = "runs/demo", seeds: tuple[int, ...] = (0,), jobs: int = 2,
               eval_args: tuple[str, ...] = (), overrides: tuple[str, ...] = (), tag: str | None = None,
               estimators: tuple[str, ...] = RL_VARIANTS) -> dict:
    """Train what is missing, evaluate what is missing, return and write the comparison.

    ``overrides`` (``key=value``, as after `personadual rl`) need a ``tag``: they change what the
    models are, so they never share a folder with the demo's own."""
    out = Path(out)
    if overrides and not tag:
        raise ValueError("rl-compare: --set changes the RL settings; name the sweep with --tag")
    if tag is not None and (not tag or "/" in tag or tag.startswith(".")):
        raise ValueError(f"rl-compare: --tag {tag!r} must be a plain folder name")
    unknown = [e for e in estimators if e not in RL_ESTIMATORS]
    if unknown or not estimators:
        raise ValueError(f"rl-compare: --estimators {','.join(estimators)!r}: choose from {', '.join(RL_ESTIMATORS)}")
    for name in (START, *(f"rl_{e}" for e in estimators)):
        if not is_complete(out / name / "model"):
            raise FileNotFoundError(f"{out / name / 'model'}: not a finished model; run `personadual demo --out {out}` first"
                                    + (" with --full (it trains dual_paper)" if name == "rl_dual_paper" else ""))
    if overrides:  # a typo fails here, naming the key, not in a training job's log
        from ..config import ConfigError, load_config
        from ..rl.config import RLRunConfig

        for e in estimators:
            try:
                load_config(RLRunConfig, out / f"rl_{e}" / "config.yaml", list(overrides))
            except ConfigError as err:
                raise ConfigError(f"rl-compare --set {' '.join(overrides)}: {err}") from err
    home = out if tag is None else _home(out, tag)
    if tag is not None:  # a tag names one setting: reusing it with other overrides would mix two sweeps' models
        record = home / "overrides.json"
        if record.exists() and json.loads(record.read_text()) != list(overrides):
            raise ValueError(f"rl-compare: {record} holds the sweep {json.loads(record.read_text())}, not "
                             f"{list(overrides)}; choose another --tag")
        home.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(list(overrides)) + "\n")
    models = (START, *(f"rl_{e}" for e in estimators))
    runs = [(name, seed) for name in models for seed in (seeds if name != START else (0,))]
    for stage in (Stage("RL seeds", jobs=lambda: seed_jobs(out, seeds, estimators, overrides, tag),
                        parallel=max(jobs, len(estimators))),
                  Stage("evaluation", jobs=lambda: eval_jobs(out, runs, eval_args, tag), parallel=jobs)):
        run_stage(stage, home / "logs")

    result = {split: {} for split in SPLITS}
    for split in SPLITS:
        for name, seed in runs:
            result[split].setdefault(name, {})[seed] = _scores(eval_dir(out, name, seed, split, tag))
    (home / "rl_compare.json").write_text(json.dumps(result, indent=2) + "\n")
    (home / "rl_compare.md").write_text(markdown(result, seeds, overrides))
    return result


def seed_jobs(out: Path, seeds, estimators, overrides, tag: str | None) -> list[Job]:
    """Each estimator per seed, from the seed-0 run's resolved config (its config.yaml) with the seed, a folder
    of its own and the sweep's overrides. Seed 0 without a sweep is the demo's own model: never trained here."""
    from ..rl.config import RLRunConfig
    from ..rl.train import main

    jobs = []
    for seed in seeds:
        for e in estimators:
            target = model_dir(out, f"rl_{e}", seed, tag)
            if target != out / f"rl_{e}" / "model" and not is_complete(target):
                jobs.append(training_job(f"rl_{e}_s{seed}", main, RLRunConfig, out / f"rl_{e}" / "config.yaml",
                                         [f"seed={seed}", f"output_dir={target.parent}", *overrides], target.parent))
    return jobs


def eval_jobs(out: Path, runs: list[tuple[str, int]], eval_args, tag: str | None) -> list[Job]:
    """Every (model, seed) on val and test, each its own 1-thread worker (``eval_args``: `personadual eval` flags)."""
    from .eval_jobs import eval_job, evaluation

    return [eval_job(f"eval_{split}_{name}_s{seed}",
                     evaluation(name, model_dir(out, name, seed, tag), out / "data" / f"{split}.jsonl",
                                eval_dir(out, name, seed, split, tag), eval_args, threads=1, progress=True))
            for split in SPLITS for name, seed in runs]


def _scores(run: Path) -> dict:
    m = load_run(run)
    return {"hacc": m.get("hacc"), "balanced_acc": m.get("balanced_acc")}


def markdown(result: dict, seeds, overrides: tuple[str, ...] = ()) -> str:
    """Per split: each model's HAcc and balanced accuracy per seed and their mean; then how often the
    `dual` estimator beat its SFT start and each rival present, seed by seed."""
    setting = (f"the demo's settings with {', '.join(f'`{o}`' for o in overrides)}" if overrides
               else "each seed reruns the seed-0 run's config")
    lines = [f"# Stage 2 side by side: the SFT start and the RL estimators, RL seeds {', '.join(map(str, seeds))}", "",
             f"Equal steps and settings ({setting}). HAcc and balanced accuracy in %; "
             "per-seed values, then the mean.", ""]
    for split, models in result.items():
        lines += [f"## {split}", "", "| model | HAcc per seed | HAcc mean | balanced per seed | balanced mean |",
                  "|---|---|---|---|---|"]
        for name, by_seed in models.items():
            h = [s["hacc"] for s in by_seed.values()]
            b = [s["balanced_acc"] for s in by_seed.values()]
            lines.append(f"| {name} | {_row(h)} | {percent(_mean(h))} | {_row(b)} | {percent(_mean(b))} |")
        lead = "rl_dual" if "rl_dual" in models else next(m for m in models if m != START)
        dual, start = models[lead], models[START][0]
        lines.append("")
        for key, label in (("balanced_acc", "balanced accuracy"), ("hacc", "HAcc")):
            wins = [f"above {START} in {_count(dual, lambda seed: _above(dual[seed][key], start[key], strict=True))}"]
            wins += [f"at least {r} in {_count(dual, lambda seed: _above(dual[seed][key], models[r][seed][key]))}"
                     for r in models if r not in (START, lead)]
            lines.append(f"- {lead}'s {label}: " + "; ".join(wins) + ".")
        lines.append("")
    return "\n".join(lines)


def _above(a, b, strict: bool = False) -> bool:
    if a is None or b is None:
        return False
    return a > b if strict else a >= b


def _count(by_seed: dict, holds) -> str:
    return f"{sum(bool(holds(seed)) for seed in by_seed)} of {len(by_seed)} seeds"


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return mean(xs) if xs else None


def _row(xs) -> str:
    return " / ".join(percent(x) for x in xs)
