"""The SFT stage's one config: TRL's SFTConfig extended. Recipes: recipes/<name>/sft.yaml; CLI overrides: key=value."""

from __future__ import annotations

import dataclasses
import logging
import typing
from dataclasses import dataclass

from trl import SFTConfig

from ..config import fill_trl_defaults, help_field, remember_given
from ..data.schema import Condition
from ..modes import DEFAULT_MARKERS
from ..tokenization import check_marker_init
from ..training import LoraSpec
from .mixes import ALL_MIXES

log = logging.getLogger(__name__)

# Knobs of how the dual mix adds an item's other-mode trace: without a taught mode choice every trace is
# trained anyway, so they change nothing.
CROSS_MODE_KNOBS = ("cross_mode_share", "cross_mode_trains_marker", "cross_mode_unverified")

@dataclass
class SFTRunConfig(SFTConfig):
    """TRL's SFTConfig plus the method's fields: every SFTConfig field is a recipe key too, with TRL's
    own help and checks (packing, max_grad_norm, report_to, ...). Fields re-declared here keep TRL's
    meaning with personadual's defaults."""

    OVERRIDE_CLEARS = {"max_steps": "max_steps_by_mix"}  # `max_steps=3` on the command line means 3 steps, whatever the mix

    model: str = help_field("model directory or hub id to start from (loaded with from_pretrained)", "")
    data: str = help_field("training items (JSONL, or a PersonaBench directory: its train.jsonl)", "")
    mix: str = help_field(f"which traces to train on: {', '.join(ALL_MIXES)}", "dual")
    cross_mode_share: float = help_field("dual mix: share of items that also get their other mode's (verified) trace", 0.0)
    cross_mode_trains_marker: bool = help_field("dual mix: whether those extra traces also train their marker (false: the "
                                                "marker is context, so the mode choice learns only the preferred mode)", True)
    cross_mode_unverified: bool = help_field("dual mix: those extra traces include the other mode's wrong ones too (marker "
                                             "as context), so each mode is defined on every item", False)
    teach_mode_choice: bool = help_field("dual mix: false trains both modes' traces of every item with both markers (right "
                                         "or wrong): no mode preference, the choice is left to RL", True)
    open_choice_conditions: list[str] = help_field("dual mix: persona conditions whose mode choice SFT leaves open (every "
                                                   "mode whose trace is right is trained, marker included: even odds "
                                                   "where both are), for RL's reward to settle, e.g. [helpful]", factory=list)
    prompt_form: str = help_field("chat: every item through the chat template, reasoning and answer block; cloze: items "
                                  "with a question stem and option texts (the `data get` benchmarks, MMLU) taught as "
                                  "the cloze choice form reads them (question alone, no template, reply '[marker]\\n"
                                  "Answer: {option text}'); other items keep the chat form", "chat")
    max_steps_by_mix: dict = help_field("steps for the named mixes instead of max_steps, e.g. {dual: 450}: a mix with "
                                        "more examples per item gets as many passes over its data as the others", factory=dict)
    eval_data: str | None = help_field("items for the end-of-run check (JSONL or directory: its val.jsonl)", None)
    eval_limit: int = help_field("how many eval items to generate for the end-of-run check (0 = none)", 400)
    limit: int | None = help_field("use only the first N training items", None)
    skip_conditions: list[str] = help_field("persona conditions left out of this stage's training items (e.g. "
                                            "[misaligned, ambiguous]: personas the SFT data never shows)", factory=list)
    separation_steps: int = help_field("every N steps, run each mode forced on val items of eval_data and append the modes' "
                                       "separation to output_dir/separation.jsonl (0 = off)", 0)
    separation_limit: int = help_field("how many val items each separation check uses (0 = all)", 0)
    lora: LoraSpec | None = help_field("LoRA settings; null = full fine-tune", None)
    threads: int | None = help_field("torch CPU threads (None = torch default)", None)
    modes: dict = help_field("mode name -> marker", factory=lambda: dict(DEFAULT_MARKERS))
    add_marker_tokens: bool = help_field("register markers as special tokens (new ones start by marker_init)", True)
    marker_init: str = help_field("where new markers' embedding rows start: 'words' (each at the rows of its mode's "
                                  "name, e.g. ' general': distinct from the first step) or 'mean' (all at the mean "
                                  "row: one token to the model until training parts them)", "words")
    reinit_markers: bool = help_field("start the markers' rows by marker_init even where the vocabulary already has "
                                      "them: for a base model that has the tokens but never trained them", False)
    chat_template_kwargs: dict | None = help_field("passed to the chat template wherever a prompt is rendered (Qwen3: "
                                                   "{enable_thinking: false}); saved with the model; null = the start "
                                                   "model's saved settings, {} = none", None)
    # TRL fields with personadual's defaults
    output_dir: str | None = help_field("where checkpoints and the final model (output_dir/model) go", None)
    learning_rate: float = help_field("peak learning rate", 1e-5)
    num_train_epochs: float = help_field("epochs (ignored when max_steps > 0)", 1.0)
    lr_scheduler_type: str = help_field("HF scheduler name", "cosine")
    warmup_steps: float = help_field("warm-up steps; below 1, a share of the run", 0.03)
    max_length: int | None = help_field("max tokens per example (prompt + completion)", 4096)
    seed: int = help_field("seed for init, data order and dropout", 0)
    bf16: bool | None = help_field("train in bf16 (GPU)", False)
    save_steps: float = help_field("checkpoint every N steps", 200)
    save_total_limit: int | None = help_field("keep at most N checkpoints", 2)
    use_cpu: bool | None = help_field("train on CPU; None = when no GPU is visible", None)
    disable_tqdm: bool | None = help_field("hide progress bars", False)
    completion_only_loss: bool | None = help_field("fixed: the loss is on completions only (the prompt is context)", True)

    def __post_init__(self):
        unknown_mixes = set(self.max_steps_by_mix) - set(ALL_MIXES)
        if unknown_mixes:
            raise ValueError(f"max_steps_by_mix: unknown mix(es) {sorted(unknown_mixes)}; known: {list(ALL_MIXES)}")
        self.max_steps = int(self.max_steps_by_mix.get(self.mix, self.max_steps))
        remember_given(self)
        missing = [k for k in ("model", "data", "output_dir") if not getattr(self, k)]
        if missing:
            raise ValueError(f"missing required field(s): {missing}")
        if self.mix not in ALL_MIXES:
            raise ValueError(f"mix: unknown {self.mix!r}; known: {list(ALL_MIXES)}")
        if self.learning_rate <= 0 or self.per_device_train_batch_size < 1 or (self.max_length or 8) < 8:
            raise ValueError("learning_rate > 0, per_device_train_batch_size >= 1 and max_length >= 8 required")
        if self.max_steps == 0 or (self.max_steps < 0 and self.num_train_epochs <= 0):
            raise ValueError("set max_steps > 0 or num_train_epochs > 0")
        if not 0 <= self.cross_mode_share <= 1:
            raise ValueError("cross_mode_share must be in [0, 1]")
        if self.separation_steps < 0 or self.separation_limit < 0:
            raise ValueError("separation_steps and separation_limit must be >= 0")
        if self.separation_steps and not self.eval_data:
            raise ValueError("separation_steps needs eval_data (its val items are what the modes are checked on)")
        check_marker_init(self.marker_init)
        if self.prompt_form not in ("chat", "cloze"):
            raise ValueError(f"prompt_form: expected chat or cloze, got {self.prompt_form!r}")
        unknown = set(self.open_choice_conditions) - set(typing.get_args(Condition))
        if unknown:
            raise ValueError(f"open_choice_conditions: unknown {sorted(unknown)}; known: {list(typing.get_args(Condition))}")
        if self.mix == "dual" and not self.teach_mode_choice:
            ignored = ignored_cross_mode_knobs(self)
            if ignored:
                log.warning("teach_mode_choice=false trains both traces of every item with both markers, so %s "
                            "change nothing; drop them, or set teach_mode_choice=true to use them",
                            ", ".join(f"{k}={getattr(self, k)}" for k in ignored))
        if self.save_steps < 1:
            raise ValueError("save_steps must be >= 1")
        if self.completion_only_loss is False:
            raise ValueError("completion_only_loss: personadual trains on completions only (the prompt is context)")
        self.completion_only_loss = True
        fill_trl_defaults(self)
        super().__post_init__()


def ignored_cross_mode_knobs(cfg: SFTRunConfig) -> list[str]:
    """The cross_mode_* fields set away from their defaults: what a dual mix without a taught mode
    choice ignores (it already trains every item's both traces)."""
    defaults = {f.name: f.default for f in dataclasses.fields(SFTRunConfig)}
    return [k for k in CROSS_MODE_KNOBS if getattr(cfg, k) != defaults[k]]
