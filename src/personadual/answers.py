"""Reading the chosen option from a model that does not speak the mode protocol (the ``plain`` protocol).

A base or instruct model answers a multiple-choice question in its own words. `read_answer` takes
the first reading that applies, most explicit first, so a stray letter in the reasoning never
overrides a stated answer:

1. the JSON answer block the protocol uses (``<answer> {"answer": "B"} </answer>``), last one wins;
2. a stated answer: "the answer is (B)", "Answer: B", "correct option: B", "**B**" on its own line;
   the last statement wins (a model that corrects itself means its final word);
3. a lone option: the whole reply (or its first line) is just a letter ("B", "(B)", "B.", "B) text")
   or just one option's text ("Coulomb");
4. nothing else: unreadable. Unreadable answers count as wrong and are reported, never guessed.

Readings 2 and 3 accept only the item's own option letters (A-Z when they are not known): they
are guesses at what free text means. An answer block is taken as written, so an answer outside the
options is wrong, not unreadable.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from .modes import ANSWER_BLOCK_RE, Parsed, answer_from_json

# the keywords in any case, the letter in capitals only ("the answer is a tricky one" states nothing)
_STATED = re.compile(
    r"(?i:answer|option|choice)\s*(?i:is|would be|will be|[:=])?\s*(?i:option\s*|choice\s*)?:?\s*"
    r"[(\[*\"']*\s*([A-Z])\s*[)\]*\"']*(?=[\s.,;:!)]|$)")
_BOLD = re.compile(r"^\s*\*\*\(?([A-Z])\)?[.)]?\*\*", re.MULTILINE)
# "B", "(B)", "B.", "B) Coulomb": a letter alone or followed by punctuation ("A man ..." is not a letter)
_LONE = re.compile(r"^\s*[(\[]?([A-Z])(?:[)\].:](?:\s+.*)?)?\s*$")
_END_TOKENS = ("<|im_end|>", "</s>", "<|endoftext|>", "<|eot_id|>")


@dataclass(frozen=True)
class Reading:
    answer: str | None  # an option letter, or None when nothing could be read
    how: str  # "answer block", "stated", "lone letter", "option text", or "unreadable"


def _norm(text: str) -> str:
    return text.strip().strip(string.punctuation + " ").casefold()


def _clean(text: str) -> str:
    for tok in _END_TOKENS:
        text = text.replace(tok, "")
    return text.strip()


def read_answer(text: str, options: list[str] | None = None, option_texts: dict[str, str] | None = None) -> Reading:
    """The option a free-text reply chooses (see the module docstring for the order of readings)."""
    letters = list(options or string.ascii_uppercase)
    text = _clean(text if isinstance(text, str) else "")
    by_text = {_norm(t): k for k, t in (option_texts or {}).items() if _norm(t)}

    def letter(raw: str | None) -> str | None:
        if raw is None:
            return None
        core = raw.strip().strip("()[]*.:'\" ").upper()
        if core in letters:
            return core
        return by_text.get(_norm(raw))

    for block in reversed(list(ANSWER_BLOCK_RE.finditer(text))):
        value = answer_from_json(block.group(1), [])  # the protocol's own reading of a block
        if value:
            # an explicit answer is taken as given, even a letter that is not an option: it is wrong, not unreadable
            return Reading(letter(value) or value, "answer block")
    stated = [m for m in (*_STATED.finditer(text), *_BOLD.finditer(text)) if m.group(1).upper() in letters]
    if stated:
        return Reading(max(stated, key=lambda m: m.start()).group(1).upper(), "stated")
    first = text.split("\n", 1)[0].strip() if text else ""
    for line in dict.fromkeys((text, first)):
        if (m := _LONE.match(line)) and m.group(1) in letters:
            return Reading(m.group(1), "lone letter")
        if _norm(line) in by_text:
            return Reading(by_text[_norm(line)], "option text")
    return Reading(None, "unreadable")


def parse_plain(text: str, options: list[str] | None = None, option_texts: dict[str, str] | None = None) -> Parsed:
    """A plain reply as a `Parsed`: no mode; well formed means an answer could be read."""
    r = read_answer(text, options, option_texts)
    ok = r.answer is not None
    return Parsed(None, _clean(text if isinstance(text, str) else ""), r.answer, ok,
                  "" if ok else "no readable answer", [] if ok else ["no readable answer"])
