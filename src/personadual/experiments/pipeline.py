"""The one runner of every study (`demo`, `rl-compare`, `study real`, `study mmlu-chat`, the grids): a study
declares its stages and writes its report; what happens between is the same for all of them, so it is here.

A `Stage` is a name (stage_seconds.json's key) and what it does: work in this process (writing the data, a
report), whose outputs the stage knows how to recognise, and/or `Job`s: calls of a stage's Python API
(`sft.train.main`, `rl.train.main`, an evaluation, a whole study), each with the typed config it takes,
resolved here with `personadual.config` (a bad key fails before anything starts), and the folder it writes.
For every study alike the runner

- skips a job whose outputs are complete, and an in-process step whose outputs exist;
- resumes a killed training run from its checkpoints (`resumes`: the one rule);
- saves each job's config (logs/NAME.json) and runs it in a worker process (`personadual.experiments.worker`)
  on 1 thread unless the stage says otherwise, a few at a time, with a log each and a progress bar; or, for
  a study whose every stage takes all the cores, in this process, one after the other;
- times each stage across crashes (`StageClock`) and prints what it did or skipped.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..config import config_mapping, from_dict
from ..files import write_text_atomic
from ..training import is_complete
from .jobs import StageClock, run_workers


@dataclass
class Job:
    """One call ``call(config)`` of a stage's Python API that writes ``out``.

    ``saved`` is the mapping a worker process builds ``config`` from again (`personadual.config.from_dict`);
    ``done(out)`` says whether the outputs are complete; a ``resumable`` call also takes ``resume=``;
    ``cost`` weighs the job when several share one worker process (`deal`)."""

    name: str
    call: Callable
    config: Any
    out: Path
    done: Callable[[Path], bool]
    saved: dict
    resumable: bool = False
    cost: int = 1

    def complete(self) -> bool:
        return self.done(self.out)

    def kwargs(self) -> dict:
        """What the call takes beside its config: whether to resume, for a training run."""
        return {"resume": resumes(self.out)} if self.resumable else {}


def model_saved(run: Path) -> bool:
    """A training run's outputs are complete: its final model was saved whole (`training.save_final`)."""
    return is_complete(Path(run) / "model")


def metrics_written(out: Path) -> bool:
    """An evaluation's outputs are complete: metrics.json is written last."""
    return (Path(out) / "metrics.json").exists()


def resumes(run: Path) -> bool:
    """Whether a training run goes on from its checkpoints rather than start afresh: the one rule of every study.

    A run folder with checkpoints is a run that was killed (a finished one is skipped before this is asked);
    `training.prepare_run` picks its last complete checkpoint, and would refuse to start afresh over them."""
    return any(Path(run).glob("checkpoint-*"))


def training_job(name: str, call: Callable, cls: type, recipe: Path | None, overrides: list[str], run: Path) -> Job:
    """A training run ``call(config, resume=...)`` in ``run``: ``cls`` from ``recipe`` and ``overrides``, as
    `load_config` builds it; complete once its final model is saved."""
    mapping, where = config_mapping(cls, recipe, overrides)
    return Job(name, call, from_dict(cls, mapping, where), Path(run), model_saved, saved=mapping, resumable=True)


def config_job(name: str, call: Callable, config: Any, out: Path, done: Callable[[Path], bool], cost: int = 1) -> Job:
    """A call ``call(config)`` on a config dataclass built by the study (an evaluation, a download, a study)."""
    return Job(name, call, config, Path(out), done, saved=config_values(config), cost=cost)


def config_values(config: Any) -> dict:
    """A config dataclass's init fields as JSON values (paths as text): what `from_dict` builds it from again."""
    return {f.name: json_value(getattr(config, f.name)) for f in dataclasses.fields(config) if f.init}


def json_value(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    return value


def qualified_name(obj: Any) -> str:
    """``module:name`` of a function or class: how a job file names what the worker imports."""
    return f"{obj.__module__}:{obj.__qualname__}"


def job_entry(job: Job) -> dict:
    """A job as its file holds it: what to call, its config's type and mapping, the other arguments."""
    return {"name": job.name, "call": qualified_name(job.call), "config_type": qualified_name(type(job.config)),
            "config": job.saved, "kwargs": job.kwargs()}


def save_jobs(path: Path, jobs: list[Job]) -> Path:
    """The file a worker process runs: ``jobs``, one after the other."""
    write_text_atomic(path, json.dumps({"jobs": [job_entry(j) for j in jobs]}, indent=2) + "\n")
    return path


def deal(jobs: list[Job], workers: int) -> list[list[Job]]:
    """Jobs dealt to ``workers`` lists, the most costly first, each to the least loaded list, so that the
    lists take about the same time."""
    lists: list[list[Job]] = [[] for _ in range(max(1, min(workers, len(jobs))))]
    loads = [0] * len(lists)
    for job in sorted(jobs, key=lambda j: j.cost, reverse=True):
        k = loads.index(min(loads))
        lists[k].append(job)
        loads[k] += job.cost
    return [jl for jl in lists if jl]


@dataclass
class Stage:
    """A step of a study: stage_seconds.json's key and what it does.

    ``work`` runs in this process; it is skipped while ``complete()`` holds (it then returns None), or it
    judges that itself (no ``complete``: it returns whether it did anything). ``rerun_after_changes``: its
    outputs are made from earlier stages' (a report), so they are made again when any of those did work.
    ``jobs()`` declares the stage's jobs when the stage starts (a later stage reads what an earlier wrote):
    run in ``parallel`` worker processes of ``threads`` threads each, one per job, or, with ``deal``, dealt
    to that many processes (a process costs seconds of imports; many short jobs share a few); ``inline``:
    one after the other in this process. ``after()`` tidies up after each job run in this process, and
    after the stage's jobs; ``notes()`` prints what a reader should know once the stage's line is out.
    """

    name: str
    work: Callable[[], bool | None] | None = None
    complete: Callable[[], bool] | None = None
    rerun_after_changes: bool = False
    jobs: Callable[[], list[Job]] | None = None
    parallel: int = 1
    threads: int = 1
    deal: int | None = None
    inline: bool = False
    desc: str = ""
    after: Callable[[], None] | None = None
    notes: Callable[[], None] | None = None


def run_stage(stage: Stage, logs: Path, upstream_changed: bool = False) -> bool:
    """Run what is left of ``stage``; True when it did any work."""
    did = run_stage_work(stage, upstream_changed) if stage.work is not None else False
    if stage.jobs is not None:
        did = run_stage_jobs(stage, logs) or did
    return did


def run_stage_work(stage: Stage, upstream_changed: bool) -> bool:
    """The stage's in-process work, unless its outputs are complete (and, for a report, nothing before it changed)."""
    if stage.complete is not None and stage.complete() and not (stage.rerun_after_changes and upstream_changed):
        return False
    did = stage.work()
    return True if did is None else bool(did)


def run_stage_jobs(stage: Stage, logs: Path) -> bool:
    """The stage's unfinished jobs: in this process, or saved and run by worker processes."""
    todo = [job for job in stage.jobs() if not job.complete()]
    if stage.inline:
        for job in todo:
            job.call(job.config, **job.kwargs())
            if stage.after is not None:
                stage.after()
    elif todo:
        run_workers(save_processes(todo, stage, logs), logs, stage.parallel, stage.desc or stage.name, stage.threads)
    if stage.after is not None:
        stage.after()
    return bool(todo)


def save_processes(todo: list[Job], stage: Stage, logs: Path) -> dict[str, Path]:
    """Process name -> its saved job file (logs/NAME.json, beside its log): one per job, or the dealt lists
    named after the stage (``val_checks_0``)."""
    logs.mkdir(parents=True, exist_ok=True)
    if stage.deal is None:
        groups = {job.name: [job] for job in todo}
    else:
        prefix = (stage.desc or stage.name).replace(" ", "_")
        groups = {f"{prefix}_{k}": jobs for k, jobs in enumerate(deal(todo, stage.deal))}
    return {name: save_jobs(logs / f"{name}.json", jobs) for name, jobs in groups.items()}


def run_pipeline(label: str, out: Path, logs: Path, stages: list[Stage]) -> dict[str, float]:
    """Run (or resume) ``stages`` in order, each timed (out/stage_seconds.json) and its line printed; returns the
    stage times."""
    out.mkdir(parents=True, exist_ok=True)
    clock, changed = StageClock(out), False
    for stage in stages:
        did = clock.run(stage.name, functools.partial(run_stage, stage, logs, changed))
        changed = changed or did
        print(f"{label} {stage.name}: {'done in %.1fs' % clock.times[stage.name] if did else 'already complete, skipped'}")
        if stage.notes is not None:
            stage.notes()
    return clock.times
