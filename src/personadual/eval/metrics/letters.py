"""The answers' letter distribution beside the gold answers': a small model's first failure is often one
letter for everything, and then its accuracy is the share of that letter among the golds, not knowledge."""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from ..predictions import Prediction
from ..verdicts import answers_one_option


def letter_distribution(preds: Sequence[Prediction]) -> dict:
    """The share of each option letter among the answers given, beside its share among the gold answers,
    and whether one letter is most of them (`verdicts.answers_one_option`)."""
    def shares(letters: list[str]) -> dict[str, float]:
        counts = defaultdict(int)
        for x in letters:
            counts[x] += 1
        return {k: round(v / len(letters), 4) for k, v in sorted(counts.items())}

    answered = [p for p in preds if p.answer is not None]
    answers = shares([p.answer for p in answered]) if answered else {}
    return {"answers": answers, "gold": shares([p.gold for p in preds]) if preds else {}, "n": len(answered),
            "one_option": answers_one_option(answers)}
