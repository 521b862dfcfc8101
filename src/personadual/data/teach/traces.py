"""Teacher prompts, reading a teacher reply into a `Trace`, and the paper's labelling. Pure functions.

Prompts live in ``teach/prompts/{general,personalized,judge}.txt`` (``string.Template``: ``$marker``,
``$question``, ``$persona``; the judge gets ``$question``, ``$response``, ``$persona_note``). The
general prompt does not show the persona at all: a general trace must not lean on it.

Labelling, as the paper does: an item becomes a personalized-mode example when the teacher answers
it correctly *with* the persona, a general-mode example when only the general trace is right, and is
dropped when neither is. Only verified traces are kept (right answer, and a judge "yes" if a judge
is used), so `Item.trace_correct` holds for every trace written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from string import Template

from ... import modes as modes_lib
from ..schema import Item, Trace
from ...modes import GENERAL, PERSONALIZED

JUDGE_YES = {"yes", "pass", "true", "correct", "1"}


@cache
def load_prompt(name: str) -> Template:
    return Template(resources.files("personadual.data.teach").joinpath("prompts", f"{name}.txt").read_text("utf-8"))


def modes_to_ask(item: Item) -> list[str]:
    """Both modes, except for an item without a persona: nothing to personalize on."""
    return [GENERAL, PERSONALIZED] if item.persona else [GENERAL]


def teacher_request(item: Item, mode: str, personadual_server: bool = False) -> tuple[list[dict], dict]:
    """(messages, extra request fields) asking the teacher for ``mode``'s trace.

    A generic teacher gets the mode's prompt file. A PersonaDual server (``personadual serve``) is
    asked natively: the question as the user turn, the persona in its ``persona`` field, the mode
    forced by name, the reasoning requested (self-distillation from a trained PersonaDual model).
    """
    if personadual_server:
        return [{"role": "user", "content": item.question}], {"persona": item.persona, "mode": mode,
                                                               "include_reasoning": True}
    marker = modes_lib.DEFAULT_MODES.get(mode).marker
    text = load_prompt(mode).substitute(marker=marker, question=item.question, persona=item.persona or "")
    return [{"role": "user", "content": text}], {}


def judge_messages(item: Item, mode: str, trace: Trace) -> list[dict]:
    note = (f" The response was asked to use this user's profile where relevant: \"I am {item.persona}\"; "
            "it should use the profile only where it bears on the question.") if mode == PERSONALIZED else ""
    response = modes_lib.format_response(mode, trace.reasoning, trace.answer)
    return [{"role": "user", "content": load_prompt("judge").substitute(question=item.question, response=response,
                                                                         persona_note=note)}]


def normalize_answer(answer: str | None, options: list[str]) -> str | None:
    """``" (b). "`` -> ``"B"`` when that is one of the options; otherwise the stripped answer."""
    if answer is None:
        return None
    core = re.sub(r"^[\s(\[]+|[\s)\].:]+$", "", answer)
    by_upper = {o.upper(): o for o in options}
    return by_upper.get(core.upper(), core)


@dataclass
class Outcome:
    """One mode's teacher trace for one item."""

    mode: str
    trace: Trace | None  # None: the reply had no readable answer
    problem: str = ""  # why the trace is unusable or unverified ("" when verified)
    verified: bool = False
    judged: bool | None = None  # the judge's verdict, None without a judge

    def summary(self) -> dict:
        return {"answer": self.trace.answer if self.trace else None, "verified": self.verified,
                "judged": self.judged, "problem": self.problem}


def read_reply(text: str, mode: str, item: Item) -> Outcome:
    """Parse a reply (marker prefixed when missing), check its mode, and compare its answer with gold."""
    markers = modes_lib.DEFAULT_MODES.markers
    body = text.strip()
    if not any(body.startswith(m) for m in markers):
        body = modes_lib.DEFAULT_MODES.get(mode).marker + "\n" + body
    parsed = modes_lib.parse(body)
    if parsed.mode != mode:
        return Outcome(mode, None, f"reply opens with the {parsed.mode} marker, asked for {mode}")
    answer = normalize_answer(parsed.answer, item.options)
    if answer is None:
        return Outcome(mode, None, f"no answer: {parsed.reason}")
    trace = Trace(reasoning=parsed.reasoning, answer=answer)
    if answer != item.gold:
        return Outcome(mode, trace, f"wrong answer {answer!r} (gold {item.gold!r})")
    return Outcome(mode, trace, "", verified=True)


def judge_verdict(text: str) -> bool:
    parsed = modes_lib.parse(modes_lib.DEFAULT_MODES.markers[0] + "\n" + text.strip())
    verdict = parsed.answer if parsed.answer is not None else text
    return verdict.strip().strip(".!").lower() in JUDGE_YES


def label(item: Item, outcomes: dict[str, Outcome], teacher: str) -> Item | None:
    """The item with its verified teacher traces and preferred mode; None when no trace verified."""
    kept = {m: o.trace for m, o in outcomes.items() if o.verified}
    if not kept:
        return None
    preferred = PERSONALIZED if PERSONALIZED in kept else GENERAL
    meta = {**item.meta, "teacher": {"model": teacher, **{m: o.summary() for m, o in outcomes.items()}}}
    return Item.model_validate({**item.model_dump(), "traces": {m: t.model_dump() for m, t in kept.items()},
                                "preferred_mode": preferred, "meta": meta})
