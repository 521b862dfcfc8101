"""An evaluation as a study's job: `EvalJob` holds `eval.run.evaluate`'s arguments and the threads of the
process that runs it; `run_eval` runs one (in a worker process: `pipeline`, `worker`).

A worker process spends seconds importing torch, transformers and TRL before it evaluates anything,
which on the tiny model is a sizeable share of one evaluation; the demo runs a dozen, so it deals them
to a few 1-thread workers (`pipeline.deal`, by `EvalJob.cost`). Each evaluation writes its own folder,
metrics.json last, and a finished one is skipped, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

from ..config import from_dict


@dataclass
class EvalJob:
    """`evaluate`'s arguments (the same defaults) and ``threads``: torch threads of the process running it."""

    model_dir: str
    data: str
    out_dir: str
    name: str | None = None
    mode: str = "auto"
    forced: bool = True
    drop_persona: bool = False
    limit: int | None = None
    batch_size: int = 128
    max_new_tokens: int = 96
    protocol: str = "auto"
    choice_form: str = "text"
    general_context: str = "persona"
    backend: str = "hf"
    chat_template_kwargs: dict | None = None
    progress: bool = False
    threads: int | None = 1

    @property
    def cost(self) -> int:
        """A forced evaluation runs every mode once more than an auto-only, plain or persona-free one."""
        return 1 if self.drop_persona or self.protocol == "plain" or not self.forced else 2


def flag_settings(flags: list[str] | tuple[str, ...]) -> dict:
    """``--max-new-tokens 24`` style flag pairs (a study's eval settings, `personadual eval`'s flags) -> `EvalJob`
    fields (values read as JSON where they are)."""
    if len(flags) % 2:
        raise ValueError(f"eval settings must come as --flag value pairs, got {list(flags)}")
    out = {}
    for flag, value in zip(flags[::2], flags[1::2]):
        if not flag.startswith("--"):
            raise ValueError(f"eval settings: expected a --flag, got {flag!r}")
        try:
            out[flag[2:].replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[flag[2:].replace("-", "_")] = value
    return out


def evaluation(name: str, model: Path, data: Path, out: Path, flags=(), **settings) -> EvalJob:
    """The evaluation of ``model`` on ``data`` into ``out``: ``settings`` are `EvalJob` fields, ``flags`` the
    study's eval settings as flag pairs, applied last (a bad one fails here, naming it)."""
    values = {"model_dir": str(model), "data": str(data), "out_dir": str(out), "name": name, **settings,
              **flag_settings(flags)}
    return from_dict(EvalJob, values, "eval settings")


def eval_job(job_name: str, job: EvalJob):
    """``job`` as a study's `pipeline.Job`: complete once its metrics.json is written. (The pipeline is imported
    here, not above: a worker process that runs evaluations imports this module, and no more than it needs.)"""
    from .pipeline import config_job, metrics_written

    return config_job(job_name, run_eval, job, Path(job.out_dir), metrics_written, cost=job.cost)


def run_eval(job: EvalJob) -> None:
    """Evaluate on ``job.threads`` torch threads (a worker's 1, beside its sibling workers)."""
    import torch

    from ..eval.run import evaluate

    if job.threads:
        torch.set_num_threads(job.threads)
    print(f"[eval] {job.name}: {job.model_dir} on {job.data}", flush=True)
    evaluate(**{f.name: getattr(job, f.name) for f in fields(job) if f.name != "threads"})
