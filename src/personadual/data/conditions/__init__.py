"""Persona conditions for any multiple-choice items: PersonaBench's paired grid on real questions.

`build_conditions` puts each persona-less objective item (MMLU, FLAN, UltraMedical, ...) under the
conditions PersonaBench uses: none, irrelevant, misaligned (a persona pointing to a wrong option),
helpful (a true signal for the gold option) and ambiguous (gold and a wrong option, undecided).
Train gets one condition per question; val and test are paired, every question under every
condition, with personas phrased from held-out pools. `write_conditions` writes the folder that
`personadual eval --data DIR` reads; `fill_aligned_slots` gives items that `attach_personas`
marked for an aligned persona a built-in helpful one.

Modules: `phrasings` (the built-in persona pools and how they are filled in), `build` (the grid,
its stats and the writer), `commands` (``personadual data conditions``).
"""

from .build import (ConditionsConfig, build_conditions, fill_aligned_slots, irrelevant_pools, split_of, stats,
                    write_conditions)
from .phrasings import AMBIGUOUS, HELPFUL, IRRELEVANT, MISALIGNED, option_ref, subject_of

__all__ = ["AMBIGUOUS", "HELPFUL", "IRRELEVANT", "MISALIGNED", "ConditionsConfig", "build_conditions",
           "fill_aligned_slots", "irrelevant_pools", "option_ref", "split_of", "stats", "subject_of",
           "write_conditions"]
