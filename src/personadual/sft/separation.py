"""Watching the marker learn to steer during SFT: the forced modes' separation on val, every N steps.

A dual SFT model is useful to DualGRPO only if its marker decides how it reasons: forced into the
personalized mode on a misaligned item it should follow the persona, forced into the general mode
it should solve. Whether and when that happens during SFT is what `SeparationCallback` records,
one JSON line per check in ``output_dir/separation.jsonl``: the separation measure of
`personadual.eval.metrics.separation` plus each forced mode's accuracy per condition, the same metric
functions `personadual eval` reports with.
"""

from __future__ import annotations

from pathlib import Path

from transformers import TrainerCallback

from ..eval.metrics import rounded_accuracy_by_condition, separation
from ..files import Appender, repair


class SeparationCallback(TrainerCallback):
    """Every ``every`` optimizer steps (and after the last), forced greedy runs of every mode on ``items``."""

    def __init__(self, out: Path, tokenizer, modes, items, every: int, chat_template_kwargs: dict | None = None):
        self.path, self.tok, self.modes, self.items, self.every = Path(out) / "separation.jsonl", tokenizer, modes, items, every
        self.kwargs = dict(chat_template_kwargs or {})
        repair(self.path)  # a run resumed after a crash continues the file

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step
        if state.is_world_process_zero and model is not None and (step % self.every == 0 or step == state.max_steps):
            with Appender(self.path) as log:
                log.write(measure_separation(model, self.tok, self.modes, self.items, self.kwargs, step))
        return control


def measure_separation(model, tok, modes, items, chat_template_kwargs: dict | None = None, step: int | None = None) -> dict:
    """Forced runs of every mode on ``items``: separation, and each mode's accuracy per condition."""
    import torch

    from ..engine import Engine, GenerationConfig
    from ..eval.generation import runs_by_mode

    was_training = model.training
    model.eval()
    with torch.no_grad():
        runs = runs_by_mode(Engine(model, tok, modes, dict(chat_template_kwargs or {})), items,
                            GenerationConfig(max_new_tokens=64))
    if was_training:
        model.train()
    acc = {mode: rounded_accuracy_by_condition(runs[mode]) for mode in modes.names}
    return {"step": step, **separation(runs), "forced_acc": acc}
