"""Answers by generation: a model run on items through the engine, and each reply read into a `Prediction`.

What the generating protocols (`protocols.ModesProtocol`, `protocols.PlainProtocol`) run, and what the
training stages' checks on val run too (SFT's separation callback, the end-of-run checks): one path,
so a check during training and `personadual eval` read a model the same way.

A mode model is run once per mode, forced (`runs_by_mode`), and its auto run is assembled from those
(`with_auto_run`); the choice protocol and an endpoint assemble theirs with the same function, so
HAcc, mode share and calibration mean the same whichever way the answers came.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import torch

from .. import modes as modes_lib
from ..answers import parse_plain
from ..data.options import option_texts
from ..data.schema import Item
from ..engine import Engine, Generation, GenerationConfig, choose_modes
from ..modes import AUTO
from .predictions import Prediction


def predict(engine: Engine, items: Sequence[Item], mode: str = modes_lib.AUTO, config: GenerationConfig | None = None,
            drop_persona: bool = False, persona_template: str = modes_lib.PAPER_PERSONA_TEMPLATE,
            p_mode: Sequence[Sequence[float]] | None = None, progress=None) -> list[Prediction]:
    """Generate for every item (``drop_persona`` gives the no-persona upper bound) and read each reply.
    ``p_mode``: p(mode | prompt) rows already known for these items (see Engine.generate);
    ``progress`` is told each generation batch's size."""
    prompts = [
        engine.render_prompt(it.question, None if drop_persona else it.persona, persona_template=persona_template)
        for it in items
    ]
    gens = engine.generate(prompts, mode, config, p_mode=p_mode, progress=progress)
    return [read_generation(it, g, mode, plain=engine.modes is None) for it, g in zip(items, gens)]


def read_generation(item: Item, g: Generation, requested_mode: str, plain: bool = False) -> Prediction:
    """One generation, read against the item. A plain reply is read against the item's own options
    (`personadual.answers`): unreadable counts as wrong, with ``well_formed=False``."""
    parsed = parse_plain(g.text, item.options, option_texts(item)) if plain else g.parsed
    return Prediction(
        id=item.id, base_id=item.base_id, family=item.family, kind=item.kind, condition=item.condition, gold=item.gold,
        preferred_mode=item.preferred_mode, requested_mode=requested_mode, mode=parsed.mode, answer=parsed.answer,
        correct=parsed.answer == item.gold, well_formed=parsed.well_formed, reason=parsed.reason,
        p_mode=g.p_mode, text=g.text, marker_mass=g.marker_mass, persona_pull=item.persona_pull,
    )


def runs_by_mode(engine: Engine, items: Sequence[Item], config: GenerationConfig | None = None,
                 drop_persona: bool = False, progress=None) -> dict[str, list[Prediction]]:
    """Auto-mode predictions plus one forced run per registered mode, aligned item by item.

    An auto response opens with the marker the model chooses from p(mode | x) and continues exactly
    as that mode's forced response (`choose_modes`), so the auto run is assembled from the forced
    runs rather than generated a third time: each auto prediction *is* the chosen mode's forced one,
    and HAcc compares like with like. p(mode | x) is read before any marker, so the first forced run
    computes it and the others reuse it. ``progress`` is told each generation batch's size.
    """
    cfg = config or GenerationConfig()
    runs: dict[str, list[Prediction]] = {}
    p_mode = None
    for name in engine.modes.names:
        runs[name] = predict(engine, items, name, cfg, drop_persona=drop_persona, p_mode=p_mode, progress=progress)
        if p_mode is None:
            p_mode = [[p.p_mode[m] for m in engine.modes.names] for p in runs[name]]
    return with_auto_run(runs, engine.modes.names, cfg.temperature, cfg.seed)


def with_auto_run(runs: dict[str, list[Prediction]], names: Sequence[str], temperature: float = 0.0,
                  seed: int | None = None) -> dict[str, list[Prediction]]:
    """Forced runs (aligned item by item) plus the auto run assembled from them: each item's auto
    prediction is the forced prediction of the mode the model chooses from p(mode | x) (`choose_modes`).
    p(mode | x) and the marker mass come from the first mode's run (they are read before any marker,
    so every run has the same ones; a server may round them differently per request)."""
    first = runs[names[0]]
    p_mode = [[p.p_mode[m] for m in names] for p in first]
    runs = {m: [replace(p, marker_mass=first[i].marker_mass, p_mode=first[i].p_mode) for i, p in enumerate(preds)]
            for m, preds in runs.items()}
    if seed is not None:
        torch.manual_seed(seed)
    chosen = choose_modes(p_mode, list(names), temperature) if first else []
    return {"auto": [replace(runs[c][i], requested_mode=AUTO) for i, c in enumerate(chosen)], **runs}
