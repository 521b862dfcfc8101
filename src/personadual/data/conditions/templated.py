"""Templated traces for real multiple-choice items: built from the gold option and the persona's target
alone, so SFT can train on real questions without a teacher LLM.

Why templates, and why these. A trace a teacher writes carries reasoning; without a teacher, any
reasoning we wrote would be invented, and a model trained on it would learn to produce text that
looks like an argument and is not one. So the traces below state only what the item itself records:
which option is gold (`Item.gold`) and which option the persona points to (`Item.persona_pull`). They
follow PersonaBench's personalized traces word for word where the two overlap
(`data.personabench.personas`), so both sources teach one grammar of the two modes:

| mode | condition | reasoning | answer |
|---|---|---|---|
| general | every condition | ``the answer is B : <text of B> .`` | gold |
| personalized | none | ``no persona .`` + the general sentence | gold |
| personalized | irrelevant | ``persona not relevant .`` + the general sentence | gold |
| personalized | helpful | ``persona says B .`` (B = its target = gold) | gold |
| personalized | misaligned, ambiguous | ``persona says X .`` (X = its target) | X |

The general sentence restates the gold option with its text (where the question writes its options out),
which ties the letter to the content; it claims no derivation. The personalized trace under a
misaligned or ambiguous persona is the naive persona-follower's (it trusts the persona whatever it
says): it reaches a wrong answer under a misaligned persona, and the mixes that verify traces
(``dual`` takes the general trace there, ``personalized_only`` only traces that reach the gold)
never train it; the unverified ``persona_prompted`` baseline does, which is what makes it the naive
baseline. An ambiguous persona names two options; its trace follows the first named (its target).
"""

from __future__ import annotations

from typing import Iterable

from ..options import option_texts
from ..schema import Item, Trace


def general_sentence(item: Item) -> str:
    """The gold option stated, with its text where the question spells its options out."""
    text = option_texts(item).get(item.gold)
    return f"the answer is {item.gold} : {' '.join(text.split())} ." if text else f"the answer is {item.gold} ."


def templated_traces(item: Item) -> dict[str, Trace]:
    """mode -> trace for one objective item under its persona condition (table in the module docstring)."""
    if item.kind != "objective":
        raise ValueError(f"item {item.id}: templated traces are for objective items, not {item.kind!r} ones")
    general = general_sentence(item)
    if item.condition == "none":
        personalized = Trace(reasoning=f"no persona . {general}", answer=item.gold)
    elif item.condition == "irrelevant":
        personalized = Trace(reasoning=f"persona not relevant . {general}", answer=item.gold)
    else:  # helpful, misaligned, ambiguous: the persona points to an option and the trace follows it
        target = item.persona_pull
        if target not in item.options:
            raise ValueError(f"item {item.id}: a {item.condition} persona needs a persona_pull among the options, "
                             f"got {target!r}")
        personalized = Trace(reasoning=f"persona says {target} .", answer=target)
    return {"general": Trace(reasoning=general, answer=item.gold), "personalized": personalized}


def with_templated_traces(items: Iterable[Item]) -> list[Item]:
    """Copies of ``items`` with `templated_traces` (each item's preferred mode, set by the condition grid, kept)."""
    return [it.model_copy(update={"traces": templated_traces(it)}) for it in items]
