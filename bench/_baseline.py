"""Running an earlier commit's code beside the current one, for benchmarks that compare the two.

`checkout(ref)` makes a git worktree of ``ref`` (once; reused while it exists) and returns its path;
the current venv runs it with ``PYTHONPATH=<worktree>/src`` and the worktree as working directory,
so its own recipes and code are used and the current checkout is not touched.
"""

import subprocess
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
