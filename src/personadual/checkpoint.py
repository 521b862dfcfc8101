"""Crash-safe checkpoints for every trainer.

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

COMPLETE = "COMPLETE"
_CKPT = re.compile(r"^checkpoint-(\d+)$")


class MarkCompleteCallback(TrainerCallback):
    """Runs after the Trainer has written a checkpoint (``on_save``) and marks it complete."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if ckpt.is_dir():
                _write_synced(ckpt / COMPLETE, f"{state.global_step}\n")
        return control


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


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
    _write_synced(tmp / COMPLETE, "final\n")
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
