"""The demo over a grid of seeds x CPU kernel settings: does every run reproduce the paper's five claims?

Each (seed, kernel) pair is a full `personadual demo` in its own folder, run one after the other
(`personadual demo-grid`, resumable: finished runs are read back). The kernel setting
(ATEN_CPU_CAPABILITY: default / avx2 / avx512, or native = the machine's own) changes torch's
floating-point kernels as another processor would. ``--ref COMMIT`` runs that commit's code and
recipes instead (from a git worktree), so the recipe before a change can be judged the same way.

Run: .venv/bin/python bench/demo_robustness.py [--seeds 0,1,2] [--kernels default,native] [--out runs/grid]
     [--ref COMMIT]   (about 10 minutes a run on 2 cores; six runs by default)
Ends with ``RESULT runs_all_claims=K/N``.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main():
    from personadual.experiments.grid import GridPlan, run_grid, write_grid

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--kernels", default="default,native")
    ap.add_argument("--out", type=Path, default=None, help="default: runs/grid (runs/grid-REF with --ref)")
    ap.add_argument("--ref", default=None, help="judge this commit's code and recipes instead of the checkout's")
    args = ap.parse_args()
    seeds = tuple(int(s) for s in args.seeds.split(","))
    kernels = tuple(k.strip() for k in args.kernels.split(",") if k.strip())
    run_one = None
    if args.ref:
        from _baseline import checkout, grid_run_one

        run_one = grid_run_one(checkout(args.ref))
    out = args.out or Path("runs") / (f"grid-{args.ref}" if args.ref else "grid")
    plan = GridPlan(out, seeds, kernels)
    result = run_grid(plan, run_one)
    print(write_grid(plan.out, result["rows"]))
    print(f"RESULT runs_all_claims={result['all_claims']}/{result['n']}")


if __name__ == "__main__":
    main()
