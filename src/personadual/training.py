"""Training-run helpers shared by the SFT and RL stages: run folders, crash-safe checkpoints,
loading the model and tokenizer, registering the mode markers.

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

from transformers import TrainerCallback

from . import modes as modes_lib
from .files import write_synced
from .tokenization import init_new_rows

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


def register_markers(model, tok, modes) -> list[int]:
    """Add the mode markers to the tokenizer (if new) and give new ones embedding rows; their ids.

    Never shrinks the table (Qwen3 pads it past the vocabulary, so new ids usually fit without a
    resize), and starts every new row at the mean of the trained rows, also where it lands on a
    padding row nobody trained."""
    n_before = len(tok)
    added = modes_lib.add_marker_tokens(tok, modes)
    if added and len(tok) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tok), mean_resizing=False)
    ids = modes_lib.marker_token_ids(tok, modes)  # fails loudly if a marker is not one token
    if added:
        init_new_rows(model, [i for i in ids if i >= n_before], n_before)
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
