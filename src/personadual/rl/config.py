"""The RL stage's one config (DualGRPO on TRL). Recipes: recipes/<name>/rl.yaml; CLI overrides: key=value.

Option compatibility is checked here, once, not deep in the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from ..config import check_passthrough
from ..sft.config import LoraSpec, _help
from .advantages import ESTIMATORS
from .rewards import REWARDS

# TRL 1.16 loss types; luspo and vespo assume one advantage per sequence.
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo", "luspo", "vespo")
SEQUENCE_LEVEL_LOSSES = ("luspo", "vespo")


# GRPOConfig fields the stage sets itself and trl_args may not change
GRPO_FIXED = {"chat_template_kwargs": "prompts are rendered before TRL sees them: set `chat_template_kwargs` at the top level"}


@dataclass
class JudgeSpec:
    endpoint: str = _help("OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1", "")
    model: str = _help("judge model name", "")
    api_key_env: str | None = _help("environment variable holding the API key", None)
    weight: float = _help("weight of the judge reward", 0.5)


@dataclass
class RLRunConfig:
    model: str = _help("SFT model directory to start from", "")
    data: str = _help("training items (JSONL, or a PersonaBench directory: its train.jsonl)", "")
    output_dir: str = _help("checkpoints and the final model (output_dir/model)", "")
    eval_data: str | None = _help("items for the end-of-run check (JSONL or directory: its val.jsonl)", None)
    eval_limit: int = _help("eval items for the end-of-run check (0 = none)", 300)
    limit: int | None = _help("use only the first N training items (after shuffling with seed)", None)
    # DualGRPO
    estimator: str = _help(f"advantage estimator: {', '.join(sorted(ESTIMATORS))}", "dual")
    force_modes: bool = _help("split each prompt's G rollouts evenly over the modes (forced markers)", True)
    alpha: float = _help("dual: weight of the marker (mode-selection) advantage", 1.0)
    scale_rewards: str = _help("'group' (divide by reward std, GRPO) or 'none' (Dr. GRPO)", "group")
    prefix_weight: float = _help("dual_paper: marker-token multiple", 2.0)
    weight_reasoning: bool = _help("dual: reasoning advantages times p(mode|x)/q(mode), so a mode learns where it is used", False)
    marker_mass_coef: float = _help("dual: lambda, ascend lambda * log p(any marker | x) so RL cannot leak the markers' "
                                    "probability to other tokens (0 = off)", 0.0)
    reward_weights: dict = _help(f"reward name -> weight; names: {', '.join(REWARDS)}",
                                 factory=lambda: {"accuracy": 0.9, "format": 0.1})
    judge: JudgeSpec | None = _help("optional judge-model reward", None)
    # rollouts and optimisation (passed to TRL's GRPOConfig)
    num_generations: int = _help("G: rollouts per prompt", 8)
    per_device_train_batch_size: int = _help("rollouts per device per step (a multiple of G)", 8)
    gradient_accumulation_steps: int = _help("micro-batches per optimizer step", 1)
    max_completion_length: int = _help("max new tokens per rollout", 256)
    temperature: float = _help("sampling temperature for rollouts", 0.6)
    learning_rate: float = _help("peak learning rate", 1e-6)
    lr_scheduler_type: str = _help("HF scheduler name", "constant")
    beta: float = _help("KL coefficient (0 = no reference model)", 0.04)
    loss_type: str = _help(f"TRL loss: {', '.join(LOSS_TYPES)}", "dapo")
    epsilon: float = _help("PPO clip range", 0.2)
    num_iterations: int = _help("optimisation passes per generation batch", 1)
    mask_truncated_completions: bool = _help("drop truncated rollouts from the loss (their marker is kept)", False)
    max_steps: int = _help("optimizer steps", 100)
    seed: int = _help("seed", 0)
    bf16: bool = _help("bf16 (GPU)", False)
    gradient_checkpointing: bool = _help("trade compute for memory", False)
    deepspeed: str | None = _help("DeepSpeed JSON config", None)
    use_vllm: bool = _help("generate rollouts with vLLM (personadual[vllm])", False)
    vllm_mode: str = _help("'colocate' or 'server'", "colocate")
    lora: LoraSpec | None = _help("LoRA settings; null = full fine-tune", None)
    logging_steps: int = _help("log every N steps", 5)
    save_steps: int = _help("checkpoint every N steps", 50)
    save_total_limit: int | None = _help("keep at most N checkpoints", 2)
    threads: int | None = _help("torch CPU threads", None)
    modes: dict = _help("mode name -> marker", factory=lambda: {"general": "[General_mode]", "personalized": "[Personalized_mode]"})
    chat_template_kwargs: dict | None = _help("passed to the chat template for every prompt (Qwen3: {enable_thinking: "
                                              "false}); saved with the model; null = the SFT model's saved settings", None)
    trl_args: dict = _help("more fields of TRL's GRPOConfig, passed as they are (e.g. max_grad_norm, "
                           "vllm_gpu_memory_utilization, vllm_tensor_parallel_size, vllm_server_host)", factory=dict)

    def __post_init__(self):
        missing = [k for k in ("model", "data", "output_dir") if not getattr(self, k)]
        if missing:
            raise ValueError(f"missing required field(s): {missing}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator: unknown {self.estimator!r}; known: {sorted(ESTIMATORS)}")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type: unknown {self.loss_type!r}; known: {list(LOSS_TYPES)}")
        if self.estimator != "grpo" and self.loss_type in SEQUENCE_LEVEL_LOSSES:
            raise ValueError(f"loss_type {self.loss_type!r} takes one advantage per sequence; "
                             f"estimator {self.estimator!r} gives per-token advantages (use dapo, grpo, bnpo, dr_grpo, cispo or sapo)")
        if self.force_modes and self.num_generations % len(self.modes):
            raise ValueError(f"num_generations={self.num_generations} must be divisible by the {len(self.modes)} modes "
                             "when force_modes is on")
        if self.num_generations < 2:
            raise ValueError("num_generations must be >= 2 (GRPO compares rollouts of one prompt)")
        if self.per_device_train_batch_size % self.num_generations and self.gradient_accumulation_steps == 1:
            raise ValueError("per_device_train_batch_size must be a multiple of num_generations")
        unknown = set(self.reward_weights) - set(REWARDS)
        if unknown:
            raise ValueError(f"reward_weights: unknown reward(s) {sorted(unknown)}; known: {list(REWARDS)}")
        if self.scale_rewards not in ("group", "none"):
            raise ValueError(f"scale_rewards: expected 'group' or 'none', got {self.scale_rewards!r}")
        if self.alpha < 0 or self.marker_mass_coef < 0:
            raise ValueError("alpha and marker_mass_coef must be >= 0")
        if self.marker_mass_coef and not (self.estimator == "dual" and self.force_modes):
            raise ValueError("marker_mass_coef needs estimator 'dual' with force_modes (it weights forced markers by p/q)")
        if self.vllm_mode not in ("colocate", "server"):
            raise ValueError(f"vllm_mode: expected 'colocate' or 'server', got {self.vllm_mode!r}")
        self.trl_args = {} if self.trl_args is None else self.trl_args
        if self.trl_args:
            from trl import GRPOConfig

            check_passthrough(GRPOConfig, self.trl_args, {f.name for f in fields(self)}, GRPO_FIXED)
