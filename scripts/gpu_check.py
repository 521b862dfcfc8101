"""GPU check: a few SFT and DualGRPO steps of a ~80M-parameter Qwen3 built here, on CUDA in bf16.

Runs the product's own stage entry points (`personadual.sft.train.main`, `personadual.rl.train.main`)
on PersonaBench, with a Trainer callback that times every optimizer step (CUDA-synchronised), and
prints tokens/s, step time, peak memory and the MFU of the SFT step:

    MFU = 6 * params * tokens_per_step / step_time / peak_bf16_flops

6N FLOPs per token (forward 2N, backward 4N); attention's own FLOPs are left out and tokens are the
non-padding tokens TRL counts, so the figure is conservative. The first ``--warmup`` steps (CUDA
context, cuBLAS heuristics, allocator growth) are excluded from the averages.

    bash scripts/gpu_check.sh                  # on the GPU machine: installs the carried wheels, then this
    python scripts/gpu_check.py --cpu --tiny   # smoke test anywhere (~1 min on 2 cores)

Nothing here touches the network: the data is generated, the tokenizer trained and the model built
locally (`personadual.models.tiny`), exactly as the tests do.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

# bf16 dense peak of the cards we expect, in TFLOP/s (vendor datasheets, without sparsity).
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H200", 989.0), ("A100", 312.0))

# ~80M parameters: GPT-2-small-like depth and width, Qwen3 layout (GQA 12/4, SwiGLU, tied embeddings).
GPU_MODEL = dict(hidden_size=768, num_layers=12, num_heads=12, num_kv_heads=4, intermediate_size=2048,
                 max_position_embeddings=1024, vocab_size=4096)
TINY_MODEL = dict(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128,
                  max_position_embeddings=512, vocab_size=600)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpu", action="store_true", help="run on CPU (hides every GPU), fp32")
    ap.add_argument("--tiny", action="store_true", help="a ~0.1M-parameter model and 2 steps per stage")
    ap.add_argument("--qwen3-0.6b", dest="qwen3", action="store_true",
                    help="a random-init model of Qwen3-0.6B's shape on the genuine Qwen3 tokenizer (151,936-row table); "
                         "with --tiny: 2 layers of width 64 on that tokenizer")
    ap.add_argument("--work", type=Path, default=None, help="working directory (default: a fresh temp dir)")
    ap.add_argument("--out", type=Path, default=None, help="also write the results here as JSON")
    ap.add_argument("--sft-steps", type=int, default=None, help="SFT optimizer steps (default 40; tiny 2)")
    ap.add_argument("--rl-steps", type=int, default=None, help="DualGRPO optimizer steps (default 8; tiny 2)")
    ap.add_argument("--warmup", type=int, default=None, help="steps left out of the averages (default 5/2; tiny 0)")
    ap.add_argument("--sft-batch", type=int, default=None, help="SFT sequences per step (default 128; tiny 8)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the card's bf16 dense peak, if not known here")
    a = ap.parse_args(argv)
    tiny = a.tiny
    a.sft_steps = a.sft_steps or (2 if tiny else 40)
    a.rl_steps = a.rl_steps or (2 if tiny else 8)
    a.sft_batch = a.sft_batch or (8 if tiny else 128)
    if a.warmup is None:
        a.warmup = 0 if tiny else 5
    return a


def step_timer(sync):
    """A TrainerCallback recording each optimizer step's wall time (``sync`` first) and that step's logs."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.t0, self.times, self.logs = 0.0, {}, {}

        def on_step_begin(self, args, state, control, **kw):
            sync()
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            sync()
            self.times[state.global_step] = time.perf_counter() - self.t0

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                self.logs[state.global_step] = dict(logs)

    return StepTimer()


def timed_stage(run, sync):
    """Run ``run()`` with a step timer attached to every Trainer it builds.

    The stages' `main(cfg)` takes no callbacks, and copying them here would test a copy; so the timer
    joins transformers' default callback list for the duration of the stage.
    """
    import transformers.trainer as hf_trainer

    timer = step_timer(sync)
    hf_trainer.DEFAULT_CALLBACKS.append(timer)
    try:
        result = run()
    finally:
        hf_trainer.DEFAULT_CALLBACKS.remove(timer)
    return timer, result


def summarise(timer, warmup: int) -> dict:
    """Per-step times and token counts (num_tokens is cumulative in TRL's logs) after ``warmup`` steps."""
    steps = sorted(timer.times)
    cumulative = {s: float(timer.logs.get(s, {}).get("num_tokens", "nan")) for s in steps}
    tokens = {s: cumulative[s] - cumulative.get(s - 1, 0.0) for s in steps}
    kept = [s for s in steps if s > warmup] or steps
    times = [timer.times[s] for s in kept]
    toks = [tokens[s] for s in kept]
    out = {"steps": len(steps), "timed_steps": len(kept), "step_time_s": statistics.median(times),
           "step_time_mean_s": sum(times) / len(times), "tokens_per_step": sum(toks) / len(toks),
           "tokens_per_s": sum(toks) / sum(times), "first_step_s": timer.times[steps[0]]}
    last = timer.logs.get(steps[-1], {})
    out["last_log"] = {k: last[k] for k in ("loss", "grad_norm", "completions/mean_length", "reward",
                                            "dual/reward/general", "dual/reward/personalized") if k in last}
    return out


def peak_tflops(device_name: str, override: float | None) -> float | None:
    if override:
        return override
    for key, tflops in PEAK_BF16_TFLOPS:
        if key in device_name:
            return tflops
    return None


def main(argv=None) -> dict:
    a = parse_args(argv)
    if a.cpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch is imported
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import accelerate
    import datasets
    import peft
    import torch
    import transformers
    import trl

    from personadual.config import load_config
    from personadual.data.personabench import BenchConfig, write
    from personadual.models.tiny import TinyModelConfig, init_tiny
    from personadual.rl.config import RLRunConfig
    from personadual.rl.train import main as rl_main
    from personadual.sft.config import SFTRunConfig
    from personadual.sft.train import main as sft_main

    cuda = torch.cuda.is_available() and not a.cpu
    if not cuda and not a.cpu:
        sys.exit("no CUDA device visible: run with --cpu for the CPU smoke test")
    device = torch.cuda.get_device_name(0) if cuda else f"CPU ({platform.processor() or platform.machine()}, "\
                                                         f"{torch.get_num_threads()} threads)"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    versions = {m.__name__: m.__version__ for m in (torch, transformers, trl, datasets, peft, accelerate)}
    versions["python"] = platform.python_version()
    print(f"[gpu_check] device: {device}")
    print(f"[gpu_check] versions: {json.dumps(versions)}")

    work = a.work or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    for stale in ("bench", "model", "sft", "rl"):  # a rerun starts clean (the stages refuse old checkpoints)
        shutil.rmtree(work / stale, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    write(BenchConfig(seed=0), work / "bench")
    if a.qwen3:
        from personadual.models.real_vocab import QWEN3_0_6B, RealVocabConfig, init_model

        shape = {} if a.tiny else QWEN3_0_6B
        info = init_model(work / "model", RealVocabConfig(**shape))
        info["vocab"], model_config = info["tokens"], {"qwen3_tokenizer": True, **(shape or {"hidden_size": 64})}
    else:
        model_config = TINY_MODEL if a.tiny else GPU_MODEL
        info = init_tiny(work / "bench", work / "model", TinyModelConfig(**model_config))
    n_params = info["params"]
    print(f"[gpu_check] data + tokenizer + model: {time.perf_counter() - t:.1f}s; "
          f"{n_params / 1e6:.1f}M parameters, vocab {info['vocab']}")

    common = [f"data={work / 'bench'}", f"bf16={cuda}", "save_steps=100000", "logging_steps=1", "eval_limit=0",
              "seed=0"] + ([] if cuda else ["threads=2"])
    results = {"device": device, "versions": versions, "params": n_params, "vocab": info["vocab"],
               "model_config": model_config, "cuda": cuda}

    # -- SFT ------------------------------------------------------------------------------------------
    template = ["chat_template_kwargs={enable_thinking: false}"] if a.qwen3 else []  # the paper's non-thinking Qwen3
    sft_cfg = load_config(SFTRunConfig, None, common + template + [
        f"model={work / 'model'}", f"output_dir={work / 'sft'}", "mix=dual", "cross_mode_share=0.3",
        f"max_steps={a.sft_steps}", f"per_device_train_batch_size={a.sft_batch}", "max_length=512",
        "learning_rate=5e-4", "warmup_steps=0.0", "lr_scheduler_type=constant"])
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    timer, _ = timed_stage(lambda: sft_main(sft_cfg), sync)
    sft = summarise(timer, a.warmup)
    sft["batch"] = a.sft_batch
    sft["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    sft["flops_per_step"] = 6 * n_params * sft["tokens_per_step"]
    sft["achieved_tflops"] = sft["flops_per_step"] / sft["step_time_s"] / 1e12
    peak = peak_tflops(device, a.peak_tflops) if cuda else None
    sft["peak_bf16_tflops"] = peak
    sft["mfu"] = sft["achieved_tflops"] / peak if peak else None
    results["sft"] = sft

    # -- DualGRPO -------------------------------------------------------------------------------------
    G, prompts = 8, (1 if a.tiny else 8)
    rl_cfg = load_config(RLRunConfig, None, common + [
        f"model={work / 'sft' / 'model'}", f"output_dir={work / 'rl'}", "estimator.name=dual", "force_modes=true",
        f"num_generations={G}", f"per_device_train_batch_size={G * prompts}",
        f"max_completion_length={16 if a.tiny else 128}", "temperature=1.0", "learning_rate=1e-5",
        f"beta={0.0 if a.tiny else 0.04}", f"max_steps={a.rl_steps}", "limit=512"])
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    timer, _ = timed_stage(lambda: rl_main(rl_cfg), sync)
    rl = summarise(timer, a.warmup if a.rl_steps > a.warmup else 0)
    rl["rollouts_per_step"] = G * prompts
    mean_len = [float(timer.logs[s].get("completions/mean_length", "nan")) for s in sorted(timer.logs)]
    rl["completion_tokens_per_s"] = (sum(mean_len) / len(mean_len)) * G * prompts / rl["step_time_s"] if mean_len else None
    rl["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    results["rl"] = rl
    results["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    report(results)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"[gpu_check] wrote {a.out}")
    return results


def report(r: dict) -> None:
    sft, rl = r["sft"], r["rl"]
    mem = lambda x: f"{x:.2f} GiB" if x is not None else "n/a (CPU)"  # noqa: E731
    print("\n== gpu_check ==")
    print(f"device        {r['device']}")
    print(f"model         Qwen3 {r['params'] / 1e6:.1f}M params (vocab {r['vocab']}), {'bf16' if r['cuda'] else 'fp32'}")
    print(f"SFT           {sft['steps']} steps x {sft['batch']} seqs; median step {sft['step_time_s'] * 1e3:.1f} ms "
          f"(first {sft['first_step_s']:.2f} s); {sft['tokens_per_step']:.0f} tokens/step; "
          f"{sft['tokens_per_s']:,.0f} tokens/s; peak mem {mem(sft['peak_mem_gib'])}")
    mfu = f"{100 * sft['mfu']:.1f}% of {sft['peak_bf16_tflops']:.0f} TFLOP/s" if sft["mfu"] is not None else "n/a"
    print(f"SFT MFU       {sft['achieved_tflops']:.2f} TFLOP/s achieved (6 x params x tokens) = {mfu}")
    ctps = f"{rl['completion_tokens_per_s']:,.0f}" if rl["completion_tokens_per_s"] else "n/a"
    print(f"DualGRPO      {rl['steps']} steps x {rl['rollouts_per_step']} rollouts; median step "
          f"{rl['step_time_s']:.2f} s (generation included; first {rl['first_step_s']:.2f} s); "
          f"{rl['tokens_per_s']:,.0f} tokens/s (prompt + completion); {ctps} completion tokens/s; "
          f"peak mem {mem(rl['peak_mem_gib'])}")
    print(f"last logs     SFT {sft['last_log']}  RL {rl['last_log']}")
    print(f"process RSS   peak {r['peak_rss_gib']:.2f} GiB")


if __name__ == "__main__":
    main()
