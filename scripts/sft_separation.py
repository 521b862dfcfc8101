"""Where does a demo's effect die? Its dual SFT model's mode separation on val, step by step.

Retrains a finished demo's `sft_dual` from its own base model and resolved config, with a
separation check every N steps (`separation_steps`: every mode forced on every val item), into
RUN/diagnosis/sft_dual, then prints one row per check: decisive items, how often the forced
general and personalized answers differ per condition, and each forced mode's accuracy on the
conditions where they should differ. The retrained model equals the demo's own (the checks only
read the model), which the script verifies when the demo's model is there.

Run it under the same kernel setting as the demo (ATEN_CPU_CAPABILITY) to retrace that run:
  .venv/bin/python scripts/sft_separation.py runs/demo [--every 25] [--recipe recipes/tiny-cpu/sft.yaml]
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a finished demo's output folder")
    ap.add_argument("--every", type=int, default=25, help="steps between separation checks")
    ap.add_argument("--recipe", type=Path, default=None, help="SFT recipe (default: the demo's saved sft_dual config)")
    ap.add_argument("--out", type=Path, default=None, help="default: RUN/diagnosis/sft_dual")
    args = ap.parse_args()
    run, out = args.run, args.out or args.run / "diagnosis" / "sft_dual"
    recipe = args.recipe or run / "sft_dual" / "config.yaml"
    if not (out / "model" / "COMPLETE").exists():
        cmd = [sys.executable, "-m", "personadual.cli", "sft", "--config", str(recipe), "mix=dual",
               f"model={run / 'base' / 'model'}", f"data={run / 'data'}", f"eval_data={run / 'data'}", f"output_dir={out}",
               "threads=1", "eval_limit=0", f"separation_steps={args.every}", "separation_limit=0", "save_steps=100000"]
        if out.exists():
            cmd.insert(4, "--resume")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    rows = [json.loads(line) for line in (out / "separation.jsonl").read_text().splitlines() if line.strip()]
    conds = ("none", "irrelevant", "misaligned", "helpful", "ambiguous", "personalized")
    print(f"{run}: mode separation of sft_dual on val ({rows[-1]['n']} items)")
    print("step  decisive  " + "  ".join(f"{c[:5]:>5}" for c in conds) + "   gen/pers acc misaligned, helpful, personalized")
    for r in rows:
        d, g, p = r["answers_differ"], r["forced_acc"]["general"], r["forced_acc"]["personalized"]
        accs = ", ".join(f"{100 * g.get(c, 0):.0f}/{100 * p.get(c, 0):.0f}" for c in ("misaligned", "helpful", "personalized"))
        print(f"{r['step']:>4}  {r['decisive']:>8}  " + "  ".join(f"{100 * d.get(c, 0):5.0f}" for c in conds) + f"   {accs}")
    mine, theirs = out / "model" / "model.safetensors", run / "sft_dual" / "model" / "model.safetensors"
    if theirs.exists():
        same = mine.read_bytes() == theirs.read_bytes()
        print(f"retrained model {'equals' if same else 'DIFFERS FROM'} the demo's sft_dual ({theirs})")


if __name__ == "__main__":
    main()
