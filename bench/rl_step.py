"""Median optimizer-step time: DualGRPOTrainer (dual estimator, forced modes) vs TRL's GRPOTrainer,
same tiny model, batch and generation settings, in one run.

Ends with ``RESULT step_time_ratio=<ours / trl>`` (goal <= 1.05).
Run: .venv/bin/python bench/rl_step.py [--real-vocab]

``--real-vocab``: the same comparison on a random-init Qwen3 with the genuine Qwen3 tokenizer and its
151,936-row table (2 layers, width 64), where the LM head dominates every step.
"""

import statistics
import sys
import time

from _tiny import real_vocab_setup, tiny_setup
from transformers import TrainerCallback

from personadual.config import load_config
from personadual.rl.config import RLRunConfig
from personadual.rl.train import build_trainer


class StepTimer(TrainerCallback):
    def __init__(self):
        self.times, self._t = [], None

    def on_step_begin(self, args, state, control, **kw):
        self._t = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self.times.append(time.perf_counter() - self._t)


def timed(trainer) -> float:
    timer = StepTimer()
    trainer.add_callback(timer)
    trainer.train()
    return statistics.median(timer.times[2:])  # the first steps warm up


def main(steps: int = 12, real_vocab: bool = False):
    from trl import GRPOTrainer

    data, model = real_vocab_setup() if real_vocab else tiny_setup()
    overrides = [f"model={model}", f"data={data}", "output_dir=/tmp/pd-bench-rl", "num_generations=8",
                 "per_device_train_batch_size=16", "max_completion_length=32", "temperature=1.0",
                 "learning_rate=1e-4", "beta=0.0", f"max_steps={steps}", "save_steps=1000", "logging_steps=1000",
                 "eval_limit=0", "estimator.name=dual", "force_modes=true"]
    ours = build_trainer(load_config(RLRunConfig, None, overrides))
    plain = GRPOTrainer(model=build_trainer(load_config(RLRunConfig, None, overrides)).model,
                        reward_funcs=ours.reward_funcs, args=ours.args, train_dataset=ours.train_dataset,
                        processing_class=ours.processing_class)
    t_trl = timed(plain)
    t_ours = timed(ours)
    t_trl2 = timed(GRPOTrainer(model=plain.model, reward_funcs=ours.reward_funcs, args=ours.args,
                               train_dataset=ours.train_dataset, processing_class=ours.processing_class))
    base = (t_trl + t_trl2) / 2  # TRL measured before and after ours, to cancel drift
    print(f"TRL GRPOTrainer median step: {base * 1000:.0f} ms ({t_trl * 1000:.0f}, {t_trl2 * 1000:.0f})")
    print(f"DualGRPOTrainer median step: {t_ours * 1000:.0f} ms")
    print(f"RESULT step_time_ratio={t_ours / base:.3f}")


if __name__ == "__main__":
    main(real_vocab="--real-vocab" in sys.argv[1:])
