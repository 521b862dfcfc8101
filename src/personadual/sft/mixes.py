"""SFT data mixes: which trace of each item becomes a training example. The paper's ablations are
one name each.

Every mix keeps only traces that reach the gold answer (the paper keeps a teacher trace only when it
verifies), except `persona_prompted`, which is the naive pipeline that does not verify.

- ``dual``: each item's preferred-mode trace (personalized for helpful personas and personalized
  items, general otherwise). PersonaDual's stage 1. With ``cross_mode_share`` > 0, an item's other
  mode's trace is added too (when it is right) for that share of items: the model then learns that
  the *marker* decides how it reasons, not the input alone -- which forced exploration in RL needs,
  since a forced marker that the model ignores gives two copies of the same rollout.
  ``cross_mode_trains_marker=False`` keeps the other mode's marker out of the loss (it is context,
  as a forced marker is): the reasoning learns to follow the marker, while the mode choice is
  taught only the item's preferred mode instead of a preferred/other mixture (with both markers
  trained, p(preferred mode) is pulled toward 1 / (1 + share) on every item).
  ``cross_mode_unverified=True`` adds the other mode's trace even where it misses the gold (the
  personalized mode following a misaligned persona, the persona-blind general mode on a
  personalized question), always with its marker as context. Then every mode is defined on every
  kind of item, so the input alone never tells which reasoning follows: only the marker does.
  Left undefined, a mode's behaviour there is whatever generalisation gives, and two runs of the
  same recipe can end with modes apart or with one model twice. A wrong trace never teaches the
  mode choice (its marker is not in the loss), so a model that picks its own mode still answers
  with what verified.
  ``teach_mode_choice=False`` trains both modes' traces of every item, right or wrong, each with its
  marker in the loss: SFT then teaches two ways to reason and no preference between them (even odds
  on every item), and the mode choice is left to RL alone.
  ``open_choice_conditions`` does that for some persona conditions only, and only with traces that
  verify: an item of such a condition trains every mode whose trace is right, each behind its marker
  in the loss. Where both modes are right (a helpful persona: its records name the gold, and solving
  finds it too) SFT gives even odds, and which mode pays on such items is left to RL's reward; the
  other conditions' choice is taught as usual.
- ``general_only``: the general trace of every item it solves (one mode, persona in the prompt).
- ``personalized_only``: the personalized trace of every item it solves (helpful, irrelevant, none,
  personalized, some ambiguous; never misaligned, since following that persona is wrong).
- ``persona_prompted``: the naive persona-in-the-prompt baseline: one reasoning pattern that uses the
  persona whenever one is given (personalized trace), unverified; general trace without a persona.
- ``pretrain``: what a base model knows before persona training: each base question once, persona
  removed, general reasoning, no mode marker; an item's persona-free ``meta["knowledge"]`` question
  (e.g. which option is travel gear) replaces it where the item has one.
"""

from __future__ import annotations

import random
from typing import Callable, Iterable

from .. import modes as modes_lib
from ..data.options import option_texts, question_stem
from ..data.schema import Item

PROMPT_FORMS = ("chat", "cloze")

Example = dict  # {"prompt": rendered prompt, "completion": response + end of turn[, "marker_in_loss": False]}


def _pick_dual(it: Item) -> str | None:
    return it.preferred_mode


def _pick_verified(mode: str) -> Callable[[Item], str | None]:
    return lambda it: mode if it.trace_correct(mode) else None


def _pick_persona_prompted(it: Item) -> str | None:
    return "personalized" if it.persona else "general"


MIXES: dict[str, Callable[[Item], str | None]] = {
    "dual": _pick_dual,
    "general_only": _pick_verified("general"),
    "personalized_only": _pick_verified("personalized"),
    "persona_prompted": _pick_persona_prompted,
}
ALL_MIXES = (*MIXES, "pretrain")


def build_examples(items: Iterable[Item], mix: str, tokenizer, modes: modes_lib.ModeSet = modes_lib.DEFAULT_MODES,
                   persona_template: str = modes_lib.PAPER_PERSONA_TEMPLATE, cross_mode_share: float = 0.0,
                   seed: int = 0, chat_template_kwargs: dict | None = None,
                   cross_mode_trains_marker: bool = True, cross_mode_unverified: bool = False,
                   teach_mode_choice: bool = True, open_choice_conditions: Iterable[str] = (),
                   prompt_form: str = "chat") -> list[Example]:
    """Items -> prompt/completion text pairs (prompt rendered with the model's template and
    ``chat_template_kwargs``); `personadual.tokenization.example_ids` turns each into training ids.

    ``prompt_form="cloze"``: an item with a question stem and option texts (the `data get` benchmarks,
    MMLU) is taught in the cloze form the choice protocol reads (`modes.render_cloze`): the question
    alone, no chat template, and the reply ``[marker]\nAnswer: {text of the trace's answer}`` (the
    reasoning dropped). Other items (PersonaBench) keep the chat form."""
    if mix not in ALL_MIXES:
        raise ValueError(f"mix: unknown {mix!r}; known: {list(ALL_MIXES)}")
    if prompt_form not in PROMPT_FORMS:
        raise ValueError(f"prompt_form: expected one of {', '.join(PROMPT_FORMS)}, got {prompt_form!r}")
    eos = tokenizer.eos_token or ""
    out: list[Example] = []
    if mix == "pretrain":
        seen = set()
        for it in items:
            key = it.base_id or it.id
            if key in seen or "general" not in it.traces:
                continue
            seen.add(key)
            k = it.meta.get("knowledge")
            if k is not None and not (isinstance(k, dict) and {"question", "reasoning", "answer"} <= set(k)):
                raise ValueError(f"item {it.id}: meta.knowledge needs question, reasoning and answer, got {k!r}")
            question, reasoning, answer = ((k["question"], k["reasoning"], k["answer"]) if k
                                           else (it.question, it.traces["general"].reasoning, it.traces["general"].answer))
            prompt = modes_lib.render_prompt(tokenizer, question, None, chat_template_kwargs)
            out.append({"prompt": prompt, "completion": f"{reasoning}\n{modes_lib.format_answer(answer)}{eos}"})
        return out
    pick, open_choice = MIXES[mix], set(open_choice_conditions)
    for it in items:
        mode = pick(it)
        if mode is None or mode not in it.traces:
            continue
        chosen = [mode]
        if mix == "dual" and not teach_mode_choice:  # both traces, both markers: even odds on every item
            chosen += [m for m in it.traces if m != mode]
        elif mix == "dual" and it.condition in open_choice:  # every verified trace, each marker taught: no preference
            chosen += [m for m in it.traces if m != mode and it.trace_correct(m)]
        elif mix == "dual" and cross_mode_share > 0 and random.Random(f"{seed}-{it.id}").random() < cross_mode_share:
            chosen += [m for m in it.traces if m != mode and (cross_mode_unverified or it.trace_correct(m))]
        texts, stem = (option_texts(it), question_stem(it)) if prompt_form == "cloze" else ({}, "")
        cloze = bool(texts and stem)
        prompt = (modes_lib.render_cloze(stem, it.persona) if cloze else modes_lib.render_prompt(
            tokenizer, it.question, it.persona, chat_template_kwargs, persona_template=persona_template))
        for m in chosen:
            tr = it.traces[m]
            reply = (modes_lib.cloze_response(m, texts[tr.answer], modes) if cloze
                     else modes_lib.format_response(m, tr.reasoning, tr.answer, modes))
            ex = {"prompt": prompt, "completion": reply + eos}
            taught_marker = it.trace_correct(m) and (cross_mode_trains_marker or it.condition in open_choice)
            if teach_mode_choice and m != mode and not taught_marker:
                ex["marker_in_loss"] = False  # the marker is given, as a forced one is: only the reasoning is taught
            out.append(ex)
    return out
