"""Stage 1: supervised fine-tuning on traces of both modes, on TRL's SFTTrainer.

We only choose the data (a mix), register the mode markers and make checkpoints crash-safe; the
training loop, LoRA, DeepSpeed and multi-GPU are TRL/accelerate's. The loss covers the completion
only, the mode marker included: choosing the mode is part of what the model learns.
"""

from __future__ import annotations

import json

from .. import modes as modes_lib
from ..training import (MarkCompleteCallback, expose_head_bias, load_model_and_tokenizer, prepare_run, register_markers,
                        save_final_from_trainer)
from ..data.schema import read_split, sample_items
from ..tokenization import example_ids, resolve_chat_template_kwargs, settings_text
from .config import SFTRunConfig
from .mixes import build_examples


def main(cfg: SFTRunConfig, resume: bool = False) -> dict:
    """Train with ``cfg``, itself TRL's SFTConfig: it exists before the model is loaded, so with
    DeepSpeed ZeRO-3 in it from_pretrained loads each weight straight into its shard (zero.Init)."""
    from datasets import Dataset
    from trl import SFTTrainer

    out, ckpt = prepare_run(cfg, resume)
    modes = modes_lib.ModeSet.from_dict(cfg.modes)
    model, tok = load_model_and_tokenizer(cfg.model, cfg.bf16)
    marker_ids = (register_markers(model, tok, modes, cfg.marker_init, cfg.reinit_markers) if cfg.add_marker_tokens
                  else modes_lib.marker_token_ids(tok, modes))
    template_kwargs = resolve_chat_template_kwargs(cfg.chat_template_kwargs, cfg.model)

    items = [it for it in read_split(cfg.data, "train")[: cfg.limit] if it.condition not in cfg.skip_conditions]
    examples = build_examples(items, cfg.mix, tok, modes, cross_mode_share=cfg.cross_mode_share, seed=cfg.seed,
                              chat_template_kwargs=template_kwargs, cross_mode_trains_marker=cfg.cross_mode_trains_marker,
                              cross_mode_unverified=cfg.cross_mode_unverified,
                              teach_mode_choice=cfg.teach_mode_choice, open_choice_conditions=cfg.open_choice_conditions,
                              prompt_form=cfg.prompt_form)
    if not examples:
        raise ValueError(f"{cfg.data}: mix {cfg.mix!r} selected no training examples")
    print(f"[sft] {len(examples)} examples ({cfg.mix}) from {len(items)} items")

    peft_config = cfg.lora.to_peft(model, marker_ids) if cfg.lora is not None else None
    callbacks = [MarkCompleteCallback()]
    if cfg.separation_steps and cfg.mix != "pretrain":
        from .separation import SeparationCallback

        val = read_split(cfg.eval_data, "val")
        callbacks.append(SeparationCallback(out, tok, modes, sample_items(val, cfg.separation_limit or len(val)),
                                            cfg.separation_steps, template_kwargs))
    trainer = SFTTrainer(model=model, args=cfg, train_dataset=Dataset.from_list(example_ids(tok, examples)), processing_class=tok,
                         peft_config=peft_config, callbacks=callbacks)
    expose_head_bias(trainer.model)
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    print(f"[sft] trainable parameters: {trainable:,}")
    if ckpt:
        print(f"[sft] resuming from {ckpt}")
    trainer.train(resume_from_checkpoint=ckpt)

    final = trainer.model
    if cfg.lora is not None:
        final = final.merge_and_unload()  # a standalone model every later stage can from_pretrained
    extra = {"personadual_sft.yaml": (out / "config.yaml").read_text(), "personadual.json": settings_text(template_kwargs)}
    model_dir = save_final_from_trainer(trainer, final, out / "model", extra, merged_lora=cfg.lora is not None)
    result = {"model_dir": str(model_dir), "examples": len(examples), "steps": trainer.state.global_step,
              "trainable_params": trainable}
    if cfg.eval_data and cfg.eval_limit > 0 and cfg.mix != "pretrain":
        result["check"] = end_of_run_check(final, tok, modes, cfg.eval_data, cfg.eval_limit, template_kwargs)
        (out / "sft_check.json").write_text(json.dumps(result["check"], indent=2) + "\n")
    return result


def end_of_run_check(model, tok, modes, eval_data: str, limit: int, chat_template_kwargs: dict | None = None) -> dict:
    """Greedy auto-mode generation on a val sample: format, mode choice, accuracy. Printed and returned."""
    from ..engine import Engine, GenerationConfig
    from ..eval.generation import predict
    from ..eval.metrics import quick_summary

    model.eval()
    items = sample_items(read_split(eval_data, "val"), limit)
    engine = Engine(model, tok, modes, dict(chat_template_kwargs or {}))
    summary = quick_summary(predict(engine, items, config=GenerationConfig(max_new_tokens=64)))
    print(f"[sft] check on {summary['n']} val items: well-formed {summary['well_formed']}, "
          f"preferred mode {summary['preferred_mode_agreement']}, acc {summary['acc']}, "
          f"personalized {summary['personalized_acc']}")
    return summary
