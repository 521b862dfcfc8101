"""DualGRPO advantages of one fixed generation batch, computed by however many processes run this.

    accelerate launch --config_file recipes/accelerate/cpu2.yaml tests/dist_advantages.py \
        --model M --data D --out adv.json

`tests/test_scale_out.py` runs it with 2 processes (CPU, gloo) and calls `run` in-process with 1,
and checks that both give the same advantages row for row. What it pins down is the trainer's
gather-then-slice: rewards, mode ids and p(mode|x) gathered from every process, advantages
computed on the whole batch, then each process keeps its own rows.

How the batch is fixed: the global batch is ``n_prompts`` dataset rows, each repeated G times
contiguously (TRL's RepeatSampler layout), and each process takes its contiguous slice, as TRL's
dataloader does. Generation is replaced by canned completions chosen by the row's *global* index
(right answer, wrong answer, or no answer block), so the rollouts -- hence the rewards -- are the
same whatever the number of processes. Everything after generation is the real trainer: forced
markers, reward functions, gathers, p(mode|x) from the model, the estimator, the slicing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
from pathlib import Path

CANNED = (  # (template, reward kind); {gold}/{other}: option letters. Markers are put in by the trainer.
    ('\nthe question says so . so {gold} .\n<answer> {{"answer": "{gold}"}} </answer>', "right"),
    ('\nthe persona says so . so {other} .\n<answer> {{"answer": "{other}"}} </answer>', "wrong"),
    ("\nno idea", "malformed"),
)


def canned_completion(row: dict, j: int, seed: int = 0) -> str:
    """The completion text of global row ``j``: drawn from ``CANNED`` by (seed, j) alone."""
    rng = random.Random(f"{seed}-{j}")
    template, _ = CANNED[rng.randrange(len(CANNED))]
    gold = row["gold"]
    other = "A" if gold != "A" else "B"
    return template.format(gold=gold, other=other)


@contextlib.contextmanager
def canned_generation(trainer, texts_global: list[str], start: int):
    """Replace TRL's generation (below our forced-marker hook) by fixed token ids for rows start.."""
    from trl import GRPOTrainer

    tok = trainer.processing_class
    ids_global = [tok.encode(t, add_special_tokens=False) + [tok.eos_token_id] for t in texts_global]
    original = GRPOTrainer._generate_single_turn

    def fake(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        assert num_generations == 1, "forced rows must be generated one by one (docs/dualgrpo.md, trap 1)"
        return [list(ids_global[start + i]) for i in range(len(prompt_ids))], None

    GRPOTrainer._generate_single_turn = fake
    try:
        yield
    finally:
        GRPOTrainer._generate_single_turn = original


def run(model: str, data: str, out: str | None, workdir: str, n_prompts: int = 4, G: int = 4,
        estimator: str = "dual", seed: int = 0) -> dict:
    """Build the trainer, score the fixed batch, gather every row's advantages; rank 0 writes ``out``."""
    import torch
    from accelerate.utils import gather_object

    from personadual.config import load_config
    from personadual.rl.config import RLRunConfig
    from personadual.rl.train import build_trainer

    world = int(os.environ.get("WORLD_SIZE", "1"))  # set by accelerate launch; the trainer's state is made later
    n_rows = n_prompts * G
    if n_rows % world:
        raise ValueError(f"{n_rows} rows do not split evenly over {world} processes")
    per_device = n_rows // world  # not a multiple of G: a prompt's rollouts are spread over two processes
    overrides = [f"model={model}", f"data={data}", f"output_dir={workdir}", f"estimator.name={estimator}",
                 "force_modes=true", f"num_generations={G}", f"per_device_train_batch_size={per_device}",
                 "max_completion_length=32", "beta=0.0", "max_steps=1", "threads=1", f"limit={n_prompts}",
                 f"seed={seed}", "eval_limit=0",
                 # the config allows a per-device batch that is not a multiple of G only with accumulation
                 f"gradient_accumulation_steps={1 if per_device % G == 0 else 2}"]
    trainer = build_trainer(load_config(RLRunConfig, None, overrides))
    trainer.model.train()

    rows = [dict(trainer.train_dataset[i]) for i in range(n_prompts) for _ in range(G)]  # (n_prompts * G,)
    texts = [canned_completion(r, j, seed) for j, r in enumerate(rows)]
    rank = trainer.accelerator.process_index
    assert trainer.accelerator.num_processes == world, (trainer.accelerator.num_processes, world)
    start = rank * per_device
    local = [dict(r) for r in rows[start : start + per_device]]
    torch.manual_seed(seed)
    with canned_generation(trainer, texts, start):
        res = trainer._generate_and_score_completions(local)

    mask_BT = res["completion_mask"].bool()
    adv_BT = res["advantages"]
    mine = [{"row": start + i, "completion_ids": res["completion_ids"][i][mask_BT[i]].tolist(),
             "advantages": adv_BT[i][mask_BT[i]].tolist(), "mode": local[i].get("mode")}
            for i in range(len(local))]
    every = sorted(gather_object(mine), key=lambda r: r["row"])
    result = {"world": world, "rows": every,
              "rewards": trainer._rewards_per_func.tolist()}  # (N, n_funcs), already gathered by TRL
    if out and trainer.accelerator.is_main_process:
        Path(out).write_text(json.dumps(result) + "\n")
    trainer.accelerator.wait_for_everyone()
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--workdir", default=None, help="trainer output_dir (nothing is saved there)")
    ap.add_argument("--n-prompts", type=int, default=4)
    ap.add_argument("--G", type=int, default=4)
    ap.add_argument("--estimator", default="dual")
    a = ap.parse_args()
    run(a.model, a.data, a.out, a.workdir or str(Path(a.out).with_suffix(".work")), a.n_prompts, a.G, a.estimator)
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        # without this, gloo's threads sometimes abort the interpreter's exit ("terminate called without an
        # active exception", SIGABRT) after the results are written
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
