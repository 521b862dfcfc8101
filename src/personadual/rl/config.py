"""The RL stage's one config: TRL's GRPOConfig extended for DualGRPO. Recipes: recipes/<name>/rl.yaml; CLI overrides: key=value.

Option compatibility is checked here, once, not deep in the trainer. The advantage estimator is one nested
block, its registered config (``estimator: {name: dual, alpha: 8.0}``; `estimator_recipe` maps the older
flat keys onto it): that config checks its own settings, this one only how they combine with the rest.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from trl import GRPOConfig

from ..config import fill_trl_defaults, help_field, remember_given
from ..modes import DEFAULT_MARKERS, GENERAL
from ..training import LoraSpec
from .advantages import DualConfig
from .estimator_recipe import as_estimator_config, nest_estimator_keys
from .estimator_registry import EstimatorConfig, name_of
from .rewards import REWARDS

# TRL 1.16 losses that assume one advantage per sequence (DualGRPO's are per token)
SEQUENCE_LEVEL_LOSSES = ("luspo", "vespo")
DEFAULT_ESTIMATOR = DualConfig  # what a recipe without an estimator block trains with


@dataclass
class JudgeSpec:
    endpoint: str = help_field("OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1", "")
    model: str = help_field("judge model name", "")
    api_key_env: str | None = help_field("environment variable holding the API key", None)
    weight: float = help_field("weight of the judge reward", 0.5)


@dataclass
class RLRunConfig(GRPOConfig):
    """TRL's GRPOConfig plus DualGRPO's fields: every GRPOConfig field is a recipe key too, with TRL's
    own help and checks (max_grad_norm, vllm_gpu_memory_utilization, ...). Fields re-declared here
    keep TRL's meaning with personadual's defaults. Option compatibility is checked here, once."""

    model: str = help_field("SFT model directory to start from", "")
    data: str = help_field("training items (JSONL, or a PersonaBench directory: its {prompt_split}.jsonl)", "")
    prompt_split: str = help_field("with a data directory, the split RL prompts come from: train (the SFT items), or rl "
                                   "(PersonaBench's rl split: questions stage 1 never trained on)", "train")
    eval_data: str | None = help_field("items for the end-of-run check (JSONL or directory: its val.jsonl)", None)
    eval_limit: int = help_field("eval items for the end-of-run check (0 = none)", 300)
    limit: int | None = help_field("use only the first N training items (after shuffling with seed)", None)
    prompt_form: str = help_field("chat (the chat template, reasoning and answer block) or cloze (items with a question "
                                  "stem and option texts asked as the cloze choice form reads them; reward them with "
                                  "cloze_accuracy)", "chat")
    # DualGRPO
    cloze_rollouts: str = help_field("with prompt_form: cloze, how a rollout's answer is drawn: generate (free text, "
                                     "rewarded when it spells an option) or options (one of the item's options, drawn "
                                     "from the model's per-character option scores at the rollout temperature, as "
                                     "`eval --choice-form cloze` scores them)", "generate")
    general_context: str = help_field("where the general mode's rollouts are sampled: persona (the prompt as given) or "
                                      "set-aside (the prompt without its persona, as `eval --general-context set-aside` "
                                      "reads the model); the marker is trained on the prompt as given either way",
                                      "persona")
    estimator: EstimatorConfig = help_field("the advantage estimator, one block: its name and the settings it reads "
                                            "(`personadual keys rl estimator.`)", factory=DEFAULT_ESTIMATOR)
    force_modes: bool = help_field("split each prompt's G rollouts evenly over the modes (forced markers)", True)
    rewards: dict = help_field(f"reward name -> weight; names: {', '.join(REWARDS)} (TRL's reward_weights follow)",
                               factory=lambda: {"accuracy": 0.9, "format": 0.1})
    judge: JudgeSpec | None = help_field("optional judge-model reward", None)
    lora: LoraSpec | None = help_field("LoRA settings; null = full fine-tune", None)
    threads: int | None = help_field("torch CPU threads", None)
    modes: dict = help_field("mode name -> marker", factory=lambda: dict(DEFAULT_MARKERS))
    chat_template_kwargs: dict | None = help_field("passed to the chat template for every prompt (Qwen3: "
                                                   "{enable_thinking: false}); saved with the model; null = the SFT "
                                                   "model's saved settings", None)
    # TRL fields with personadual's defaults
    output_dir: str | None = help_field("checkpoints and the final model (output_dir/model)", None)
    scale_rewards: str = help_field("'group' (divide by reward std, GRPO) or 'none' (Dr. GRPO); TRL's key, which the "
                                    "estimator reads too (bound into its config)", "group")
    num_generations: int | None = help_field("G: rollouts per prompt", 8)
    max_completion_length: int | None = help_field("max new tokens per rollout", 256)
    temperature: float = help_field("sampling temperature for rollouts", 0.6)
    learning_rate: float = help_field("peak learning rate", 1e-6)
    lr_scheduler_type: str = help_field("HF scheduler name", "constant")
    beta: float = help_field("KL coefficient (0 = no reference model)", 0.04)
    max_steps: int = help_field("optimizer steps", 100)
    seed: int = help_field("seed", 0)
    bf16: bool | None = help_field("bf16 (GPU)", False)
    logging_steps: float = help_field("log every N steps", 5)
    save_steps: float = help_field("checkpoint every N steps", 50)
    save_total_limit: int | None = help_field("keep at most N checkpoints", 2)
    use_cpu: bool | None = help_field("train on CPU; None = when no GPU is visible", None)

    @classmethod
    def normalise_inputs(cls, recipe: dict, given: dict, where: str) -> tuple[dict, dict]:
        """`load_config`'s hook: the recipe's and the overrides' estimator keys as one block each."""
        return nest_estimator_keys(recipe, given, where, name_of(DEFAULT_ESTIMATOR))

    def __post_init__(self):
        self.estimator = as_estimator_config(self.estimator)
        remember_given(self)
        missing = [k for k in ("model", "data", "output_dir") if not getattr(self, k)]
        if missing:
            raise ValueError(f"missing required field(s): {missing}")
        if self.prompt_form not in ("chat", "cloze"):
            raise ValueError(f"prompt_form: expected chat or cloze, got {self.prompt_form!r}")
        if self.cloze_rollouts not in ("generate", "options"):
            raise ValueError(f"cloze_rollouts: expected generate or options, got {self.cloze_rollouts!r}")
        if self.cloze_rollouts == "options" and not (self.prompt_form == "cloze" and self.force_modes):
            raise ValueError("cloze_rollouts: options draws each forced mode's answer among a cloze item's options; it "
                             "needs prompt_form: cloze and force_modes: true")
        if self.general_context not in ("persona", "set-aside"):
            raise ValueError(f"general_context: expected persona or set-aside, got {self.general_context!r}")
        if self.general_context == "set-aside" and not (self.force_modes and GENERAL in self.modes):
            raise ValueError("general_context: set-aside samples the forced general mode without the persona; it needs "
                             "force_modes: true and a 'general' mode")
        if not self.estimator.PER_SEQUENCE and self.loss_type in SEQUENCE_LEVEL_LOSSES:
            raise ValueError(f"loss_type {self.loss_type!r} takes one advantage per sequence; estimator "
                             f"{self.estimator.name!r} gives per-token advantages (use dapo, grpo, bnpo, dr_grpo, cispo or sapo)")
        if self.estimator.needs_forced_modes() and not self.force_modes:
            raise ValueError(f"estimator {self.estimator.name!r} needs force_modes: true "
                             f"({self.estimator.needs_forced_modes()})")
        if self.force_modes and self.num_generations % len(self.modes):
            raise ValueError(f"num_generations={self.num_generations} must be divisible by the {len(self.modes)} modes "
                             "when force_modes is on")
        if self.num_generations < 2:
            raise ValueError("num_generations must be >= 2 (GRPO compares rollouts of one prompt)")
        if self.per_device_train_batch_size % self.num_generations and self.gradient_accumulation_steps == 1:
            raise ValueError("per_device_train_batch_size must be a multiple of num_generations")
        unknown = set(self.rewards) - set(REWARDS)
        if unknown:
            raise ValueError(f"rewards: unknown reward(s) {sorted(unknown)}; known: {list(REWARDS)}")
        # TRL's scale_rewards decides for the estimator too (its config checks the value)
        self.estimator = dataclasses.replace(self.estimator, scale_rewards=self.scale_rewards)
        if self.vllm_mode not in ("colocate", "server"):
            raise ValueError(f"vllm_mode: expected 'colocate' or 'server', got {self.vllm_mode!r}")
        weights = [float(w) for w in self.rewards.values()] + ([float(self.judge.weight)] if self.judge else [])
        if self.reward_weights is not None and [float(w) for w in self.reward_weights] != weights:
            raise ValueError("reward_weights: personadual sets it from `rewards` (and `judge.weight`); set those instead")
        self.reward_weights = weights
        fill_trl_defaults(self)
        super().__post_init__()
