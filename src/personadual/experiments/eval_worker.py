"""Several evaluations in one process, one after the other: how the study's evaluation jobs run.

A `personadual eval` process spends seconds importing torch, transformers and TRL before it
evaluates anything, which on the tiny model is a sizeable share of one evaluation. The demo's
evaluation stage runs a dozen of them, so it hands each of its parallel 1-thread workers a list
instead. Each evaluation still writes its own folder, metrics.json last, and a finished one is
skipped, so a killed worker resumes where it stopped.

Run: python -m personadual.experiments.eval_worker JOBS.json   (a list of `evaluate` keyword arguments)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def flag_kwargs(flags: list[str]) -> dict:
    """``--max-new-tokens 24`` style flag pairs (the demo's eval overrides) -> `evaluate` keyword arguments."""
    if len(flags) % 2:
        raise ValueError(f"eval settings must come as --flag value pairs, got {flags}")
    out = {}
    for flag, value in zip(flags[::2], flags[1::2]):
        if not flag.startswith("--"):
            raise ValueError(f"eval settings: expected a --flag, got {flag!r}")
        try:
            out[flag[2:].replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[flag[2:].replace("-", "_")] = value
    return out


def split_jobs(jobs: list[dict], workers: int) -> list[list[dict]]:
    """Jobs dealt to ``workers`` lists, most expensive first (a forced evaluation runs every mode once), so the
    lists take about the same time."""
    cost = lambda j: 1 if j.get("drop_persona") or j.get("protocol") == "plain" or not j.get("forced", True) else 2  # noqa: E731
    lists: list[list[dict]] = [[] for _ in range(max(1, min(workers, len(jobs))))]
    loads = [0] * len(lists)
    for job in sorted(jobs, key=cost, reverse=True):
        k = loads.index(min(loads))
        lists[k].append(job)
        loads[k] += cost(job)
    return [jl for jl in lists if jl]


def main(argv: list[str] | None = None) -> None:
    import torch

    from ..eval.run import evaluate

    (path,) = argv if argv is not None else sys.argv[1:]
    torch.set_num_threads(1)
    for job in json.loads(Path(path).read_text()):
        if (Path(job["out_dir"]) / "metrics.json").exists():
            continue
        print(f"[eval] {job.get('name')}: {job['model_dir']} on {job['data']}", flush=True)
        evaluate(**job)


if __name__ == "__main__":
    main()
