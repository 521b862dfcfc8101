"""Where the general mode's scan goes wrong: before the right option, or past it.

PersonaBench's lookup, arithmetic and conversion traces walk the options in letter order and answer
"yes" at the first match (`A 7000 no . B 9000 no . C 8000 yes . so C .`). A wrong answer then has one
of two shapes: an *early* yes (a near value taken for a match before the gold letter) or a *late* one
(the gold letter passed with "no"). RL on a tiny model moves the yes/no threshold of this one learned
test, which trades one kind for the other; this script counts them in eval runs' forced general-mode
predictions (docs/lab_notebook.md, "RL moves one threshold in the general mode's scan").

    python scripts/scan_errors.py runs/demo/eval_val/sft_dual runs/demo/eval_val/rl_dual ...
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

SCAN_FAMILIES = ("lookup", "arith", "convert")
FIRST_YES = re.compile(r"\b([A-Z]) [^ .]+ yes\b")


def kind(pred: dict) -> str:
    """right | early | late | other (no yes, or a yes at the gold letter and still a wrong answer)."""
    if pred["correct"]:
        return "right"
    m = FIRST_YES.search(pred["text"])
    if m is None or m.group(1) == pred["gold"]:
        return "other"
    return "early" if m.group(1) < pred["gold"] else "late"


def count(run_dir: Path, mode: str = "general") -> Counter:
    path = run_dir / "predictions.jsonl"
    if not path.exists():
        raise SystemExit(f"{path}: no such file (an eval run directory has predictions.jsonl)")
    c = Counter()
    for n, line in enumerate(path.read_text().splitlines(), 1):
        try:
            p = json.loads(line)
        except json.JSONDecodeError as e:
            raise SystemExit(f"{path}:{n}: not JSON: {e}") from e
        if p.get("run") == mode and p.get("family") in SCAN_FAMILIES:
            c[kind(p)] += 1
    return c


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(__doc__)
    print("| run | scan items | right | early yes | late yes | other |\n|---|---|---|---|---|---|")
    for arg in argv:
        c = count(Path(arg))
        print(f"| {arg} | {sum(c.values())} | {c['right']} | {c['early']} | {c['late']} | {c['other']} |")


if __name__ == "__main__":
    main(sys.argv[1:])
