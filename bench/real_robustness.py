"""PersonaDual on the real model over seeds: does every `study real` run pass its six claims?

Each seed is a full `personadual study real` (SmolLM2-135M-Instruct, the five benchmarks in the cloze form)
in its own folder, run one after the other by the grid runner that `demo-grid` uses (`personadual study
real-grid`, resumable: finished runs are read back).

Run: .venv/bin/python bench/real_robustness.py [--seeds 0,1,2] [--out runs/real-grid]
Ends with ``RESULT real_runs_all_claims=K/N``.
"""

import argparse
from pathlib import Path


def main():
    from personadual.experiments.grid import GridPlan, run_grid, write_grid

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", type=Path, default=Path("runs/real-grid"))
    args = ap.parse_args()
    plan = GridPlan(args.out, tuple(int(s) for s in args.seeds.split(",")), ("native",), study="real")
    result = run_grid(plan)
    print(write_grid(plan.out, result["rows"]))
    print(f"RESULT real_runs_all_claims={result['all_claims']}/{result['n']}")


if __name__ == "__main__":
    main()
