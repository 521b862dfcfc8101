"""Stage 2: DualGRPO on TRL's GRPOTrainer (see `trainer.py` for the hooks we override)."""

from __future__ import annotations

import json
import os
import random

from .. import modes as modes_lib
from ..data.options import option_texts, question_stem
from ..data.schema import Item, read_split
from ..tokenization import resolve_chat_template_kwargs, settings_text
from ..training import (MarkCompleteCallback, expose_head_bias, load_model_and_tokenizer, prepare_run,
                        save_final_from_trainer)
from .config import RLRunConfig
from .rewards import REWARDS, make_judge_reward


def _prompt(it: Item, tokenizer, chat_template_kwargs: dict | None, prompt_form: str,
            persona: str | None) -> tuple[str, dict]:
    """The rendered prompt with ``persona`` and, in the cloze form, the option texts its reply names (else {})."""
    texts, stem = (option_texts(it), question_stem(it)) if prompt_form == "cloze" else ({}, "")
    if texts and stem:
        return modes_lib.render_cloze(stem, persona), texts
    return modes_lib.render_prompt(tokenizer, it.question, persona, chat_template_kwargs), {}


def rows_for(items: list[Item], tokenizer, chat_template_kwargs: dict | None = None,
             prompt_form: str = "chat") -> list[dict]:
    """Items -> GRPO dataset rows: the rendered prompt plus the fields rewards and logs read, and the prompt
    with the persona set aside ("" for rows without one), which set-aside general rollouts are sampled from."""
    rows = []
    for it in items:
        prompt, texts = _prompt(it, tokenizer, chat_template_kwargs, prompt_form, it.persona)
        set_aside = _prompt(it, tokenizer, chat_template_kwargs, prompt_form, None)[0] if it.persona else ""
        rows.append({"prompt": prompt, "prompt_set_aside": set_aside, "gold": it.gold, "kind": it.kind,
                     "condition": it.condition,
                     "persona_pull": it.persona_pull or "", "family": it.family, "item_id": it.id,
                     "persona": it.persona or "", "question": it.question, "option_texts": json.dumps(texts)})
    return rows


def reward_functions(cfg: RLRunConfig) -> list:
    """The reward functions, in the order of ``cfg.reward_weights`` (``rewards``, then the judge)."""
    funcs = [REWARDS[name] for name in cfg.rewards]
    if cfg.judge is not None:
        key = os.environ.get(cfg.judge.api_key_env) if cfg.judge.api_key_env else None
        funcs.append(make_judge_reward(cfg.judge.endpoint, cfg.judge.model, api_key=key))
    return funcs


def build_trainer(cfg: RLRunConfig, model=None, tok=None):
    """The configured DualGRPOTrainer (also used by tests and benchmarks). ``cfg`` is TRL's GRPOConfig
    itself, built before the model is loaded (ZeRO-3 then loads each weight into its shard)."""
    from datasets import Dataset

    from .trainer import DualGRPOTrainer

    modes = modes_lib.ModeSet.from_dict(cfg.modes)
    if model is None:
        model, tok = load_model_and_tokenizer(cfg.model, cfg.bf16)
    if os.path.isdir(cfg.data) and not os.path.exists(os.path.join(cfg.data, f"{cfg.prompt_split}.jsonl")):
        raise FileNotFoundError(f"prompt_split={cfg.prompt_split}: {cfg.data} has no {cfg.prompt_split}.jsonl"
                                + (" (build PersonaBench with rl_bases > 0 for an rl split)" if cfg.prompt_split == "rl" else ""))
    items = read_split(cfg.data, cfg.prompt_split)
    random.Random(cfg.seed).shuffle(items)
    template_kwargs = resolve_chat_template_kwargs(cfg.chat_template_kwargs, cfg.model)
    rows = rows_for(items[: cfg.limit], tok, template_kwargs, cfg.prompt_form)
    marker_ids = modes_lib.marker_token_ids(tok, modes)
    peft_config = cfg.lora.to_peft(model, marker_ids) if cfg.lora is not None else None
    trainer = DualGRPOTrainer(
        model=model, reward_funcs=reward_functions(cfg), args=cfg, train_dataset=Dataset.from_list(rows),
        processing_class=tok, peft_config=peft_config, callbacks=[MarkCompleteCallback()], modes=modes,
        estimator=cfg.estimator, force_modes=cfg.force_modes,
        general_context=cfg.general_context, cloze_rollouts=cfg.cloze_rollouts,
    )
    expose_head_bias(trainer.model)
    trainer.chat_template_kwargs = template_kwargs  # what its prompts were rendered with, saved with the model
    return trainer


def main(cfg: RLRunConfig, resume: bool = False) -> dict:
    out, ckpt = prepare_run(cfg, resume)
    trainer = build_trainer(cfg)
    if ckpt:
        print(f"[rl] resuming from {ckpt}")
    trainer.train(resume_from_checkpoint=ckpt)
    final = trainer.model.merge_and_unload() if cfg.lora is not None else trainer.model
    tok = trainer.processing_class
    template_kwargs = trainer.chat_template_kwargs
    extra = {"personadual_rl.yaml": (out / "config.yaml").read_text(), "personadual.json": settings_text(template_kwargs)}
    model_dir = save_final_from_trainer(trainer, final, out / "model", extra, merged_lora=cfg.lora is not None)
    result = {"model_dir": str(model_dir), "steps": trainer.state.global_step, "estimator": cfg.estimator.name}
    if cfg.eval_data and cfg.eval_limit > 0:
        from ..eval.checks import mode_check

        modes = modes_lib.ModeSet.from_dict(cfg.modes)
        result["check"] = mode_check(final, tok, modes, cfg.eval_data, cfg.eval_limit, template_kwargs)
        (out / "rl_check.json").write_text(json.dumps(result["check"], indent=2) + "\n")
    return result
