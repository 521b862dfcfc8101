"""Run a model on items through the shared engine and score each response."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Sequence

from .. import modes as modes_lib
from ..answers import parse_plain
from ..data.options import option_texts
from ..data.schema import OBJECTIVE_CONDITIONS, Item
from ..engine import Engine, Generation, GenerationConfig


@dataclass
class Prediction:
    id: str
    base_id: str | None
    family: str
    kind: str
    condition: str
    gold: str
    preferred_mode: str | None
    requested_mode: str  # auto, or the forced mode
    mode: str | None  # the mode the response is in
    answer: str | None
    correct: bool
    well_formed: bool
    reason: str
    p_mode: dict[str, float]
    text: str
    marker_mass: float | None = None  # p(any marker | x) before renormalising (Generation.marker_mass)
    persona_pull: str | None = None  # the option the item's persona points to (Item.persona_pull)
    option_probs: dict[str, float] | None = None  # option -> probability, where options were scored (choice)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict) -> "Prediction":
        """A predictions.jsonl row back as a Prediction; rows written before a field existed get its
        default, and keys that are not fields (the row's ``run``) are left out."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})


def load_predictions(path: str | Path) -> dict[str, list[Prediction]]:
    """run -> its predictions, from an eval directory or its predictions.jsonl, in file order."""
    path = Path(path)
    path = path / "predictions.jsonl" if path.is_dir() else path
    runs: dict[str, list[Prediction]] = {}
    with path.open() as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                runs.setdefault(row.get("run", modes_lib.AUTO), []).append(Prediction.from_dict(row))
            except (ValueError, TypeError) as e:
                raise ValueError(f"{path}:{lineno}: not a prediction row ({e})") from None
    return runs


def predict(engine: Engine, items: Sequence[Item], mode: str = modes_lib.AUTO, config: GenerationConfig | None = None,
            drop_persona: bool = False, persona_template: str = modes_lib.PAPER_PERSONA_TEMPLATE,
            p_mode: Sequence[Sequence[float]] | None = None, progress=None) -> list[Prediction]:
    """Generate for every item (``drop_persona`` gives the no-persona upper bound) and score it.
    ``p_mode``: p(mode | prompt) rows already known for these items (see Engine.generate);
    ``progress`` is told each generation batch's size."""
    prompts = [
        engine.render_prompt(it.question, None if drop_persona else it.persona, persona_template=persona_template)
        for it in items
    ]
    gens = engine.generate(prompts, mode, config, p_mode=p_mode, progress=progress)
    return [score(it, g, mode, plain=engine.modes is None) for it, g in zip(items, gens)]


def score(item: Item, g: Generation, requested_mode: str, plain: bool = False) -> Prediction:
    """One generation, scored against the item. A plain reply is read against the item's own options
    (`personadual.answers`): unreadable counts as wrong, with ``well_formed=False``."""
    parsed = parse_plain(g.text, item.options, option_texts(item)) if plain else g.parsed
    return Prediction(
        id=item.id, base_id=item.base_id, family=item.family, kind=item.kind, condition=item.condition, gold=item.gold,
        preferred_mode=item.preferred_mode, requested_mode=requested_mode, mode=parsed.mode, answer=parsed.answer,
        correct=parsed.answer == item.gold, well_formed=parsed.well_formed, reason=parsed.reason,
        p_mode=g.p_mode, text=g.text, marker_mass=g.marker_mass, persona_pull=item.persona_pull,
    )


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
