"""Wall time of the whole demo, per stage, against a baseline commit's demo run back to back.

Runs `personadual demo --out <tmp>` with the baseline commit's code and recipes (a git worktree,
``--ref``, default: the last commit before the current demo recipe) and then with the checkout's,
one after the other on the same machine, each from an empty output folder; prints both runs'
stage times and ends with ``RESULT demo_time_ratio=<current / baseline>``. Absolute CPU times move
with the host and the day, so only the ratio of two runs measured together means anything. Let
nothing else run meanwhile. ``--no-baseline`` times the checkout alone
(``RESULT demo_seconds=<s>``). ``--baseline-only`` runs the baseline alone into ``--out``, and a later
``--baseline-from DIR`` reads that finished run's time instead of running it again (the two runs then
are not back to back: keep the machine otherwise idle between them).

Run: .venv/bin/python bench/demo_time.py [--ref COMMIT] [--out DIR] [--no-baseline | --baseline-only |
     --baseline-from DIR]
(the baseline run takes about 15-20 minutes on 2 cores, the current one about 6-8)
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from personadual.files import write_text_atomic

sys.path.insert(0, str(Path(__file__).parent))
BASELINE_REF = "4e1a6a7"  # the demo recipe before the robust, faster one


def timed_demo(out: Path, code: Path | None = None) -> tuple[float, dict]:
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = str(code / "src")
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "personadual.cli", "demo", "--out", str(out)], check=True, env=env,
                   cwd=code or Path(__file__).resolve().parents[1])
    return time.time() - t0, json.loads((out / "stage_seconds.json").read_text())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref", default=BASELINE_REF, help="baseline commit")
    ap.add_argument("--out", type=Path, default=None, help="parent folder of both runs (default: a temp dir)")
    ap.add_argument("--no-baseline", action="store_true", help="time the checkout's demo alone")
    ap.add_argument("--baseline-only", action="store_true", help="time the baseline commit's demo alone")
    ap.add_argument("--baseline-from", type=Path, default=None,
                    help="a finished baseline run's folder (its timing.json) instead of running the baseline")
    args = ap.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="pd-demo-time-"))
    runs = {}
    if args.baseline_from:
        saved = json.loads((args.baseline_from / "timing.json").read_text())
        runs["baseline"] = (saved["seconds"], saved["stages"])
    elif not args.no_baseline:
        from _baseline import checkout

        out = (root / "baseline").resolve()
        runs["baseline"] = timed_demo(out, checkout(args.ref))
        # a quarter hour's measurement, read back by --baseline-from: written whole or not at all
        write_text_atomic(out / "timing.json", json.dumps({"ref": args.ref, "seconds": runs["baseline"][0],
                                                           "stages": runs["baseline"][1]}, indent=2) + "\n")
    if args.baseline_only:
        total = runs["baseline"][0]
        print(f"baseline: {total:.0f} s")
        print(f"RESULT demo_seconds={total:.0f}")
        return
    runs["current"] = timed_demo((root / "current").resolve())
    for name, (total, stages) in runs.items():
        print(f"{name}: {total:.0f} s  (" + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()) + ")")
    if args.no_baseline:
        print(f"RESULT demo_seconds={runs['current'][0]:.0f}")
    else:
        print(f"RESULT demo_time_ratio={runs['current'][0] / runs['baseline'][0]:.3f}")


if __name__ == "__main__":
    main()
