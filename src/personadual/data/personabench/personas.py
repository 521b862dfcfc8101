"""Persona conditions for objective items, and the personalized-mode trace each one leads to.

The personalized trace is what a persona-following teacher writes: it trusts whatever the persona
claims. That is right under a `helpful` persona (its claim is true and saves the work), neutral
under `none`/`irrelevant` (it falls back to solving), and wrong under `misaligned` (the claim
points to a wrong option): the interference a naive persona-following model learns.
"""

from __future__ import annotations

import random

from .families import LETTERS, Base
from . import vocab


def _an(persona: str) -> str:
    """'a accountant' -> 'an accountant'."""
    return "an " + persona[2:] if persona.startswith("a ") and persona[2:3] in "aeiou" else persona


def persona_for(condition: str, base: Base, rng: random.Random, pool: dict) -> tuple[str | None, str | None, str]:
    """-> (persona text, the option it points to, personalized-mode reasoning)."""
    persona, pull, reasoning = _persona_for(condition, base, rng, pool)
    return (_an(persona) if persona else None), pull, reasoning


def _persona_for(condition, base, rng, pool):
    wrong = [o for o in base.options if o != base.gold]
    if condition == "none":
        return None, None, f"no persona . {base.general_reasoning}"
    if condition == "irrelevant":
        role = rng.choice(pool["other_roles"])
        persona = rng.choice(pool["irrelevant_frames"]).format(role=role, hobby=rng.choice(pool["hobbies"]))
        return persona, None, f"persona not relevant . {base.general_reasoning}"
    if condition == "helpful":
        role = rng.choice(pool["helpful_roles"][base.family])
        persona = rng.choice(pool["helpful_frames"]).format(role=role, L=base.gold)
        return persona, base.gold, f"persona says {base.gold} ."
    if condition == "misaligned":
        pull = rng.choice(wrong)
        role = rng.choice(pool["other_roles"])
        persona = rng.choice(pool["misaligned_frames"]).format(role=role, L=pull)
        return persona, pull, f"persona says {pull} ."
    if condition == "ambiguous":
        other = rng.choice(wrong)
        first, second = (base.gold, other) if rng.random() < 0.5 else (other, base.gold)
        role = rng.choice(pool["helpful_roles"][base.family])
        persona = rng.choice(pool["ambiguous_frames"]).format(role=role, L=first, M=second)
        return persona, first, f"persona says {first} or {second} . take {first} ."
    raise ValueError(f"unknown persona condition {condition!r}")


def preference_item(rng: random.Random, pool: dict, n_options: int = 4) -> dict:
    """A personalized item (AlignX-like): which option does this user prefer?

    The persona names a liked and a disliked category; exactly one option is in the liked one.
    The personalized trace labels each option's category and takes the liked one; the general
    trace, blind to the persona, takes the most popular category among the options.
    ``meta["knowledge"]`` is the persona-free fact the personalized trace relies on ("which one is
    travel gear?"), for the base model's pretraining: a real LLM knows what a compass is for.
    """
    cats = rng.sample(list(vocab.CATEGORIES), n_options)
    likes, dislikes = cats[0], rng.choice(cats[1:])
    rng.shuffle(cats)
    things = [rng.choice(vocab.CATEGORIES[c]) for c in cats]
    thing = rng.choice(vocab.PREFERENCE_THINGS)
    opts = " ".join(f"{LETTERS[i]} {t} ." for i, t in enumerate(things))
    question = f"which {thing} would I like best ? {opts}"
    role = rng.choice(pool["other_roles"])
    persona = _an(rng.choice(pool["preference_frames"]).format(role=role, likes=likes, dislikes=dislikes))
    gold = LETTERS[cats.index(likes)]
    # option scan as in families.scan_options, with each thing's category said aloud
    steps = []
    for i, (t, c) in enumerate(zip(things, cats)):
        steps.append(f"{LETTERS[i]} {t} {c} {'yes' if c == likes else 'no'} .")
        if c == likes:
            break
    scan = f"{' '.join(steps)} so {gold} ."
    personalized = f"persona likes {likes} . {scan}"
    popular = min(cats, key=vocab.POPULARITY.index)
    general_answer = LETTERS[cats.index(popular)]
    labelled = " ".join(f"{LETTERS[i]} {t} {c} ." for i, (t, c) in enumerate(zip(things, cats)))
    general = f"no persona used . {labelled} most popular {popular} so {general_answer} ."
    return {
        "question": question,
        "options": list(LETTERS[:n_options]),
        "gold": gold,
        "persona": persona,
        "traces": {"general": (general, general_answer), "personalized": (personalized, gold)},
        "meta": {"likes": likes, "dislikes": dislikes,
                 "knowledge": {"question": f"which one is {likes} ? {opts}", "reasoning": f"find {likes} . {scan}", "answer": gold}},
    }
