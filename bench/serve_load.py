"""Load test of `personadual serve`: N concurrent chat requests on loopback, micro-batching on vs off.

Builds a tiny model in a temp dir, starts the real server (uvicorn subprocess) twice with the same
settings except ``--max-batch-size`` (32, then 1), sends the same N concurrent requests to each with
the official async openai client, and reports p50/p95 latency, throughput and errors for both.
Bounded: N requests, a per-request timeout, and a wall-clock limit per phase.
Ends with ``RESULT microbatch_speedup=<throughput batched / throughput batch-1>``.
Run: .venv/bin/python bench/serve_load.py [--requests 200] [--max-tokens 32] [--threads 1]
"""

import argparse
import asyncio
import statistics
import time

import httpx
from _tiny import tiny_setup

from personadual.data import read_items
from personadual.serve.process import ServerProcess


async def fire(base_url: str, model: str, requests: list[dict], timeout: float, limit_s: float) -> dict:
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=timeout,
                                http_client=httpx.AsyncClient(limits=httpx.Limits(max_connections=len(requests))))

    async def one(req):
        t0 = time.perf_counter()
        try:
            r = await client.chat.completions.create(model=model, **req)
            ok = r.model_extra["personadual"]["mode"] in (None, "general", "personalized")
        except Exception as e:  # counted, never fatal: the point is to count them
            return time.perf_counter() - t0, f"{type(e).__name__}: {e}"
        return time.perf_counter() - t0, None if ok else "bad metadata"

    t0 = time.perf_counter()
    results = await asyncio.wait_for(asyncio.gather(*(one(r) for r in requests)), limit_s)
    wall = time.perf_counter() - t0
    await client.close()
    lat = sorted(t for t, err in results if err is None)
    errors = [err for _, err in results if err is not None]
    q = statistics.quantiles(lat, n=20) if len(lat) >= 2 else [float("nan")] * 19
    return {"wall_s": wall, "throughput_rps": len(lat) / wall, "p50_s": statistics.median(lat) if lat else float("nan"),
            "p95_s": q[18], "errors": len(errors), "first_error": errors[0] if errors else None}


def phase(model_dir, args, requests, max_batch_size: int) -> dict:
    with ServerProcess(model_dir, "--threads", str(args.threads), "--max-batch-size", str(max_batch_size),
                       "--batch-wait-ms", str(args.batch_wait_ms), "--max-queue", str(4 * args.requests)) as srv:
        asyncio.run(fire(srv.base_url, "model", requests[:4], args.timeout, args.limit_s))  # warm-up
        before = httpx.get(srv.url + "/health").json()["batching"]
        res = asyncio.run(fire(srv.base_url, "model", requests, args.timeout, args.limit_s))
        after = httpx.get(srv.url + "/health").json()["batching"]
    batches = after["batches"] - before["batches"]
    res["mean_batch"] = (after["requests"] - before["requests"]) / max(1, batches)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads in the server")
    ap.add_argument("--batch-wait-ms", type=float, default=5.0)
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per request")
    ap.add_argument("--limit-s", type=float, default=600.0, help="seconds per phase")
    args = ap.parse_args()

    data, model_dir = tiny_setup()
    items = read_items(data / "val.jsonl")
    requests = [{"messages": ([{"role": "system", "content": it.persona}] if it.persona else [])
                 + [{"role": "user", "content": it.question}], "max_tokens": args.max_tokens}
                for it in (items[i % len(items)] for i in range(args.requests))]
    rows = {"micro-batching (max 32)": phase(model_dir, args, requests, 32),
            "batch size 1": phase(model_dir, args, requests, 1)}
    print(f"{args.requests} concurrent requests, max_tokens={args.max_tokens}, server threads={args.threads}, "
          f"batch wait {args.batch_wait_ms} ms, loopback")
    print(f"{'':26} {'p50 s':>7} {'p95 s':>7} {'req/s':>7} {'wall s':>7} {'mean batch':>10} {'errors':>6}")
    for name, r in rows.items():
        print(f"{name:26} {r['p50_s']:7.3f} {r['p95_s']:7.3f} {r['throughput_rps']:7.1f} {r['wall_s']:7.2f} "
              f"{r['mean_batch']:10.1f} {r['errors']:6d}")
        if r["first_error"]:
            print(f"  first error: {r['first_error']}")
    b, s = rows.values()
    print(f"RESULT microbatch_speedup={b['throughput_rps'] / s['throughput_rps']:.2f}")


if __name__ == "__main__":
    main()
