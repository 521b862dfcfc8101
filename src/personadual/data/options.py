"""The text of each lettered option in an item's question ("B. Coulomb" -> {"B": "Coulomb"}).

The loaders write options as ``LETTER. text`` lines (MMLU, FLAN, UltraMedical); PersonaBench writes
them inline (``A Rome . B Oslo .``). Personas that point to an option by its content, and answer
readers that accept the option's text, both need that text.
"""

from __future__ import annotations

import re

from .schema import Item

_LINE = re.compile(r"^\s*\(?([A-Z])[.)]\)?\s+(\S.*?)\s*$")


def option_texts(item: Item) -> dict[str, str]:
    """letter -> option text, from the last run of ``LETTER. text`` lines covering every option.

    Returns {} when the question does not spell its options out line by line: callers then refer
    to options by letter only.
    """
    found: dict[str, str] = {}
    for line in item.question.split("\n"):
        m = _LINE.match(line)
        if m and m[1] in item.options:
            if m[1] == item.options[0]:
                found = {}  # a new options block starts (few-shot questions repeat earlier ones)
            found[m[1]] = m[2]
    return found if set(found) == set(item.options) else {}


def question_stem(item: Item) -> str:
    """The question without its options: ``meta.stem`` where the loader kept it (the five benchmarks),
    else the question's text before its block of ``LETTER. text`` lines (MMLU, FLAN, UltraMedical).
    "" when there is no such block, or nothing before it: the cloze form then has no question to ask."""
    if isinstance(item.meta.get("stem"), str) and item.meta["stem"].strip():
        return item.meta["stem"].strip()
    if not option_texts(item):
        return ""
    lines = item.question.split("\n")
    starts = [i for i, line in enumerate(lines) if (m := _LINE.match(line)) and m[1] == item.options[0]]
    return "\n".join(lines[: starts[-1]]).strip() if starts else ""
