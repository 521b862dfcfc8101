"""Batched generation vs one prompt at a time, same prompts and settings, in one run.

Prints tokens/s of both and their ratio; ends with ``RESULT batched_speedup=<x>``.
Run: .venv/bin/python bench/generation.py
"""

import time

from _tiny import tiny_setup

from personadual import modes
from personadual.data import read_items
from personadual.engine import Engine, GenerationConfig


def main(n_prompts: int = 64, max_new_tokens: int = 48):
    data, model = tiny_setup()
    eng = Engine.load(str(model), device="cpu")
    items = read_items(data / "val.jsonl")[:n_prompts]
    prompts = [modes.render_prompt(eng.tokenizer, it.question, it.persona) for it in items]
    cfg = GenerationConfig(max_new_tokens=max_new_tokens, batch_size=n_prompts, stop=())
    eng.generate(prompts[:4], "auto", cfg)  # warm-up

    t0 = time.perf_counter()
    batched = eng.generate(prompts, "auto", cfg)
    t_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    single = [eng.generate([p], "auto", cfg)[0] for p in prompts]
    t_single = time.perf_counter() - t0

    tok_b, tok_s = sum(g.num_tokens for g in batched), sum(g.num_tokens for g in single)
    print(f"batched (batch {n_prompts}): {tok_b} tokens in {t_batched:.2f}s = {tok_b / t_batched:.0f} tok/s")
    print(f"one at a time: {tok_s} tokens in {t_single:.2f}s = {tok_s / t_single:.0f} tok/s")
    speedup = (tok_b / t_batched) / (tok_s / t_single)
    print(f"RESULT batched_speedup={speedup:.2f}")


if __name__ == "__main__":
    main()
