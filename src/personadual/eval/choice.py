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
- ``cloze`` form: the question alone, its options *not* listed, and no chat template:
  ``Question: {stem}`` (or, with a persona, the paper's ``I am {persona}, my question is: {stem}``), a
  new line, ``Answer:``, then each option's text scored as in the text form. This is how
  lm-evaluation-harness asks PIQA, OpenBookQA and the like zero-shot; a small model's knowledge
  shows here where a listed-options prompt reads it near chance. ``cloze-chat``: the same sentence
  as the user turn of the model's chat template, the reply opening with ``Answer:``. An item whose
  question has no stem apart from its option lines (`data.options.question_stem`) is scored in the
  letter form, and counted.
- a mode model (one whose tokenizer has the markers): the context goes on with the forced marker line
  and the answer block up to the letter, ``[General_mode]\\n<answer> {"answer": "``, and the option
  letters are scored there whatever the form, since that block holds a letter. This skips the
  reasoning: it asks what the mode would answer straight away. Every mode is forced, and auto is
  assembled from the mode chosen on p(mode | x), as the modes protocol does, so HAcc, mode share and
  calibration mean what they mean there. In the cloze forms a mode model's reply is the forced marker
  line, then ``Answer:`` and each option's text, scored as a plain model's: the mode's knowledge is
  read the same way as the base model's.

``option_probs`` is the softmax over the option scores (the letters' log-probs, or the text scores),
the answer its argmax. Ids follow the one token rule: `prompt_ids` for the prompt, `completion_ids`
for what follows it, as training and generation have them.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

from .. import modes as modes_lib
from ..data.options import option_texts, question_stem
from ..data.schema import Item
from ..engine import choose_modes
from ..engine.prefix import Branch
from ..modes import AUTO, ModeSet
from ..tokenization import completion_ids
from .generation import with_auto_run
from .predictions import Prediction

FORMS = ("text", "letter", "cloze", "cloze-chat")
# How a mode model's general mode is read: "persona", after the prompt as given (the paper's mode, which
# must learn to set the persona aside); "set-aside", after the same prompt without its persona, so the
# mode cannot be bent by it and what the model learns is the choice between the modes
GENERAL_CONTEXTS = ("persona", "set-aside")
CLOZE_FORMS = ("cloze", "cloze-chat")
TEXT_FORMS = ("text", *CLOZE_FORMS)  # each option's text scored after TEXT_PREFIX
LETTER_PREFIX = "The answer is ("
TEXT_PREFIX = modes_lib.CLOZE_ANSWER
CLOZE_QUESTION = modes_lib.CLOZE_QUESTION  # the cloze context without a persona; with one, the paper's sentence
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
    """The form each item is scored in: text needs a plain model and options written out; the cloze forms
    (any model) need the options' texts and a question stem apart from them. Others fall back to letter."""
    if form not in FORMS:
        raise ValueError(f"choice form: expected one of {', '.join(FORMS)}, got {form!r}")
    if form in CLOZE_FORMS:
        return [form if option_texts(it) and question_stem(it) else "letter" for it in items]
    return [form if form == "letter" or (plain and option_texts(it)) else "letter" for it in items]


def rows_to_score(items: Sequence[Item], form: str, plain: bool) -> int:
    """How many rows one run scores: one per letter-form item, one per option of a text-form item."""
    return sum(len(it.options) if f in TEXT_FORMS else 1 for it, f in zip(items, forms_of(items, form, plain)))


def cloze_question(stem: str, persona: str | None) -> str:
    """The cloze form's sentence: ``Question: {stem}``, or with a persona ``I am {persona}, my question is: {stem}``."""
    return modes_lib.render_cloze(stem, persona)[:-1]


def render_choice_prompt(engine, item: Item, form: str, persona: str | None) -> str:
    """The context the options are scored after, up to (not including) the form's answer prefix."""
    if form == "cloze":  # no chat template: the text as a pretrained model reads a document
        return modes_lib.render_cloze(question_stem(item), persona)
    if form == "cloze-chat":
        return engine.render_prompt(cloze_question(question_stem(item), persona), None)
    return engine.render_prompt(item.question, persona)


def softmax(scores: dict[str, float]) -> dict[str, float]:
    top = max(scores.values())
    w = {k: math.exp(v - top) for k, v in scores.items()}
    z = sum(w.values())
    return {k: v / z for k, v in w.items()}


def _text_branches(tok, item: Item, prefix: int, lead: str = TEXT_PREFIX, lead_ids: tuple[int, ...] = (),
                   extra_reads: tuple = ()) -> list[tuple[str, Branch, int]]:
    """(letter, branch, characters) per option: the option's text after ``lead``, every token read.

    ``lead_ids``: ids that run in the branch before the text (a mode model's forced marker line and
    ``Answer:``); ``extra_reads`` go on the first option's branch (p(mode | x) at position 0)."""
    out = []
    for j, (k, t) in enumerate(option_texts(item).items()):
        cont = following_ids(tok, lead, " " + t)
        reads = tuple((len(lead_ids) + p, (c,)) for p, c in enumerate(cont)) + (extra_reads if j == 0 else ())
        out.append((k, Branch(prefix, tuple(lead_ids) + tuple(cont), reads), len(t)))
    return out


def plain_scores(engine, items: Sequence[Item], prompt_rows: Sequence[list[int]], forms: Sequence[str],
                 batch_size: int = 32, progress=None) -> list[dict[str, float]]:
    """Per item, option letter -> score for a plain model: log p(letter) after ``LETTER_PREFIX`` (letter
    form), or log p(" " + text | ``TEXT_PREFIX``) / len(text) (text form). Each prompt runs once, its
    options branching from it (`engine.prefix`)."""
    tok, cache = engine.tokenizer, {}
    heads = {f: completion_ids(tok, LETTER_PREFIX if f == "letter" else TEXT_PREFIX) for f in set(forms)}
    prefixes = [list(r) + heads[f] for r, f in zip(prompt_rows, forms)]
    branches, where = [], []  # where: (item, letter or None for all letters, characters)
    for i, (it, f) in enumerate(zip(items, forms)):
        if f == "letter":
            branches.append(Branch(i, (), ((0, tuple(letter_token_ids(tok, LETTER_PREFIX, it.options, cache))),)))
            where.append((i, None, 1))
        else:
            for k, b, n in _text_branches(tok, it, i):
                branches.append(b)
                where.append((i, k, n))
    scores: list[dict[str, float]] = [{} for _ in items]
    for (i, k, n), reads in zip(where, engine.branch_logprobs(prefixes, branches, batch_size, progress)):
        if k is None:
            scores[i] = dict(zip(items[i].options, reads[0]))
        else:
            scores[i][k] = sum(r[0] for r in reads) / n
    return [{k: s[k] for k in it.options} for it, s in zip(items, scores)]  # in the item's option order


def mode_scores(engine, items: Sequence[Item], prompt_rows: Sequence[list[int]], scored: Sequence[str],
                batch_size: int = 32, progress=None, forms: Sequence[str] | None = None,
                set_aside_rows: Sequence[list[int]] | None = None):
    """For a mode model, from one pass over each prompt: p(mode | x) (N, modes), the marker mass (N,), and
    mode -> per item, letter -> score after that mode's forced marker: log p(letter) in the answer block
    (letter form), or log p(" " + text | marker line + ``Answer:``) / len(text) (cloze forms).

    ``set_aside_rows``: the prompts without their persona; the general mode is then scored after them
    (`GENERAL_CONTEXTS`), while p(mode | x) is still read on the prompt with the persona."""
    import torch

    tok, cache, modes = engine.tokenizer, {}, engine.modes
    forms = list(forms) if forms is not None else ["letter"] * len(items)
    leads = {m: (mode_lead(m, modes), tuple(completion_ids(tok, mode_lead(m, modes)))) for m in scored}
    text_leads = {m: (modes_lib.forced_prefix(m, modes) + TEXT_PREFIX,
                      tuple(completion_ids(tok, modes_lib.forced_prefix(m, modes) + TEXT_PREFIX))) for m in scored}
    markers = (0, tuple(engine.marker_ids))
    n = len(items)
    offset = {m: n if set_aside_rows is not None and m == modes_lib.GENERAL else 0 for m in scored}
    reads_markers = next((m for m in scored if offset[m] == 0), None)  # p(mode | x): on the prompt as given
    branches, where = [], []  # where: (item, mode, letter or None for all letters, characters, reads p(mode))
    for i, (it, f) in enumerate(zip(items, forms)):
        for m in scored:
            extra = (markers,) if m == reads_markers else ()
            if f == "letter":
                branches.append(Branch(i + offset[m], leads[m][1], ((len(leads[m][1]), tuple(letter_token_ids(
                    tok, leads[m][0], it.options, cache))),) + extra))
                where.append((i, m, None, 1, bool(extra)))
                continue
            for j, (letter, b, chars) in enumerate(_text_branches(tok, it, i + offset[m], text_leads[m][0],
                                                                  text_leads[m][1], extra)):
                branches.append(b)
                where.append((i, m, letter, chars, bool(extra) and j == 0))
    if reads_markers is None:  # every scored mode set aside: p(mode | x) from a branch of its own
        branches += [Branch(i, (), (markers,)) for i in range(n)]
        where += [(i, None, None, 1, True) for i in range(n)]
    rows = list(prompt_rows) + (list(set_aside_rows) if set_aside_rows is not None else [])
    reads = engine.branch_logprobs(rows, branches, batch_size, progress)
    by_mode = {m: [{} for _ in items] for m in scored}
    logp = [None] * len(items)
    for (i, m, letter, chars, has_markers), r in zip(where, reads):
        if has_markers:
            logp[i], r = r[-1], r[:-1]
        if m is None:
            continue
        if letter is None:
            by_mode[m][i] = dict(zip(items[i].options, r[0]))
        else:
            by_mode[m][i][letter] = sum(x[0] for x in r) / chars
    by_mode = {m: [{k: s[k] for k in it.options} for it, s in zip(items, rows)] for m, rows in by_mode.items()}
    logp_NM = torch.tensor(logp, dtype=torch.float32).reshape(len(items), len(engine.marker_ids))
    return torch.softmax(logp_NM, dim=-1), logp_NM.exp().sum(-1), by_mode


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
                drop_persona: bool = False, batch_size: int = 32, progress=None,
                general_context: str = "persona") -> tuple[dict[str, list[Prediction]], dict]:
    """The choice protocol's runs (as `runs_by_mode` / `predict` give for generation) and what was scored.

    A plain model: one run. A mode model: with ``forced`` and ``mode="auto"`` every mode forced plus
    auto assembled from them (`with_auto_run`); else the one requested run (auto: each item in the
    mode chosen greedily from p(mode | x)).
    """
    plain = engine.modes is None
    if general_context not in GENERAL_CONTEXTS:
        raise ValueError(f"general context: expected one of {', '.join(GENERAL_CONTEXTS)}, got {general_context!r}")
    if general_context == "set-aside" and (plain or modes_lib.GENERAL not in engine.modes.names):
        raise ValueError("general context set-aside: needs a mode model with a general mode")
    forms = forms_of(items, form, plain)
    prompts = [render_choice_prompt(engine, it, f, None if drop_persona else it.persona) for it, f in zip(items, forms)]
    rows = engine.prompt_ids(prompts)
    bare = (engine.prompt_ids([render_choice_prompt(engine, it, f, None) for it, f in zip(items, forms)])
            if general_context == "set-aside" else None)
    if plain:
        if mode != AUTO:
            raise ValueError(f"cannot force mode {mode!r}: this model has no mode markers (plain protocol)")
        scores = plain_scores(engine, items, rows, forms, batch_size, progress)
        runs = {AUTO: [prediction(it, s, f, AUTO, None, {}, None) for it, s, f in zip(items, scores, forms)]}
    else:
        names = engine.modes.names
        if mode != AUTO:
            engine.modes.get(mode)  # a clear KeyError for an unknown mode
        # auto scores every mode: the one it picks is known only once p(mode | x) is, from the same pass
        p_NM, mass_N, by_mode = mode_scores(engine, items, rows, names if mode == AUTO else [mode], batch_size,
                                            progress, forms, bare)

        def run(chosen: list[str], requested: str) -> list[Prediction]:
            return [prediction(it, by_mode[m][i], forms[i], requested, m, dict(zip(names, p_NM[i].tolist())),
                               float(mass_N[i])) for i, (it, m) in enumerate(zip(items, chosen))]

        if mode != AUTO:
            runs = {AUTO: run([mode] * len(items), mode)}
        elif forced:
            runs = with_auto_run({m: run([m] * len(items), m) for m in names}, names)
        else:
            runs = {AUTO: run(choose_modes(p_NM, names, 0.0) if items else [], AUTO)}
    counts = Counter(forms)
    return runs, {"form": form, "items_by_form": {f: counts[f] for f in FORMS if counts[f]},
                  **({} if plain else {"general_context": general_context}),
                  "scored": {f: scored_as(f, plain) for f in FORMS if counts[f]}}


def scored_as(form: str, plain: bool) -> str:
    """What a form scores, in words (metrics.json, report.md)."""
    after = "" if plain else "the forced mode marker line, then "
    if form in CLOZE_FORMS:
        how = "no chat template" if form == "cloze" else "the sentence as the chat template's user turn"
        return (f"option texts after the question alone ({CLOZE_QUESTION!r} or the persona sentence; options not "
                f"listed; {how}), {after}{TEXT_PREFIX!r}, log-likelihood per character (acc_norm)")
    if not plain:
        return "option letters in the answer block after the forced mode marker (the reasoning is skipped)"
    if form == "text":
        return f"option texts after {TEXT_PREFIX!r}, log-likelihood per character (acc_norm)"
    return f"option letters after {LETTER_PREFIX!r}"
