"""`personadual eval`: predictions.jsonl, metrics.json and report.md for one model on one item file.

In-process here (`evaluate`: a protocol object, `protocols`, runs the items), through an
OpenAI-compatible endpoint in `endpoint`; all end in `write_results`, so their outputs have one format
and `personadual report` compares them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from .. import modes as modes_lib
from ..data.schema import Item, read_split
from ..engine import Engine
from ..files import write_text_atomic
from .predictions import Prediction
from .protocols import Protocol, RunSettings, open_protocol
from .report import model_report


def evaluate(model_dir: str, data: str, out_dir: str, mode: str = modes_lib.AUTO, forced: bool = True,
             drop_persona: bool = False, limit: int | None = None, batch_size: int = 128,
             max_new_tokens: int = 96, name: str | None = None, engine: Engine | None = None,
             chat_template_kwargs: dict | None = None, backend: str = "hf", protocol: str | Protocol = "auto",
             choice_form: str = "text", progress: bool = False, general_context: str = "persona") -> dict:
    """Run the model on ``data`` (auto or a forced mode); with ``forced`` also once per mode, for HAcc.

    ``drop_persona`` removes every persona from the prompts: the interference-free upper bound.
    ``protocol``: a `protocols.Protocol` (`load_protocol` on an engine), used as given; or its name, read
    here once (`open_protocol`, with ``engine``, ``backend``, ``chat_template_kwargs``, ``choice_form`` and
    ``general_context``): modes, plain (a model without markers: no modes to force, answers read from
    free text), auto (modes when the model has the markers) or choice (the options scored by their
    log-likelihood in ``choice_form``, `eval.choice`; the markers decide between a plain and a mode
    model, as auto does; ``general_context`` "set-aside" reads a mode model's general mode after the
    prompt without its persona, `eval.choice.GENERAL_CONTEXTS`). Prompts are rendered with the settings
    saved with the model unless ``chat_template_kwargs`` says otherwise. ``progress``: a progress bar on stderr.
    """
    items = read_split(data, "test")[:limit]
    if isinstance(protocol, str):
        protocol = open_protocol(model_dir, protocol, engine, backend, chat_template_kwargs, choice_form,
                                 general_context)
    settings = RunSettings(mode, forced, drop_persona, batch_size, max_new_tokens)
    about = {"model": str(model_dir), "data": str(data), "requested_mode": mode, "drop_persona": drop_persona,
             "chat_template_kwargs": protocol.engine.chat_template_kwargs,
             "name": name or Path(model_dir).parent.name}
    return evaluate_items(protocol, items, settings, out_dir, about, progress)


def evaluate_items(protocol: Protocol, items: Sequence[Item], settings: RunSettings, out_dir: str | Path,
                   about: dict, progress: bool = False) -> dict:
    """``protocol`` run on ``items``, its results written to ``out_dir`` with ``about`` (what was evaluated)
    after its metrics; returns metrics.json's content."""
    from tqdm import tqdm

    protocol.check(settings)
    # one bar over every sequence generated or scored, on stderr: stdout stays the command's JSON summary
    with tqdm(total=protocol.sequences(items, settings), desc="eval", unit="seq", disable=not progress) as bar:
        runs, how = protocol.run(items, settings, bar.update)
    return write_results(out_dir, runs, protocol, {**about, **how})


def write_results(out_dir: str | Path, runs: dict[str, list[Prediction]], protocol: Protocol, about: dict) -> dict:
    """predictions.jsonl, report.md, then metrics.json: written last, its presence means complete.
    The metrics are the ones ``protocol`` reports (`Protocol.metrics`), then ``about``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = {**protocol.metrics(runs), **about}
    lines = [json.dumps({**p.to_dict(), "run": run}) for run, preds in runs.items() for p in preds]
    write_text_atomic(out / "predictions.jsonl", "\n".join(lines) + "\n")
    write_text_atomic(out / "report.md", model_report(metrics))
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics
