"""What every study's runner (`pipeline`) stands on: worker processes a few at a time, a clock per stage that
survives a crash, tidying finished runs, and binding a run folder to its settings.

Independent jobs run as parallel 1-thread processes: on 2 cores, two 1-thread jobs beat one
2-thread job for models this small (their matrices are too narrow to keep two threads busy). Each
process is `personadual.experiments.worker` on a saved job file, its output in a log of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..files import write_text_atomic
from ..training import is_complete

WORKER = "personadual.experiments.worker"  # the module every worker process runs (`python -m`)


class StageClock:
    """Wall seconds per study stage, across crashes.

    stage_seconds.json holds finished stages. While a stage runs, its elapsed time is saved every
    ``beat`` seconds to stage_seconds.partial.json, so after a crash (even kill -9) the resumed stage
    adds what ran before, to within one beat. Both files are replaced atomically.
    """

    def __init__(self, out: Path, beat: float = 10.0):
        self.path, self.partial_path, self.beat = out / "stage_seconds.json", out / "stage_seconds.partial.json", beat
        self.times = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.partial = json.loads(self.partial_path.read_text()) if self.partial_path.exists() else {}

    def run(self, name: str, stage) -> bool:
        """Run ``stage()`` (True if it did work); record its time if it did."""
        before, t0, stop = self.partial.get(name, 0.0), time.time(), threading.Event()
        elapsed = lambda: before + time.time() - t0  # noqa: E731

        def beat():
            while not stop.wait(self.beat):
                self._save_partial(name, elapsed())

        ticker = threading.Thread(target=beat, daemon=True)
        ticker.start()
        done = False
        try:
            did = stage()
            done = True
        finally:
            stop.set()
            ticker.join()
            if not done:  # an exception: keep the time spent, exactly
                self._save_partial(name, elapsed())
        if did:
            self.times[name] = round(elapsed(), 1)
            write_text_atomic(self.path, json.dumps(self.times, indent=2) + "\n")
        if name in self.partial:
            self._save_partial(name, None)
        return did

    def _save_partial(self, name: str, seconds: float | None) -> None:
        if seconds is None:
            self.partial.pop(name, None)
        else:
            self.partial[name] = round(seconds, 1)
        if self.partial:
            write_text_atomic(self.partial_path, json.dumps(self.partial, indent=2) + "\n")
        else:  # nothing in flight: no file left behind
            self.partial_path.unlink(missing_ok=True)


class JobFailed(RuntimeError):
    """A worker process that exited with an error: its name, exit code and the tail of its log."""

    def __init__(self, name: str, returncode: int, log: Path):
        self.name, self.returncode, self.log = name, returncode, log
        tail = log.read_text()[-3000:] if log.exists() else ""
        super().__init__(f"job {name!r} failed (exit {returncode}); log {log}:\n{tail}")


def worker_env(threads: int | None) -> dict:
    """The environment of a worker process: ``threads`` threads for torch and BLAS (None: as this process has
    them), no tokenizer threads, the hub offline unless asked for."""
    env = dict(os.environ)
    if threads is not None:
        env.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false",
                    "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")})
    return env


def start_worker(job_file: Path, log: Path, env: dict, append: bool = False) -> tuple[subprocess.Popen, object]:
    """A worker process on ``job_file`` (this interpreter, so it sees the same packages), its output in ``log``."""
    out = open(log, "a" if append else "w")
    return subprocess.Popen([sys.executable, "-m", WORKER, str(job_file)], stdout=out, stderr=subprocess.STDOUT,
                            env=env), out


def run_worker(job_file: Path, log: Path, env: dict, append: bool = False) -> None:
    """One worker process, waited for; `JobFailed` if it fails."""
    proc, out = start_worker(job_file, log, env, append)
    with out:
        proc.wait()
    if proc.returncode != 0:
        raise JobFailed(log.stem, proc.returncode, log)


def run_workers(job_files: dict[str, Path], logs: Path, parallel: int, desc: str, threads: int = 1) -> None:
    """Named worker processes, ``parallel`` at a time, ``threads`` threads each, with a progress bar; the first
    that fails stops the others and raises `JobFailed` with its log's tail."""
    from tqdm import tqdm

    logs.mkdir(parents=True, exist_ok=True)
    env, pending, running = worker_env(threads), list(job_files.items()), {}
    with tqdm(total=len(job_files), desc=desc, unit="job") as bar:
        while pending or running:
            while pending and len(running) < parallel:
                name, job_file = pending.pop(0)
                running[name] = start_worker(job_file, logs / f"{name}.log", env)
            time.sleep(0.5)
            for name, (proc, log) in list(running.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del running[name]
                bar.update(1)
                if proc.returncode != 0:
                    for p, lg in running.values():
                        p.kill()
                        lg.close()
                    raise JobFailed(name, proc.returncode, logs / f"{name}.log")


def prune_checkpoints(runs) -> None:
    """Remove the checkpoints of runs whose final model is complete. They exist to resume a killed run; a
    finished one is never resumed, and a full fine-tune's checkpoint (the weights and Adam's two moments) is
    1.6 GB for SmolLM2: three of them would be most of a study's disk."""
    for run in runs:
        if is_complete(run / "model"):
            for ckpt in run.glob("checkpoint-*"):
                shutil.rmtree(ckpt, ignore_errors=True)


def bind_run(plan) -> None:
    """Record what a study's folder is started with (``plan.identity()`` in study.json), or refuse a rerun with
    other settings: finished stages would be kept under the old ones."""
    path, ident = plan.out / "study.json", plan.identity()
    if path.exists():
        was = json.loads(path.read_text())
        if was != ident:
            raise ValueError(f"{plan.out} was started with {was}; this run asks for {ident}: finished stages would "
                             "be kept under the old settings. Rerun with the same ones, or choose a new --out")
        return
    plan.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(ident, indent=2) + "\n")
