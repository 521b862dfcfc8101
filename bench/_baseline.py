"""Running an earlier commit's code beside the current one, for benchmarks that compare the two.

`checkout(ref)` makes a git worktree of ``ref`` (once; reused while it exists) and returns its path;
the current venv runs it with ``PYTHONPATH=<worktree>/src`` and the worktree as working directory,
so its own recipes and code are used and the current checkout is not touched. `grid_run_one(path)` runs
each run of a grid (`personadual.experiments.grid.run_grid`) there, through that commit's own command line:
an earlier commit has none of the current worker's entry points.
"""

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def checkout(ref: str) -> Path:
    sha = subprocess.run(["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.strip()
    path = Path(tempfile.gettempdir()) / f"personadual-{sha[:12]}"
    if not (path / "src" / "personadual").is_dir():
        subprocess.run(["git", "worktree", "prune"], cwd=ROOT, check=True)
        subprocess.run(["git", "worktree", "add", "--detach", str(path), sha], cwd=ROOT, check=True,
                       capture_output=True)
    return path


def grid_run_one(code: Path, study: tuple[str, ...] = ("demo",)):
    """``run_one`` for `run_grid`: ``personadual demo --out OUT --seed S`` of the worktree ``code`` per run, under
    the run's kernel setting, its output appended to OUT/../NAME.log."""
    def run(run, out: Path) -> None:
        env = {**run.env(), "PYTHONPATH": str(code / "src")}
        out.mkdir(parents=True, exist_ok=True)
        log = out.parent / f"{run.name}.log"
        with open(log, "a") as f:
            proc = subprocess.run([sys.executable, "-m", "personadual.cli", *study, "--out", str(out.resolve()), "--seed",
                                   str(run.seed)], env=env, cwd=code, stdout=f, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(study)} {run.name} failed (exit {proc.returncode}); log: {log}")
    return run
