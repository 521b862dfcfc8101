"""The mode check a training run ends with: a fixed val sample through the same generation, metrics and
verdict line as `personadual eval`, so what a run prints about itself is what an evaluation would say."""

from __future__ import annotations

from ..data.schema import read_split, sample_items
from ..engine import Engine, GenerationConfig
from .generation import runs_by_mode
from .metrics import balanced_accuracy, hacc, quick_summary
from .verdicts import mode_check_line


def mode_check(model, tok, modes, eval_data: str, limit: int, chat_template_kwargs: dict | None = None) -> dict:
    """HAcc, balanced accuracy and the quick summary on a fixed val sample (end of an RL run), printed."""
    model.eval()
    items = sample_items(read_split(eval_data, "val"), limit)
    runs = runs_by_mode(Engine(model, tok, modes, dict(chat_template_kwargs or {})), items, GenerationConfig(max_new_tokens=64))
    result = {**hacc(runs), "balanced_acc": balanced_accuracy(runs["auto"]), **quick_summary(runs["auto"])}
    print(mode_check_line(result))
    return result
