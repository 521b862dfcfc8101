"""The SFT stage's one config. Recipes: recipes/<name>/sft.yaml; CLI overrides: key=value."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from ..config import check_passthrough
from .mixes import ALL_MIXES


def _help(text: str, default=None, factory=None):
    if factory is not None:
        return field(default_factory=factory, metadata={"help": text})
    return field(default=default, metadata={"help": text})


# SFTConfig fields the stage sets itself and trl_args may not change
SFT_FIXED = {"completion_only_loss": "the loss is on completions only (prompts are context)",
             "warmup_steps": "from warmup_ratio"}


EMBEDDING_CHOICES = ("markers", "full", "none")


@dataclass
class LoraSpec:
    r: int = _help("LoRA rank", 16)
    alpha: int = _help("LoRA alpha (scale = alpha / r)", 32)
    dropout: float = _help("LoRA dropout", 0.05)
    target_modules: list[str] | str = _help("modules to adapt ('all-linear' or a list)", "all-linear")
    train_embeddings: str = _help("which embedding rows train beside the adapters, so the mode markers (new tokens) "
                                  "can be learned: 'markers' (only the markers' rows, input and output tables), "
                                  "'full' (both tables in full), 'none' (markers keep their initial rows); "
                                  "true = markers, false = none", "markers")

    def __post_init__(self):
        if isinstance(self.train_embeddings, bool):
            self.train_embeddings = "markers" if self.train_embeddings else "none"
        if self.train_embeddings not in EMBEDDING_CHOICES:
            raise ValueError(f"lora.train_embeddings: expected one of {', '.join(EMBEDDING_CHOICES)} (or true/false), "
                             f"got {self.train_embeddings!r}")

    def to_peft(self, model=None, marker_ids=None):
        """The PEFT LoraConfig (``model`` names its embedding modules; else Llama/Qwen's names).

        Why the markers' rows must train: a mode marker is a token the base model never produced, and
        choosing a mode is the logit of its row in the LM head. Frozen rows leave LoRA to bend every
        hidden state toward two fixed vectors, and the mode choice barely moves.

        'markers' trains those rows alone with PEFT's ``trainable_token_indices``: a few thousand
        parameters where the full tables of Qwen3-8B (untied, 2 x 151,936 x 4,096) would be 1.24B plus
        their Adam state. An untied head gets its own indices; a tied table is wrapped once and PEFT
        ties the head to it. TRL's fused LM head reads ``lm_head.weight``, which PEFT's wrapper serves
        with the trained rows merged in, so the loss sees them (tested for tied and untied tables).
        'full' (``modules_to_save``) is the fallback for a stack where that wrapper is not honoured.
        """
        from peft import LoraConfig

        extra: dict = {}
        names = embedding_module_names(model) if model is not None else ["embed_tokens", "lm_head"]
        if self.train_embeddings == "markers":
            if not marker_ids:
                raise ValueError("lora.train_embeddings=markers needs the marker token ids")
            ids = sorted(set(int(i) for i in marker_ids))
            if model is not None and len(names) == 2 and not _tied(model):
                extra = {"trainable_token_indices": {n: ids for n in names}}
            else:  # one table: PEFT wraps the tied head with the same trained rows
                extra = {"trainable_token_indices": ids}
        elif self.train_embeddings == "full":
            extra = {"modules_to_save": names, **({"ensure_weight_tying": True} if model is None or _tied(model) else {})}
        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=self.target_modules, task_type="CAUSAL_LM", **extra)


def _tied(model) -> bool:
    head = model.get_output_embeddings()
    return head is None or head.weight is model.get_input_embeddings().weight


def embedding_module_names(model) -> list[str]:
    """Short names of the input and output embedding modules (``embed_tokens``, ``lm_head``; ``wte`` in GPT-2)."""
    by_id = {id(m): name for name, m in model.named_modules()}
    mods = [model.get_input_embeddings(), model.get_output_embeddings()]
    return list(dict.fromkeys(by_id[id(m)].rsplit(".", 1)[-1] for m in mods if m is not None))


@dataclass
class SFTRunConfig:
    model: str = _help("model directory or hub id to start from (loaded with from_pretrained)", "")
    data: str = _help("training items (JSONL, or a PersonaBench directory: its train.jsonl)", "")
    output_dir: str = _help("where checkpoints and the final model (output_dir/model) go", "")
    mix: str = _help(f"which traces to train on: {', '.join(ALL_MIXES)}", "dual")
    cross_mode_share: float = _help("dual mix: share of items that also get their other mode's (verified) trace", 0.0)
    eval_data: str | None = _help("items for the end-of-run check (JSONL or directory: its val.jsonl)", None)
    eval_limit: int = _help("how many eval items to generate for the end-of-run check (0 = none)", 400)
    limit: int | None = _help("use only the first N training items", None)
    # optimisation (passed to TRL's SFTConfig)
    learning_rate: float = _help("peak learning rate", 1e-5)
    num_train_epochs: float = _help("epochs (ignored when max_steps > 0)", 1.0)
    max_steps: int = _help("optimizer steps; -1 = use num_train_epochs", -1)
    per_device_train_batch_size: int = _help("batch size per device", 8)
    gradient_accumulation_steps: int = _help("micro-batches per optimizer step", 1)
    lr_scheduler_type: str = _help("HF scheduler name", "cosine")
    warmup_ratio: float = _help("share of steps spent warming up", 0.03)
    weight_decay: float = _help("AdamW weight decay", 0.0)
    max_length: int = _help("max tokens per example (prompt + completion)", 4096)
    seed: int = _help("seed for init, data order and dropout", 0)
    bf16: bool = _help("train in bf16 (GPU)", False)
    gradient_checkpointing: bool = _help("trade compute for memory", False)
    deepspeed: str | None = _help("DeepSpeed JSON config (e.g. recipes/accelerate/zero3.json)", None)
    lora: LoraSpec | None = _help("LoRA settings; null = full fine-tune", None)
    logging_steps: int = _help("log every N steps", 10)
    save_steps: int = _help("checkpoint every N steps", 200)
    save_total_limit: int | None = _help("keep at most N checkpoints", 2)
    threads: int | None = _help("torch CPU threads (None = torch default)", None)
    modes: dict = _help("mode name -> marker", factory=lambda: {"general": "[General_mode]", "personalized": "[Personalized_mode]"})
    add_marker_tokens: bool = _help("register markers as special tokens (new ones start at the mean embedding row)", True)
    chat_template_kwargs: dict | None = _help("passed to the chat template wherever a prompt is rendered (Qwen3: "
                                              "{enable_thinking: false}); saved with the model; null = the start "
                                              "model's saved settings, {} = none", None)
    trl_args: dict = _help("more fields of TRL's SFTConfig, passed as they are (e.g. packing, max_grad_norm, report_to)",
                           factory=dict)

    def __post_init__(self):
        missing = [k for k in ("model", "data", "output_dir") if not getattr(self, k)]
        if missing:
            raise ValueError(f"missing required field(s): {missing}")
        if self.mix not in ALL_MIXES:
            raise ValueError(f"mix: unknown {self.mix!r}; known: {list(ALL_MIXES)}")
        if self.learning_rate <= 0 or self.per_device_train_batch_size < 1 or self.max_length < 8:
            raise ValueError("learning_rate > 0, per_device_train_batch_size >= 1 and max_length >= 8 required")
        if self.max_steps == 0 or (self.max_steps < 0 and self.num_train_epochs <= 0):
            raise ValueError("set max_steps > 0 or num_train_epochs > 0")
        if not 0 <= self.cross_mode_share <= 1:
            raise ValueError("cross_mode_share must be in [0, 1]")
        if self.save_steps < 1:
            raise ValueError("save_steps must be >= 1")
        self.trl_args = {} if self.trl_args is None else self.trl_args
        if self.trl_args:
            from trl import SFTConfig

            check_passthrough(SFTConfig, self.trl_args, {f.name for f in fields(self)}, SFT_FIXED)
