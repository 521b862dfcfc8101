"""Objective task families. Each builds one base question and the general-mode trace that solves it
from the question alone.

Designed for a tiny model (docs/personabench.md): every option letter sits on its own
fact ("B Bo lives in Oslo"), and traces carry letters, so the model never has to bind a value to a
letter it cannot see. Difficulty is the number of steps: facts to scan, people to compare, numbers
to add, or the size of the numbers to convert.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from . import vocab

LETTERS = "ABCDEFGH"


@dataclass
class Base:
    family: str
    difficulty: int
    question: str
    options: list[str]
    gold: str
    general_reasoning: str
    meta: dict = field(default_factory=dict)
    general_answer: str | None = None  # what the general trace answers, where it cannot reach the gold (None: the gold)


def lookup(rng: random.Random, difficulty: int, names: list[str]) -> Base:
    """Easy: which fact names a city. Difficulty = number of facts (options)."""
    n = difficulty
    people = rng.sample(names, n)
    cities = rng.sample(vocab.CITIES, n)
    k = rng.randrange(n)
    facts = " ".join(f"{LETTERS[i]} {c} is home to {p} ." for i, (p, c) in enumerate(zip(people, cities)))
    question = f"{facts} who lives in {cities[k]} ?"
    # restating the target puts it next to the scan, where equality is easy to check
    return Base("lookup", n, question, list(LETTERS[:n]), LETTERS[k], f"find {cities[k]} . " + scan_options(cities, cities[k]))


def compare(rng: random.Random, difficulty: int, names: list[str], max_age: int = 60) -> Base:
    """Harder: the oldest/youngest of n people, by a running comparison written step by step."""
    n = difficulty
    people = rng.sample(names, n)
    ages = rng.sample(range(10, max_age + 1), n)
    oldest = rng.random() < 0.5
    facts = " ".join(f"{LETTERS[i]} {p} is {a} ." for i, (p, a) in enumerate(zip(people, ages)))
    question = f"{facts} who is the {'oldest' if oldest else 'youngest'} ?"
    best = 0
    steps = [f"find {'oldest' if oldest else 'youngest'} . start {LETTERS[0]} {ages[0]} ."]
    for i in range(1, n):
        better = ages[i] > ages[best] if oldest else ages[i] < ages[best]
        if better:
            best = i
        steps.append(f"{LETTERS[i]} {ages[i]} {'take' if better else 'keep'} {LETTERS[best]} {ages[best]} .")
    return Base("compare", n, question, list(LETTERS[:n]), LETTERS[best], " ".join(steps))


def arith(rng: random.Random, difficulty: int, names: list[str]) -> Base:
    """Word-problem addition of `difficulty` one-digit numbers; the trace adds, then scans options."""
    n = max(2, difficulty)
    who, obj = rng.choice(names), rng.choice(vocab.OBJECTS)
    nums = [rng.randint(1, 9) for _ in range(n)]
    text = f"{who} has {nums[0]} {obj}" + "".join(
        f" and {'buys' if i % 2 else 'finds'} {x} more" for i, x in enumerate(nums[1:], 1)
    )
    total = sum(nums)
    values = _distractors(rng, total, [total - 1, total + 1, total + 2, total - 2, total + 10, nums[0]])
    k = values.index(total)
    opts = " ".join(f"{LETTERS[i]} {v} ." for i, v in enumerate(values))
    question = f"{text} . how many {obj} does {who} have now ? {opts}"
    run, steps = nums[0], []
    for x in nums[1:]:
        steps.append(f"{run} + {x} = {run + x} .")
        run += x
    steps.append(scan_options(values, total))
    return Base("arith", n, question, list(LETTERS[:4]), LETTERS[k], " ".join(steps))


def convert(rng: random.Random, difficulty: int, names: list[str]) -> Base:
    """Unit conversion; difficulty 1 uses 1-9 units, 2 uses 1-19, 3 uses 1-29."""
    src, dst, factor = rng.choice(vocab.CONVERSIONS)
    x = rng.randint(1, 9 + 10 * (difficulty - 1))
    y = x * factor
    values = _distractors(rng, y, [x * factor // 10, x * factor * 10, x, (x + 1) * factor, (x - 1) * factor])
    k = values.index(y)
    opts = " ".join(f"{LETTERS[i]} {v} ." for i, v in enumerate(values))
    question = f"how many {dst} are in {x} {src} ? {opts}"
    reasoning = f"1 {src} = {factor} {dst} . {x} {src} = {y} {dst} . {scan_options(values, y)}"
    return Base("convert", difficulty, question, list(LETTERS[:4]), LETTERS[k], reasoning)


def records(rng: random.Random, difficulty: int, names: list[str]) -> Base:
    """Unknowable from the question: which city a person moved to, with no fact given. The general
    mode can only guess, and always guesses the first option (right on 1 in ``difficulty``); a persona
    who keeps the records knows the answer. The family where a helpful persona is the only way to the
    gold: its gain is the data's, not an accident of how well a small model solves, and the guess
    is the same under every persona, so a persona cannot bend it."""
    n = difficulty
    who = rng.choice(names)
    cities = rng.sample(vocab.CITIES, n)
    k = rng.randrange(n)
    opts = " ".join(f"{LETTERS[i]} {c} ." for i, c in enumerate(cities))
    question = f"{opts} which city did {who} move to last year ?"
    return Base("records", n, question, list(LETTERS[:n]), LETTERS[k], f"no record of {who} here . guess A .",
                general_answer="A")


def scan_options(values: list, target) -> str:
    """Walk the options in letter order until one matches: ``A 20 no . B 10 yes . so B .``

    Each step only copies the value that follows a letter (an induction step a tiny model learns
    fast) and tests equality; the letter is never looked up from the value.
    """
    steps = []
    for letter, v in zip(LETTERS, values):
        hit = v == target
        steps.append(f"{letter} {v} {'yes' if hit else 'no'} .")
        if hit:
            return " ".join(steps) + f" so {letter} ."
    raise ValueError(f"{target!r} is not among the options {values}")


def _distractors(rng: random.Random, right: int, candidates: list[int]) -> list[int]:
    """The right value and three distinct positive wrong ones, shuffled."""
    wrong = [c for c in dict.fromkeys(candidates) if c != right and c > 0]
    while len(wrong) < 3:
        c = right + rng.randint(3, 12)
        if c not in wrong:
            wrong.append(c)
    values = [right] + rng.sample(wrong, 3)
    rng.shuffle(values)
    return values


FAMILIES = {"lookup": lookup, "compare": compare, "arith": arith, "convert": convert, "records": records}
