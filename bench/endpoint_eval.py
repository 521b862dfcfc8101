"""`personadual eval --endpoint` against a local `personadual serve`: items per second at concurrency 32 vs 1.

Builds a tiny model and a small PersonaBench in a temp dir, starts the real server once (uvicorn
subprocess, micro-batching up to 32), and runs the same endpoint evaluation twice into fresh
folders: ``--concurrency 1``, then ``--concurrency 32``. Each item is asked in both modes (the server
is a PersonaDual server, so HAcc is measured as in-process). The two runs are greedy, so they
should agree item for item; the benchmark prints how many do (batches of different sizes may round
differently).
Ends with ``RESULT concurrency_speedup=<items/s at 32 / items/s at 1>``.
Run: .venv/bin/python bench/endpoint_eval.py [--items 120] [--max-tokens 48] [--threads 1]
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from _tiny import tiny_setup

from personadual.data import read_items, write_items
from personadual.eval.endpoint import EndpointConfig, evaluate_endpoint
from personadual.serve.process import ServerProcess


def run(url: str, data: Path, out: Path, concurrency: int, max_tokens: int) -> dict:
    t0 = time.perf_counter()
    evaluate_endpoint(EndpointConfig(url, "model", concurrency=concurrency, max_tokens=max_tokens, progress=False),
                      str(data), str(out))
    wall = time.perf_counter() - t0
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    return {"wall_s": wall, "preds": [(p["run"], p["id"], p["mode"], p["answer"]) for p in preds]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=120)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads in the server")
    args = ap.parse_args()

    data, model_dir = tiny_setup()
    items = (read_items(data / "val.jsonl") + read_items(data / "test.jsonl"))[: args.items]
    root = Path(tempfile.mkdtemp(prefix="pd-bench-endpoint-"))
    write_items(root / "items.jsonl", items)
    with ServerProcess(model_dir, "--threads", str(args.threads), "--max-batch-size", "32") as srv:
        run(srv.base_url, root / "items.jsonl", root / "warm-up", 4, args.max_tokens)  # first-call costs out of the way
        one = run(srv.base_url, root / "items.jsonl", root / "c1", 1, args.max_tokens)
        many = run(srv.base_url, root / "items.jsonl", root / "c32", 32, args.max_tokens)
    same = sum(a == b for a, b in zip(one["preds"], many["preds"]))
    rates = {c: len(items) / r["wall_s"] for c, r in (("1", one), ("32", many))}
    print(f"{len(items)} items x 2 modes = {2 * len(items)} requests, max_tokens={args.max_tokens}, "
          f"server threads={args.threads}, micro-batching up to 32, loopback; "
          f"predictions equal in both runs: {same}/{len(one['preds'])}")
    for c, r in (("1", one), ("32", many)):
        print(f"concurrency {c:>2}: {r['wall_s']:7.2f} s, {rates[c]:6.2f} items/s")
    print(f"RESULT concurrency_speedup={rates['32'] / rates['1']:.2f}")


if __name__ == "__main__":
    main()
