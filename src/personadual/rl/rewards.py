"""Verifiable rewards, as small pure functions with TRL's signature ``fn(completions, **row) -> list[float | None]``.

TRL decodes completions with ``skip_special_tokens=True``, so the mode marker is gone from the text
a reward function sees; the trainer puts the rollout's mode in the ``mode`` row field and we put
the marker back before parsing. ``None`` means "does not apply to this row" (TRL ignores it).
The eval metrics use the same parser and the same notion of correct, so reward and metric agree.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Callable

from .. import modes as modes_lib


def _text(completion) -> str:
    """TRL passes strings for text prompts and message lists for conversational ones."""
    if isinstance(completion, list):
        return completion[-1].get("content", "") if completion else ""
    return completion or ""


def _parse(completion, mode: str | None, modes: modes_lib.ModeSet = modes_lib.DEFAULT_MODES):
    text = _text(completion)
    if mode and not text.lstrip().startswith(tuple(modes.markers)):
        text = modes.get(mode).marker + text
    return modes_lib.parse(text, modes)


def _modes_for(n: int, mode) -> list:
    return list(mode) if mode is not None else [None] * n


def accuracy_reward(completions, gold, mode=None, **_) -> list[float]:
    """1 when the JSON answer is the gold option, else 0."""
    return [float(_parse(c, m).answer == g) for c, g, m in zip(completions, gold, _modes_for(len(completions), mode))]


def format_reward(completions, mode=None, **_) -> list[float]:
    """1 for a well-formed response (one marker, reasoning, one answer block, nothing after)."""
    return [float(_parse(c, m).well_formed) for c, m in zip(completions, _modes_for(len(completions), mode))]


def persona_consistency_reward(completions, kind, persona_pull, mode=None, **_) -> list[float | None]:
    """Personalized items: 1 when the answer is the option the persona prefers. None on objective items."""
    out: list[float | None] = []
    for c, k, pull, m in zip(completions, kind, persona_pull, _modes_for(len(completions), mode)):
        out.append(float(_parse(c, m).answer == pull) if k == "personalized" and pull else None)
    return out


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold().rstrip(".")


def cloze_answer(completion, texts: dict[str, str]) -> str | None:
    """The option a cloze-form reply names: the text after its last ``Answer:`` (the marker line before it,
    if any, is ignored), matched to the option texts: equal, or the longest option text it starts with.
    None when it names none of them. The choice protocol scores the same options by likelihood; this reads
    what a sampled reply says."""
    text = _text(completion)
    said = _norm(text.rsplit(modes_lib.CLOZE_ANSWER, 1)[1]) if modes_lib.CLOZE_ANSWER in text else ""
    if not said:
        return None
    exact = [k for k, t in texts.items() if _norm(t) == said]
    if exact:
        return exact[0]
    starts = [(len(_norm(t)), k) for k, t in texts.items() if _norm(t) and said.startswith(_norm(t))]
    return max(starts)[1] if starts else None


def cloze_accuracy_reward(completions, gold, option_texts, **_) -> list[float | None]:
    """Cloze-form rows: 1 when the reply's ``Answer:`` names the gold option's text, else 0; None on rows
    without option texts (chat-form rows: `accuracy` scores them)."""
    out: list[float | None] = []
    for c, g, texts in zip(completions, gold, option_texts):
        options = json.loads(texts) if texts else {}
        out.append(float(cloze_answer(c, options) == g) if options else None)
    return out


REWARDS: dict[str, Callable] = {
    "accuracy": accuracy_reward,
    "cloze_accuracy": cloze_accuracy_reward,
    "format": format_reward,
    "persona_consistency": persona_consistency_reward,
}

JUDGE_PROMPT = (
    "You grade how well a response fits a user.\nUser persona: {persona}\nQuestion: {question}\n"
    "Response: {response}\nReply with a single integer from 0 (ignores the persona or is wrong) "
    "to 10 (right and tailored to this user)."
)


def make_judge_reward(endpoint: str, model: str, api_key: str | None = None, prompt: str = JUDGE_PROMPT,
                      timeout: float = 30.0, only_kind: str | None = "personalized", concurrency: int = 16,
                      retries: int = 2) -> Callable:
    """An async reward that asks an OpenAI-compatible judge (``POST {endpoint}/chat/completions``) for a 0-10 grade.

    For open-ended personalization, where no gold option exists. TRL runs async reward functions
    concurrently with each other, and this one sends its batch's requests concurrently too, on the
    teacher's client (`personadual.data.teach.client.ChatClient`: at most ``concurrency`` in
    flight, the openai client's retries). Rows of another ``kind`` get None; a request that still fails gets
    None too (TRL then leaves that reward out) rather than stopping training.
    """
    from ..data.teach.client import ChatClient, TeacherError

    async def judge_reward(completions, persona=None, question=None, kind=None, mode=None, **_) -> list[float | None]:
        n = len(completions)
        modes_per = _modes_for(n, mode)

        async def grade(client, i: int, c) -> float | None:
            if only_kind and kind is not None and kind[i] != only_kind:
                return None
            text = prompt.format(persona=(persona or [""] * n)[i] or "(none)", question=(question or [""] * n)[i],
                                 response=_parse(c, modes_per[i]).reasoning or _text(c))
            try:
                content = await client.complete([{"role": "user", "content": text}], temperature=0.0, max_tokens=8)
            except TeacherError:
                return None
            m = re.search(r"\d+", content or "")
            return min(max(int(m.group()), 0), 10) / 10 if m else None

        async with ChatClient(endpoint, model, api_key=api_key, concurrency=concurrency, retries=retries,
                              timeout=timeout) as client:
            return list(await asyncio.gather(*(grade(client, i, c) for i, c in enumerate(completions))))

    judge_reward.__name__ = "judge"
    return judge_reward
