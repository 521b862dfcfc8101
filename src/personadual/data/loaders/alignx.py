"""AlignX -> personalized `Item` rows: chosen/rejected as options A/B, persona from preferences.

The prompt gets "Which of these two responses would I prefer?" and chosen/rejected as A/B in a
seeded per-row order. The persona is written from the 90-dimension "Preference Direction"
(>= like_threshold: the positive pole, <= dislike_threshold: the negative pole, in between:
dropped), from the user's history vectors, and/or from the demographic text.
"""

from __future__ import annotations

import random

from ..personabench.build import preferred_mode
from ..schema import Item
from .multiple_choice import lettered_options
from .personahub import persona_phrase
from .reading import BadRow, SkipRow, row_field


def _dimensions() -> list[tuple[str, str]]:
    """AlignX's 90 preference dimensions as (positive pole, negative pole), in the dataset's order."""
    like = lambda *xs: [(f"likes {x}", f"dislikes {x}") for x in xs]  # noqa: E731
    need = lambda *xs: [(f"strong need for {x}", f"indifferent to {x.split(' (')[0]}") for x in xs]  # noqa: E731
    concern = lambda *xs: [(f"concerned about {x}", f"indifferent about {x}") for x in xs]  # noqa: E731
    return ([("young", "older"), ("female", "male")]
            + [(f"high {x}", f"low {x}") for x in ("neuroticism", "extraversion", "openness", "agreeableness", "conscientiousness")]
            + like("a certain food", "a certain living environment", "sleep")
            + [("aggressive investment", "conservative investment"), ("good at saving", "bad at saving")]
            + [(f"concerned about {x}", f"not concerned about {x}") for x in ("physical safety", "environmental safety")]
            + [("prefers superficial, casual interaction", "prefers deep interaction (interests, emotional topics)"),
               ("prefers direct communication to handle conflict", "prefers avoidance, mediation or compromise to handle conflict"),
               ("concise communication style", "detailed communication style")]
            + need("a certain work environment", "recognition from others", "personal achievement")
            + like("a certain area of knowledge", "a certain learning style", "a certain form of creative expression")
            + need("order (neatness, organization)", "retention (keeping things)", "inviolacy (dignity, reputation)",
                   "infavoidance (avoiding failure, embarrassment)", "counteraction (overcoming failure)",
                   "seclusion (being alone)", "dominance (controlling others)", "deference (following authority)",
                   "autonomy (independence)", "contrariance (being unique, opposing norms)", "abasement (accepting blame)",
                   "aggression (forceful control of others)", "affiliation (close relationships)",
                   "rejection (excluding negatively judged people)", "nurturance (caring for others)",
                   "succorance (seeking help and comfort)", "play (fun, relaxation)")
            + concern("harmlessness", "instruction-following", "honesty", "truthfulness", "helpfulness", "coherence", "complexity")
            + like(*"science|knowledge|psychology|cinema|entertainment|gaming|parenting|wild imagination|anime|sports|law|"
                   "workplace|pets|travel|health|stories|cars|gourmet food|education|current events|home decor|"
                   "international|finance|campus life|digital technology|emotions|humor|music|reading|painting|dance|"
                   "crafts|photography|culture|fitness|art|stationery and planners|celebrities|outdoors|camping|"
                   "social sciences|weddings|fashion".split("|")))


ALIGNX_DIMENSIONS: list[tuple[str, str]] = _dimensions()
assert len(ALIGNX_DIMENSIONS) == 90


def _vector(value, field: str) -> tuple[list[tuple[str, str]], list[float]]:
    """A preference vector: AlignX's 90-value list, or a {dimension name: value} mapping."""
    if isinstance(value, dict):
        poles, values = [(f"likes {k}", f"dislikes {k}") for k in value], list(value.values())
    elif isinstance(value, list) and len(value) == len(ALIGNX_DIMENSIONS):
        poles, values = ALIGNX_DIMENSIONS, value
    else:
        raise BadRow(field, f"expected {len(ALIGNX_DIMENSIONS)} numbers or a {{dimension: value}} mapping, got {value!r:.60}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in values):
        raise BadRow(field, "values must be numbers in [0, 1]")
    return poles, [float(v) for v in values]


def _history_vector(row: dict) -> tuple[list[tuple[str, str]], list[float]]:
    """Mean direction over the user's other comments and pairs (how AlignX's authors build profiles)."""
    vecs = [_vector(h.get("Preference Direction"), f"{key}[{i}].Preference Direction")
            for key in ("User-Generated Content", "Pair-wise Comparative Feedback")
            for i, h in enumerate(row.get(key) or []) if isinstance(h, dict)]
    if not vecs:
        raise BadRow("User-Generated Content", "no history entries to build a profile from")
    if any(poles != vecs[0][0] for poles, _ in vecs):
        raise BadRow("User-Generated Content", "history vectors name different dimensions")
    return vecs[0][0], [sum(col) / len(vecs) for col in zip(*(v for _, v in vecs))]


def _traits(poles, values, like: float, dislike: float) -> list[str]:
    traits = [pos if v >= like else neg for (pos, neg), v in zip(poles, values) if v >= like or v <= dislike]
    if not traits and any(v != 0.5 for v in values):  # nothing past a threshold: keep the strongest lean
        (pos, neg), v = max(zip(poles, values), key=lambda pv: abs(pv[1] - 0.5))
        traits = [pos if v > 0.5 else neg]
    return traits


def alignx_item(row: dict, index: int, *, seed: int = 0, like_threshold: float = 0.6,
                dislike_threshold: float = 0.4, profile: str = "direction", demographics: bool = False) -> Item:
    if profile not in ("direction", "history", "demographic"):
        raise ValueError(f"alignx profile must be direction, history or demographic, got {profile!r}")
    prompt, chosen, rejected = row_field(row, "prompt"), row_field(row, "chosen"), row_field(row, "rejected")
    parts = []
    if profile in ("direction", "history"):
        poles, values = (_vector(row.get("Preference Direction"), "Preference Direction") if profile == "direction"
                         else _history_vector(row))
        if traits := _traits(poles, values, like_threshold, dislike_threshold):
            parts.append("someone with these traits and preferences: " + "; ".join(traits))
    demo = row.get("Demographic Information")
    if demo is not None and not isinstance(demo, str):
        raise BadRow("Demographic Information", f"expected text, got {type(demo).__name__}")
    if (profile == "demographic" or demographics) and demo and demo.strip():
        parts.append(persona_phrase(demo))
    if not parts:
        raise SkipRow("no persona signal (neutral dimensions, no demographic text)")
    # Seeded per row, so the order does not depend on which other rows were read.
    swap = random.Random(f"{seed}-alignx-{index}").random() < 0.5
    options, gold = ([rejected, chosen], "B") if swap else ([chosen, rejected], "A")
    question = f"{prompt.strip()}\n\nWhich of these two responses would I prefer?\n{lettered_options(options)}"
    return Item(id=f"alignx-{index:06d}", kind="personalized", family="alignx", condition="personalized",
                question=question, options=["A", "B"], gold=gold, persona=". ".join(parts), persona_pull=gold,
                preferred_mode=preferred_mode("personalized"), source="alignx",
                meta={"row": index, "id": row.get("id"), "profile": profile})
