"""`personadual eval`: predictions.jsonl, metrics.json and report.md for one model on one item file.

In-process here (`evaluate`), through an OpenAI-compatible endpoint in `endpoint`; both end in
`write_results`, so their outputs have one format and `personadual report` compares them.
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import modes as modes_lib
from ..data.schema import read_split
from ..engine import Engine, GenerationConfig, load_engine
from ..files import write_text_atomic
from .metrics import compute_metrics
from .mode_choice import runs_by_mode
from .predict import Prediction, predict
from .report import model_report


def evaluate(model_dir: str, data: str, out_dir: str, mode: str = modes_lib.AUTO, forced: bool = True,
             drop_persona: bool = False, limit: int | None = None, batch_size: int = 128,
             max_new_tokens: int = 96, name: str | None = None, engine: Engine | None = None,
             chat_template_kwargs: dict | None = None, backend: str = "hf", protocol: str = "auto") -> dict:
    """Run the model on ``data`` (auto or a forced mode); with ``forced`` also once per mode, for HAcc.

    ``drop_persona`` removes every persona from the prompts: the interference-free upper bound.
    ``protocol``: modes, plain (a model without markers: no modes to force, answers read from free
    text) or auto (modes when the model has the markers). Prompts are rendered with the settings
    saved with the model unless ``chat_template_kwargs`` says otherwise.
    """
    items = read_split(data, "test")[:limit]
    engine = engine or load_engine(model_dir, backend, chat_template_kwargs=chat_template_kwargs, protocol=protocol)
    if engine.modes is None and mode != modes_lib.AUTO:
        raise ValueError(f"cannot force mode {mode!r}: this model has no mode markers (plain protocol)")
    cfg = GenerationConfig(max_new_tokens=max_new_tokens, batch_size=batch_size)
    if forced and mode == modes_lib.AUTO and engine.modes is not None:
        runs = runs_by_mode(engine, items, cfg, drop_persona=drop_persona)
    else:
        runs = {"auto": predict(engine, items, mode, cfg, drop_persona=drop_persona)}
    return write_results(out_dir, runs, engine.protocol, {
        "model": str(model_dir), "data": str(data), "requested_mode": mode, "drop_persona": drop_persona,
        "chat_template_kwargs": engine.chat_template_kwargs, "name": name or Path(model_dir).parent.name})


def write_results(out_dir: str | Path, runs: dict[str, list[Prediction]], protocol: str, about: dict) -> dict:
    """predictions.jsonl, report.md, then metrics.json: written last, its presence means complete."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = {**compute_metrics(runs, protocol=protocol), **about}
    lines = [json.dumps({**p.to_dict(), "run": run}) for run, preds in runs.items() for p in preds]
    write_text_atomic(out / "predictions.jsonl", "\n".join(lines) + "\n")
    write_text_atomic(out / "report.md", model_report(metrics))
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics
