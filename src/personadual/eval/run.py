"""`personadual eval`: predictions.jsonl, metrics.json and report.md for one model on one item file.

In-process here (`evaluate`: generation, or the options scored by log-likelihood in `choice`), through
an OpenAI-compatible endpoint in `endpoint`; all end in `write_results`, so their outputs have one
format and `personadual report` compares them.
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import modes as modes_lib
from ..data.schema import read_split
from ..engine import Engine, GenerationConfig, load_engine
from ..files import write_text_atomic
from .choice import FORMS, choice_runs, rows_to_score
from .metrics import compute_metrics
from ..scoring.mode_choice import runs_by_mode
from ..scoring.predict import Prediction, predict
from .report import model_report


def evaluate(model_dir: str, data: str, out_dir: str, mode: str = modes_lib.AUTO, forced: bool = True,
             drop_persona: bool = False, limit: int | None = None, batch_size: int = 128,
             max_new_tokens: int = 96, name: str | None = None, engine: Engine | None = None,
             chat_template_kwargs: dict | None = None, backend: str = "hf", protocol: str = "auto",
             choice_form: str = "text", progress: bool = False, general_context: str = "persona") -> dict:
    """Run the model on ``data`` (auto or a forced mode); with ``forced`` also once per mode, for HAcc.

    ``drop_persona`` removes every persona from the prompts: the interference-free upper bound.
    ``protocol``: modes, plain (a model without markers: no modes to force, answers read from free
    text), auto (modes when the model has the markers) or choice (the options scored by their
    log-likelihood in ``choice_form``, `eval.choice`; the markers decide between a plain and a mode
    model, as auto does; ``general_context`` "set-aside" reads a mode model's general mode after the prompt
    without its persona, `eval.choice.GENERAL_CONTEXTS`). Prompts are rendered with the settings saved with the model unless
    ``chat_template_kwargs`` says otherwise. ``progress``: a progress bar on stderr.
    """
    from tqdm import tqdm

    items = read_split(data, "test")[:limit]
    choice = protocol == "choice"
    if choice and (backend != "hf" or (engine is not None and not hasattr(engine, "scorer"))):
        raise ValueError("--protocol choice scores option log-likelihoods on the HF engine (--backend hf); "
                         "the vLLM engine does not")
    if choice and choice_form not in FORMS:
        raise ValueError(f"--choice-form: expected one of {', '.join(FORMS)}, got {choice_form!r}")
    if general_context != "persona" and not choice:
        raise ValueError("--general-context set-aside applies to --protocol choice")
    engine = engine or load_engine(model_dir, backend, chat_template_kwargs=chat_template_kwargs,
                                   protocol="auto" if choice else protocol)
    if engine.modes is None and mode != modes_lib.AUTO:
        raise ValueError(f"cannot force mode {mode!r}: this model has no mode markers (plain protocol)")
    cfg = GenerationConfig(max_new_tokens=max_new_tokens, batch_size=batch_size)
    all_modes = forced and mode == modes_lib.AUTO and engine.modes is not None
    # choice on a mode model scores every mode whenever auto is asked for (its pick needs p(mode | x) first)
    n_runs = len(engine.mode_names) if all_modes or (choice and mode == modes_lib.AUTO) else 1
    per_run = rows_to_score(items, choice_form, engine.modes is None) if choice else len(items)
    about = {"model": str(model_dir), "data": str(data), "requested_mode": mode, "drop_persona": drop_persona,
             "chat_template_kwargs": engine.chat_template_kwargs, "name": name or Path(model_dir).parent.name}
    # one bar over every sequence generated or scored, on stderr: stdout stays the command's JSON summary
    with tqdm(total=n_runs * per_run, desc="eval", unit="seq", disable=not progress) as bar:
        if choice:
            runs, about["choice"] = choice_runs(engine, items, choice_form, mode, forced, drop_persona,
                                                batch_size, bar.update, general_context)
        elif all_modes:
            runs = runs_by_mode(engine, items, cfg, drop_persona=drop_persona, progress=bar.update)
        else:
            runs = {"auto": predict(engine, items, mode, cfg, drop_persona=drop_persona, progress=bar.update)}
    return write_results(out_dir, runs, "choice" if choice else engine.protocol, about,
                         modes=engine.modes is not None)


def write_results(out_dir: str | Path, runs: dict[str, list[Prediction]], protocol: str, about: dict,
                  modes: bool | None = None) -> dict:
    """predictions.jsonl, report.md, then metrics.json: written last, its presence means complete.
    ``modes``: whether the predictions carry modes (default: the protocol says, `compute_metrics`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = {**compute_metrics(runs, protocol=protocol, modes=modes), **about}
    lines = [json.dumps({**p.to_dict(), "run": run}) for run, preds in runs.items() for p in preds]
    write_text_atomic(out / "predictions.jsonl", "\n".join(lines) + "\n")
    write_text_atomic(out / "report.md", model_report(metrics))
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics
