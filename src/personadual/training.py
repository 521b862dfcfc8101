"""Training-run helpers shared by the SFT and RL stages: run folders, crash-safe checkpoints,
loading the model and tokenizer, registering the mode markers, the LoRA settings (`LoraSpec`).

HF's Trainer writes ``checkpoint-N/`` file by file, so a kill mid-save leaves a folder that looks
like a checkpoint but is not. We mark a checkpoint complete (an fsync'ed ``COMPLETE`` file) only
after the Trainer has finished writing it, and resume only from marked ones. Final models are
written to a temporary folder and renamed into place.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from dataclasses import dataclass

from transformers import TrainerCallback

from . import modes as modes_lib
from .config import help_field
from .files import write_synced
from .tokenization import init_marker_rows

COMPLETE = "COMPLETE"
_CKPT = re.compile(r"^checkpoint-(\d+)$")


class MarkCompleteCallback(TrainerCallback):
    """Runs after the Trainer has written a checkpoint (``on_save``) and marks it complete."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if ckpt.is_dir():
                write_synced(ckpt / COMPLETE, f"{state.global_step}\n")
        return control


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest checkpoint marked complete; incomplete ones (a kill mid-save) are removed."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    found = sorted(
        ((int(m.group(1)), p) for p in output_dir.iterdir() if p.is_dir() and (m := _CKPT.match(p.name))),
        reverse=True,
    )
    for _, path in found:
        if (path / COMPLETE).exists():
            return str(path)
        print(f"[checkpoint] removing incomplete {path} (killed while saving)")
        shutil.rmtree(path, ignore_errors=True)
    return None


def save_final(model, tokenizer, out_dir: str | os.PathLike, extra_files: dict[str, str] | None = None,
               state_dict: dict | None = None) -> Path:
    """Save model + tokenizer (safetensors) into ``out_dir`` atomically: tmp folder, then rename.
    ``state_dict``: the full weights, when ``model``'s own are sharded (ZeRO-3, FSDP)."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True, state_dict=state_dict)
    tokenizer.save_pretrained(tmp)
    for name, text in (extra_files or {}).items():
        (tmp / name).write_text(text)
    write_synced(tmp / COMPLETE, "final\n")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir


def save_final_from_trainer(trainer, model, out_dir: str | os.PathLike, extra_files: dict[str, str] | None = None,
                            merged_lora: bool = False) -> Path:
    """`save_final` after a run that may be several processes: all of them take part in gathering the
    full weights (ZeRO-3 and FSDP shard them), the main process alone writes, then all wait for it."""
    acc = trainer.accelerator
    state_dict = None
    if (trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled) and not merged_lora:
        state_dict = acc.get_state_dict(trainer.deepspeed if trainer.is_deepspeed_enabled else trainer.model_wrapped)
    if acc.is_main_process:
        save_final(model, trainer.processing_class, out_dir, extra_files, state_dict=state_dict)
    acc.wait_for_everyone()
    return Path(out_dir)


def is_complete(model_dir: str | os.PathLike) -> bool:
    """True when ``model_dir`` holds a model saved completely by `save_final`."""
    return (Path(model_dir) / COMPLETE).exists()


def prepare_run(cfg, resume: bool) -> tuple[Path, str | None]:
    """Common start of a training run: threads, the output folder, the resolved config, and the
    checkpoint to resume from (refusing to silently overwrite an interrupted run)."""
    from .config import save_config

    if getattr(cfg, "threads", None):
        import torch

        torch.set_num_threads(cfg.threads)
    out = Path(cfg.output_dir)
    ckpt = last_complete_checkpoint(out) if resume else None
    if not resume and any(out.glob("checkpoint-*")):
        raise FileExistsError(f"{out} already has checkpoints: pass --resume, or choose a new output_dir")
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    return out, ckpt


# ---------------------------------------------------------------------------------------------
# Models, tokenizers and the mode markers


def register_markers(model, tok, modes, init: str = "words", reinit: bool = False) -> list[int]:
    """Add the mode markers to the tokenizer (if new) and start their embedding rows; their ids.

    New markers' rows start by ``init`` (`init_marker_rows`: each at its mode name's word rows, or all
    at the mean row); ``reinit`` starts every marker's rows afresh, for a model whose vocabulary
    already has the markers but never trained them (the demo's tiny base). Never shrinks the table
    (Qwen3 pads it past the vocabulary, so new ids usually fit without a resize)."""
    n_before = len(tok)
    added = modes_lib.add_marker_tokens(tok, modes)
    if added and len(tok) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tok), mean_resizing=False)
    ids = modes_lib.marker_token_ids(tok, modes)  # fails loudly if a marker is not one token
    words = {i: " " + m.name.replace("_", " ") for i, m in zip(ids, modes.modes) if reinit or i >= n_before}
    if words:
        init_marker_rows(model, tok, words, n_before, init)
    return ids


def expose_head_bias(model) -> None:
    """Let TRL's fused LM head read a marker-row-trained head.

    TRL computes log-probs from ``lm_head.weight`` and ``lm_head.bias`` directly. PEFT's
    trainable-token wrapper serves ``weight`` with the trained rows merged in, but has no ``bias``;
    a bias-free head (Qwen, Llama) gets an explicit ``bias = None`` on the wrapper. A head with a
    bias is refused, with the fallback named.
    """
    head = model.get_output_embeddings()
    if type(head).__name__ != "TrainableTokensWrapper" or "bias" in vars(head):
        return
    bias = getattr(head.get_base_layer() if hasattr(head, "get_base_layer") else head.original_module, "bias", None)
    if bias is not None:
        raise ValueError("lora.train_embeddings=markers: this model's LM head has a bias, which PEFT's trainable-token "
                         "wrapper does not pass to TRL's fused LM head; use lora.train_embeddings=full")
    head.bias = None


def load_model_and_tokenizer(path: str, bf16: bool = False):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16 if bf16 else torch.float32)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok


# ---------------------------------------------------------------------------------------------
# LoRA: the settings both stages take


EMBEDDING_CHOICES = ("markers", "full", "none")


@dataclass
class LoraSpec:
    r: int = help_field("LoRA rank", 16)
    alpha: int = help_field("LoRA alpha (scale = alpha / r)", 32)
    dropout: float = help_field("LoRA dropout", 0.05)
    target_modules: list[str] | str = help_field("modules to adapt ('all-linear' or a list)", "all-linear")
    train_embeddings: str = help_field("which embedding rows train beside the adapters, so the mode markers (new tokens) "
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
