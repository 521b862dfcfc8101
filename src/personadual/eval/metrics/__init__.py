"""Metrics from predictions: pure functions, one definition each, called alike by `personadual eval`,
the SFT separation callback (`sft.separation`), the end-of-run checks (`eval.checks`) and the studies'
reports, so a number means the same wherever it is printed.

- `intervals`: means with bootstrap CIs, and paired differences (conditions, items, questions);
- `accuracy`: accuracy per persona condition, balanced accuracy and its paired difference;
- `pull`: persona pull toward the option a persona points to, paired with the no-persona question;
- `letters`: the answers' letters beside the golds' (a constant answer shows here);
- `mode_choice`: HAcc and its per-cell oracle, the forced modes' separation, calibration of p(mode | x);
- `summary`: one evaluation's metrics.json (`compute_metrics`) and the checks' headline numbers.

What is judged from these numbers (a degenerate model, a misplaced mode) is in `eval.verdicts`.
"""

from .accuracy import (accuracy_by_condition, balance, balanced_accuracy, paired_balanced_diff,
                       rounded_accuracy_by_condition)
from .intervals import bootstrap_ci, paired_condition_diff, paired_gap, paired_item_diff
from .letters import letter_distribution
from .mode_choice import calibration, hacc, separation
from .pull import PULL_CONDITIONS, persona_pull, pull_differences, pull_target, target_weight
from .summary import compute_metrics, quick_summary, summarize

__all__ = ["PULL_CONDITIONS", "accuracy_by_condition", "balance", "balanced_accuracy", "bootstrap_ci", "calibration",
           "compute_metrics", "hacc", "letter_distribution", "paired_balanced_diff", "paired_condition_diff",
           "paired_gap", "paired_item_diff", "persona_pull", "pull_differences", "pull_target", "quick_summary",
           "rounded_accuracy_by_condition", "separation", "summarize", "target_weight"]
