"""Verdicts: where a measured number becomes a judgement a report prints in capitals, each line drawn once.

Every threshold sits here with the measurement that placed it, so a report, the demo's stage checks,
the real study's stopping check and the RL end-of-run check judge a model by the same line:

- ONE OPTION: one letter is most of the answers (`answers_one_option`);
- DEGENERATE: a dual model whose forced modes (almost) never disagree (`is_degenerate`);
- MISREADS: a personalized mode that gets helpful personas wrong (`misreads_helpful_personas`);
- MISPLACES: auto mode choosing the personalized mode where the persona should be set aside
  (`misplaced_personalized_share`, `misplaces_personalized_mode`);
- the RL end-of-run check's line (`mode_check_line`).

The numbers come from `eval.metrics`; the studies' own claims stay in `experiments/*_report.py`.
"""

from __future__ import annotations

ONE_OPTION_SHARE = 0.8  # answers one option on more than this share of the items: a constant, not a reading


def answers_one_option(answers: dict[str, float], max_share: float = ONE_OPTION_SHARE) -> bool:
    """Whether one option is more than ``max_share`` of the answers (option -> share, `metrics.letter_distribution`):
    such a model answers a constant, and its accuracy is that option's share among the golds."""
    top = max(answers, key=answers.get, default=None)
    return top is not None and answers[top] > max_share


DEGENERATE_BELOW = 0.05  # decisive share on val: separated dual models of the tiny recipe sit at 27-84%, collapsed ones at 1-2%


def is_degenerate(sep: dict, min_decisive_share: float = DEGENERATE_BELOW) -> bool:
    """A dual model whose modes (almost) never disagree: fewer than ``min_decisive_share`` decisive items
    (``sep`` is `metrics.separation`'s result).

    Separation comes on suddenly during SFT (a few items for many steps, then a third of them within
    25 steps), so a model is either well above the line or on the floor; the line sits between."""
    return (sep.get("decisive_share") or 0.0) < min_decisive_share


def misreads_helpful_personas(forced_personalized_helpful_acc: float | None, min_acc: float = 0.9) -> bool:
    """A personalized mode that, forced onto helpful personas (whose text names the gold option), answers
    fewer than ``min_acc`` of them right: it cannot read the persona, so choosing it gains nothing, and a
    helpful-persona gain cannot be expected from the model. Reading a named option is the mode's easiest
    job; on PersonaBench a sound model is right on 95-100% of them."""
    return forced_personalized_helpful_acc is not None and forced_personalized_helpful_acc < min_acc


# objective items whose persona has nothing reliable to give (none, off-topic, a wrong pull, self-contradicting)
SET_ASIDE_CONDITIONS = ("none", "irrelevant", "misaligned", "ambiguous")
MISPLACED_ABOVE = 0.2  # personalized share on those: sound dual models of the tiny recipe choose it on 0-8% of them


def misplaced_personalized_share(mode_share: dict[str, dict[str, float]]) -> tuple[str, float] | None:
    """(condition, share): the set-aside condition where auto mode picks the personalized mode most often.

    On an objective item with no persona, an irrelevant, a misaligned or a self-contradicting one, the
    general mode is the right choice; the personalized mode can only follow the persona there. ``mode_share`` maps a
    condition to its auto-mode shares (`metrics.json`'s ``mode_share``); None without such conditions."""
    shares = [(c, mode_share[c].get("personalized", 0.0)) for c in SET_ASIDE_CONDITIONS if c in mode_share]
    return max(shares, key=lambda cs: cs[1]) if shares else None


def misplaces_personalized_mode(worst: tuple[str, float] | None, max_share: float = MISPLACED_ABOVE) -> bool:
    """A model that chooses the personalized mode on more than ``max_share`` of a set-aside condition's
    items (`misplaced_personalized_share`): its mode choice has spread onto personas it should ignore,
    as an RL run can, after an SFT start that was sound, and that condition's accuracy pays for it."""
    return worst is not None and worst[1] > max_share


def mode_check_line(result: dict) -> str:
    """The line the RL end-of-run check (`eval.checks.mode_check`) prints: HAcc on the items where the
    modes disagree, balanced accuracy, accuracy per condition. No line is drawn on it: the run's report
    and the demo's stage checks judge the saved model, so this line only says where the run ended."""
    return (f"[check] HAcc {result['hacc']} (decisive {result['decisive']}), balanced acc {result['balanced_acc']}, "
            f"acc {result['acc']}, personalized {result['personalized_acc']}")
