"""Peak memory and time of eval's engine path at V = 151,936, against plain ``model.generate``.

A random-init Qwen3 (2 layers, width 64) on the genuine Qwen3 tokenizer; 16 prompts of about 1,000
tokens. Ours: what ``personadual eval`` runs per mode, the p(mode | x) prefill pass plus batched
generation (`Engine.generate`). Baseline: ``model.generate`` on the same prompt ids, one batch. Each
side runs in a fresh process; peak memory is the growth of the resident set's high-water mark over
the workload (reset before it through /proc/self/clear_refs where the kernel allows it).

Ends with ``RESULT eval_memory_ratio=<ours / baseline>`` (goal <= 1.3).
Run: .venv/bin/python bench/real_vocab.py
"""

import json
import subprocess
import sys
import time
from pathlib import Path

N_PROMPTS, PROMPT_TOKENS, NEW_TOKENS = 16, 1000, 32


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def child(model_dir: str, side: str) -> dict:
    import torch

    from personadual.engine import Engine, GenerationConfig

    torch.set_num_threads(2)
    engine = Engine.load(model_dir, device="cpu")
    filler = "I am a retired sailor who reads about the history of navigation every evening. "
    question = "Which of these instruments measures the angle of a star above the horizon? A sextant B barometer"
    prompts = []
    for i in range(N_PROMPTS):
        persona = f"person number {i}. " + filler * 200
        ids = engine.tokenizer(persona, add_special_tokens=False).input_ids[:PROMPT_TOKENS - 40]
        prompts.append(engine.render_prompt(question, engine.tokenizer.decode(ids)))
    rows = engine.prompt_ids(prompts)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to the current RSS
    except OSError:
        pass
    before = _rss_kb("VmRSS")
    t0 = time.perf_counter()
    with torch.no_grad():
        if side == "ours":
            engine.generate(prompts, "auto", GenerationConfig(max_new_tokens=NEW_TOKENS, batch_size=N_PROMPTS, stop=()))
        else:
            ids, mask = engine._batch(rows)
            engine.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=NEW_TOKENS, do_sample=False,
                                  top_k=None, pad_token_id=engine.pad_id, eos_token_id=engine.end_ids)
    seconds = time.perf_counter() - t0
    return {"side": side, "peak_mb": (_rss_kb("VmHWM") - before) / 1024, "seconds": seconds,
            "prompt_tokens": sum(map(len, rows)) / len(rows)}


def main():
    from _tiny import real_vocab_setup

    _, model = real_vocab_setup()
    results = {}
    for side in ("baseline", "ours", "baseline"):  # baseline before and after ours, to see the noise
        r = subprocess.run([sys.executable, __file__, "--child", str(model), side], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(r.stderr[-3000:])
        out = json.loads(r.stdout.strip().splitlines()[-1])
        results.setdefault(side, []).append(out)
        print(f"{side:8s} peak +{out['peak_mb']:.0f} MB, {out['seconds']:.1f} s "
              f"({N_PROMPTS} prompts of {out['prompt_tokens']:.0f} tokens, {NEW_TOKENS} new tokens)")
    base_mb = sum(r["peak_mb"] for r in results["baseline"]) / len(results["baseline"])
    base_s = sum(r["seconds"] for r in results["baseline"]) / len(results["baseline"])
    ours = results["ours"][0]
    print(f"time ratio (ours / baseline): {ours['seconds'] / base_s:.2f}")
    print(f"RESULT eval_memory_ratio={ours['peak_mb'] / base_mb:.3f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(child(sys.argv[2], sys.argv[3])))
    else:
        main()
