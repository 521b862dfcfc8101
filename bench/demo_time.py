"""Wall time of the whole demo per stage on this machine (fresh output folder, venv excluded).

Runs `personadual demo --out <tmp>` and prints stage_seconds; ends with ``RESULT demo_seconds=<s>``.
This one takes the demo's full time (about 15 minutes on 2 cores), unlike the other benchmarks.
Run: .venv/bin/python bench/demo_time.py [OUT_DIR]
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="pd-demo-")) / "demo"
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "personadual.cli", "demo", "--out", str(out)], check=True)
    total = time.time() - t0
    stages = json.loads((out / "stage_seconds.json").read_text())
    for name, secs in stages.items():
        print(f"{name:>12}: {secs:7.1f} s")
    print(f"RESULT demo_seconds={total:.0f}")


if __name__ == "__main__":
    main()
