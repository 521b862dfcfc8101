"""Throwaway stages for tests/test_pipeline.py. A worker process imports them by name (``pipeline_toys:toy_train``),
so they live in a module of their own that imports nothing heavy; the tests put tests/ on the worker's path."""

import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass
class ToyRun:
    """A training-like run: a checkpoint per step, then a final model; killed once ``crash_after`` steps in."""

    output_dir: str
    steps: int = 2
    rate: float = 0  # left at its default, an int in a float field (as TRL's own defaults are)
    crash_after: int | None = None


def last_checkpoint(out: Path) -> int:
    return max((int(p.name.split("-")[1]) for p in out.glob("checkpoint-*")), default=0)


def toy_train(cfg: ToyRun, resume: bool = False) -> dict:
    """Record how it was called (calls.jsonl), go on from the last checkpoint when resumed, save the model."""
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = last_checkpoint(out) if resume else 0
    call = {"resume": resume, "start": start, "rate": repr(cfg.rate), "pid": os.getpid()}
    with open(out / "calls.jsonl", "a") as f:
        f.write(json.dumps(call) + "\n")
    for step in range(start + 1, cfg.steps + 1):
        (out / f"checkpoint-{step}").mkdir()
        if step == cfg.crash_after and not resume:
            raise RuntimeError(f"killed at step {step}")
    (out / "model").mkdir(exist_ok=True)
    (out / "model" / "COMPLETE").write_text("final\n")
    return call


class Stopped(RuntimeError):
    """A study that stopped itself (as `study_bench.StudyStopped` does)."""

    exit_code = 3


@dataclass
class ToyEcho:
    out: str
    values: list
    fail: str | None = None
    stop: bool = False


def toy_echo(cfg: ToyEcho) -> None:
    """Write what this process received (its config's type and values, its thread setting), or fail."""
    if cfg.fail:
        print("about to fail", flush=True)
        raise ValueError(cfg.fail)
    if cfg.stop:
        raise Stopped("stopped at its check")
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    (Path(cfg.out) / "received.json").write_text(json.dumps({
        "type": type(cfg).__name__, "values": cfg.values, "threads": os.environ.get("OMP_NUM_THREADS"),
        "pid": os.getpid()}))
