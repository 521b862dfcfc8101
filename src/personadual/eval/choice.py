"""`personadual eval --protocol choice`: the answer read from the model's probabilities over the options,
as lm-eval-harness reads multiple choice, instead of from generated text.

Why: a small model's free-text answer measures the answer reader and its letter habits as much as the
persona (unreadable replies, one letter for everything). Scoring each option under the model reads
an answer from every item, and its probability shows a persona's pull even where accuracy sits near chance.

The context is the rendered prompt, ending where the model's reply begins, plus an answer prefix:

- ``letter`` form: ``The answer is (``, then each option letter's log-prob as the next token, all read
  at one position, so one forward pass per prompt. Each letter must be one token after the prefix
  (`letter_token_ids`), or the one position would not score it.
- ``text`` form: ``Answer:``, then each option's text ``" " + text`` as a continuation, one row per
  option: score = log p(text | context) / len(text in characters), lm-eval-harness's acc_norm.
  Dividing by length keeps long options from losing by having more tokens to pay for. An item
  whose options are not written out line by line (PersonaBench writes them inline) has no texts
  to score, so it is scored in the letter form, and counted.
- a mode model (one whose tokenizer has the markers): the context goes on with the forced marker line
  and the answer block up to the letter, ``[General_mode]\\n<answer> {"answer": "``, and the option
  letters are scored there whatever the form, since that block holds a letter. This skips the
  reasoning: it asks what the mode would answer straight away. Every mode is forced, and auto is
  assembled from the mode chosen on p(mode | x), as the modes protocol does, so HAcc, mode share and
  calibration mean what they mean there.

``option_probs`` is the softmax over the option scores (the letters' log-probs, or the text scores),
the answer its argmax. Ids follow the one token rule: `prompt_ids` for the prompt, `completion_ids`
for what follows it, as training and generation have them.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

from .. import modes as modes_lib
from ..data.options import option_texts
from ..data.schema import Item
from ..engine import choose_modes
from ..modes import AUTO, ModeSet
from ..tokenization import completion_ids
from ..scoring.mode_choice import with_auto_run
from ..scoring.predict import Prediction

FORMS = ("text", "letter")
LETTER_PREFIX = "The answer is ("
TEXT_PREFIX = "Answer:"
_BLOCK = modes_lib.format_answer("@")
ANSWER_LEAD = _BLOCK[: _BLOCK.index("@")]  # '<answer> {"answer": "': the answer block up to its letter


def mode_lead(mode: str, modes: ModeSet) -> str:
    """What a mode model's reply opens with before its letter: the forced marker line, then the answer block."""
    return modes_lib.forced_prefix(mode, modes) + ANSWER_LEAD


def following_ids(tokenizer, head: str, tail: str) -> list[int]:
    """The ids of ``tail`` where it follows ``head``: the joint tokenization's rest when it keeps
    ``head``'s ids, else ``tail`` on its own (a merge across the boundary)."""
    h, joint = completion_ids(tokenizer, head), completion_ids(tokenizer, head + tail)
    return joint[len(h):] if joint[: len(h)] == h and len(joint) > len(h) else completion_ids(tokenizer, tail)


def letter_token_ids(tokenizer, lead: str, letters: Sequence[str], cache: dict | None = None) -> list[int]:
    """The one token each option letter is after ``lead``; a clear error when a letter is not one token
    there (merged with the lead, or split), since the letter form reads one position."""
    cache = {} if cache is None else cache
    out = []
    for letter in letters:
        if (lead, letter) not in cache:
            head = completion_ids(tokenizer, lead)
            joint = completion_ids(tokenizer, lead + letter)
            if joint[: len(head)] != head or len(joint) != len(head) + 1:
                pieces = tokenizer.convert_ids_to_tokens(joint[len(head) - 1:] if len(head) else joint)
                raise ValueError(f"choice protocol, letter form: option {letter!r} after {lead!r} is not one token of "
                                 f"this tokenizer (the end tokenizes as {pieces}); use --choice-form text")
            cache[lead, letter] = joint[-1]
        out.append(cache[lead, letter])
    return out


def forms_of(items: Sequence[Item], form: str, plain: bool) -> list[str]:
    """The form each item is scored in: text needs a plain model and options written out."""
    if form not in FORMS:
        raise ValueError(f"choice form: expected one of {', '.join(FORMS)}, got {form!r}")
    return [form if form == "letter" or (plain and option_texts(it)) else "letter" for it in items]


def rows_to_score(items: Sequence[Item], form: str, plain: bool) -> int:
    """How many rows one run scores: one per letter-form item, one per option of a text-form item."""
    return sum(len(it.options) if f == "text" else 1 for it, f in zip(items, forms_of(items, form, plain)))


def softmax(scores: dict[str, float]) -> dict[str, float]:
    top = max(scores.values())
    w = {k: math.exp(v - top) for k, v in scores.items()}
    z = sum(w.values())
    return {k: v / z for k, v in w.items()}


def option_scores(engine, items: Sequence[Item], prompt_rows: Sequence[list[int]], forms: Sequence[str],
                  leads: Sequence[str], batch_size: int = 32, progress=None) -> list[dict[str, float]]:
    """Per item, option letter -> score: log p(letter) after the item's ``lead`` (letter form), or
    log p(" " + text | ``TEXT_PREFIX``) / len(text) (text form). One batched call per form."""
    tok, cache = engine.tokenizer, {}
    scores: list[dict[str, float]] = [{} for _ in items]
    letter = [i for i, f in enumerate(forms) if f == "letter"]
    if letter:
        lead_ids = {lead: completion_ids(tok, lead) for lead in {leads[i] for i in letter}}  # a few distinct leads
        contexts = [list(prompt_rows[i]) + lead_ids[leads[i]] for i in letter]
        candidates = [letter_token_ids(tok, leads[i], items[i].options, cache) for i in letter]
        for i, logp in zip(letter, engine.next_token_logprobs(contexts, candidates, batch_size, progress)):
            scores[i] = dict(zip(items[i].options, logp))
    pairs = [(i, k, t) for i, f in enumerate(forms) if f == "text" for k, t in option_texts(items[i]).items()]
    if pairs:
        head = completion_ids(tok, TEXT_PREFIX)
        contexts = [list(prompt_rows[i]) + head for i, _, _ in pairs]
        continuations = [following_ids(tok, TEXT_PREFIX, " " + t) for _, _, t in pairs]
        for (i, k, t), logp in zip(pairs, engine.score_continuations(contexts, continuations, batch_size, progress)):
            scores[i][k] = logp / len(t)
    return [{k: s[k] for k in it.options} for it, s in zip(items, scores)]  # in the item's option order


def prediction(item: Item, scores: dict[str, float], form: str, requested: str, mode: str | None,
               p_mode: dict[str, float], marker_mass: float | None) -> Prediction:
    probs = softmax(scores)
    answer = max(item.options, key=lambda k: scores[k])  # the first of equal scores, in option order
    return Prediction(
        id=item.id, base_id=item.base_id, family=item.family, kind=item.kind, condition=item.condition, gold=item.gold,
        preferred_mode=item.preferred_mode, requested_mode=requested, mode=mode, answer=answer,
        correct=answer == item.gold, well_formed=True, reason="", p_mode=p_mode, text=f"choice:{form}",
        marker_mass=marker_mass, persona_pull=item.persona_pull, option_probs={k: round(v, 6) for k, v in probs.items()})


def choice_runs(engine, items: Sequence[Item], form: str = "text", mode: str = AUTO, forced: bool = True,
                drop_persona: bool = False, batch_size: int = 32, progress=None) -> tuple[dict[str, list[Prediction]], dict]:
    """The choice protocol's runs (as `runs_by_mode` / `predict` give for generation) and what was scored.

    A plain model: one run. A mode model: with ``forced`` and ``mode="auto"`` every mode forced plus
    auto assembled from them (`with_auto_run`); else the one requested run (auto: each item in the
    mode chosen greedily from p(mode | x)).
    """
    prompts = [engine.render_prompt(it.question, None if drop_persona else it.persona) for it in items]
    rows = engine.prompt_ids(prompts)
    plain = engine.modes is None
    forms = forms_of(items, form, plain)
    if plain:
        if mode != AUTO:
            raise ValueError(f"cannot force mode {mode!r}: this model has no mode markers (plain protocol)")
        scores = option_scores(engine, items, rows, forms, [LETTER_PREFIX] * len(items), batch_size, progress)
        runs = {AUTO: [prediction(it, s, f, AUTO, None, {}, None) for it, s, f in zip(items, scores, forms)]}
    else:
        names = engine.modes.names
        p_NM, mass_N = engine.mode_stats(prompts, batch_size, ids=rows)

        def run(chosen: list[str], requested: str) -> list[Prediction]:
            leads = [mode_lead(m, engine.modes) for m in chosen]
            scores = option_scores(engine, items, rows, forms, leads, batch_size, progress)
            return [prediction(it, s, "letter", requested, m, dict(zip(names, p_NM[i].tolist())), float(mass_N[i]))
                    for i, (it, s, m) in enumerate(zip(items, scores, chosen))]

        if mode != AUTO:
            engine.modes.get(mode)  # a clear KeyError for an unknown mode
            runs = {AUTO: run([mode] * len(items), mode)}
        elif forced:
            runs = with_auto_run({m: run([m] * len(items), m) for m in names}, names)
        else:
            runs = {AUTO: run(choose_modes(p_NM, names, 0.0) if items else [], AUTO)}
    counts = Counter(forms)
    return runs, {"form": form, "items_by_form": {f: counts[f] for f in FORMS if counts[f]},
                  "scored": {f: scored_as(f, plain) for f in FORMS if counts[f]}}


def scored_as(form: str, plain: bool) -> str:
    """What a form scores, in words (metrics.json, report.md)."""
    if not plain:
        return "option letters in the answer block after the forced mode marker (the reasoning is skipped)"
    if form == "text":
        return f"option texts after {TEXT_PREFIX!r}, log-likelihood per character (acc_norm)"
    return f"option letters after {LETTER_PREFIX!r}"
