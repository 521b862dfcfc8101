"""Running the study's jobs: subprocesses of the `personadual` CLI, a few at a time, and a clock per
stage that survives a crash.

Independent jobs run as parallel 1-thread processes: on 2 cores, two 1-thread jobs beat one
2-thread job for models this small (their matrices are too narrow to keep two threads busy).
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


def cli_command(*args: str) -> list[str]:
    """A `personadual` command run by this interpreter, so a job sees the same environment as its parent."""
    return [sys.executable, "-m", "personadual.cli", *args]


class StageClock:
    """Wall seconds per demo stage, across crashes.

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


def run_jobs(jobs: dict[str, list[str]], logs: Path, parallel: int, desc: str, threads: int = 1) -> None:
    """Run named commands, ``parallel`` at a time, ``threads`` threads each; fail with the log's tail."""
    from tqdm import tqdm

    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    pending, running = list(jobs.items()), {}
    with tqdm(total=len(jobs), desc=desc, unit="job") as bar:
        while pending or running:
            while pending and len(running) < parallel:
                name, cmd = pending.pop(0)
                log = open(logs / f"{name}.log", "w")
                running[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log)
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
                    tail = (logs / f"{name}.log").read_text()[-3000:]
                    raise RuntimeError(f"demo job {name!r} failed (exit {proc.returncode}); log {logs / name}.log:\n{tail}")


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
