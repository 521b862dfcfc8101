"""What one evaluation writes to metrics.json (`compute_metrics`: accuracy and mode behaviour of the auto
run, per task family, and the forced runs' HAcc, separation and calibration where there are any), and
the headline numbers the training stages' checks print (`quick_summary`)."""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from ...data.schema import OBJECTIVE_CONDITIONS
from ..predictions import Prediction
from .accuracy import accuracy_by_condition, balanced_accuracy
from .letters import letter_distribution
from .mode_choice import calibration, hacc, separation
from .pull import persona_pull


def _diff(a: dict | None, b: dict | None) -> float | None:
    return round(a["mean"] - b["mean"], 4) if a and b else None


def summarize(preds: Sequence[Prediction], n_boot: int = 1000, plain: bool = False,
              unreadable: bool | None = None) -> dict:
    """Accuracy and mode behaviour for one set of (auto or forced) predictions. ``plain``: a model
    without modes, so no mode keys; ``unreadable`` (default: ``plain``) counts the replies no answer
    could be read from (a protocol that scores the options has none)."""
    acc = accuracy_by_condition(preds, n_boot)
    mode_share = defaultdict(lambda: defaultdict(int))
    for p in preds:
        mode_share[p.condition][p.mode or "none"] += 1
    out = {
        "n": len(preds),
        "acc": {c: v for c, v in acc.items() if c != "personalized"},
        "personalized_acc": acc.get("personalized"),
        "interference": {"misaligned": _diff(acc.get("none"), acc.get("misaligned")),
                         "irrelevant": _diff(acc.get("none"), acc.get("irrelevant"))},
        "helpful_gain": _diff(acc.get("helpful"), acc.get("none")),
        "pull": persona_pull(preds, n_boot),
        "balanced_acc": balanced_accuracy(preds),
        "format_error_rate": round(1 - sum(p.well_formed for p in preds) / len(preds), 4) if preds else None,
        "preferred_mode_agreement": round(sum(p.mode == p.preferred_mode for p in preds) / len(preds), 4) if preds else None,
        "mode_share": {c: {m: round(k / sum(v.values()), 4) for m, k in sorted(v.items())} for c, v in sorted(mode_share.items())},
    }
    if plain:
        del out["preferred_mode_agreement"], out["mode_share"]
    if plain if unreadable is None else unreadable:
        bad = sum(not p.well_formed for p in preds)
        out["unreadable"] = {"n": bad, "rate": round(bad / len(preds), 4) if preds else None}
    return out


def compute_metrics(runs: dict[str, list[Prediction]], n_boot: int = 1000, protocol: str = "modes",
                    modes: bool = True, unreadable: bool = False) -> dict:
    """All metrics for a model: auto mode overall and per family, plus forced-mode runs when present.

    What to report is the protocol's to say (`protocols.Protocol.metrics` passes these): ``protocol``
    is only the name written first; ``modes``: whether the predictions carry modes (without them, the
    same accuracy metrics and no mode metrics); ``unreadable``: whether answers were read from free
    text, so some could not be read and are counted (a protocol that scores the options has none)."""
    auto = runs["auto"]
    plain = not modes
    out = {"protocol": protocol, **summarize(auto, n_boot, plain, unreadable=unreadable)}
    out["letters"] = letter_distribution(auto)
    out["per_family"] = {}
    for fam in sorted({p.family for p in auto}):
        s = summarize([p for p in auto if p.family == fam], n_boot=200, plain=plain, unreadable=False)
        keys = ("acc", "personalized_acc", "interference", "helpful_gain") + (() if plain else ("mode_share",))
        out["per_family"][fam] = {k: s[k] for k in keys}
    masses = [p.marker_mass for p in auto if p.marker_mass is not None]
    if masses:  # how much of the first token's probability the markers hold: RL's marker leak (trap 4)
        out["marker_mass"] = {"mean": round(sum(masses) / len(masses), 4), "min": round(min(masses), 4),
                              "below_half": round(sum(m < 0.5 for m in masses) / len(masses), 4)}
    forced = [m for m in runs if m != "auto"]
    if forced:
        out.update(hacc(runs))
        out["separation"] = separation(runs)
        out["calibration"] = calibration(runs)
        out["forced"] = {m: {k: v for k, v in summarize(runs[m], n_boot=200).items()
                             if k in ("acc", "personalized_acc", "pull")} for m in forced}
    return out


def _rate(xs: list[bool]) -> float | None:
    return round(sum(xs) / len(xs), 4) if xs else None


def quick_summary(preds: Sequence[Prediction]) -> dict:
    """The headline numbers: format, mode agreement, objective accuracy per condition, personalized accuracy."""
    by_cond = defaultdict(list)
    for p in preds:
        by_cond[p.condition].append(p.correct)
    return {
        "n": len(preds),
        "well_formed": _rate([p.well_formed for p in preds]),
        "preferred_mode_agreement": _rate([p.mode == p.preferred_mode for p in preds if p.preferred_mode]),
        "acc": {c: _rate(by_cond[c]) for c in OBJECTIVE_CONDITIONS if by_cond[c]},
        "personalized_acc": _rate(by_cond["personalized"]),
        "mode_share_personalized": {
            c: _rate([p.mode == "personalized" for p in preds if p.condition == c]) for c in sorted(by_cond)
        },
    }
