"""``personadual eval`` and ``personadual report``: Typer command functions, wired up in `personadual.cli`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..cli_args import TEMPLATE_KWARGS_HELP, fail as _fail, parse_template_kwargs



def eval_command(model: str = typer.Option(..., help="model directory; with --endpoint, the model id the endpoint serves"),
                 data: Path = typer.Option(..., help="items JSONL, or a folder with test.jsonl (PersonaBench, data conditions)"),
                 out: Optional[Path] = typer.Option(None, help="output directory (default: MODEL/../eval; required "
                                                    "with --endpoint)"),
                 mode: str = typer.Option("auto", help="auto, or a mode to force for every item"),
                 forced: bool = typer.Option(True, help="also run every mode forced, for HAcc and calibration"),
                 drop_persona: bool = typer.Option(False, help="remove personas: the interference-free upper bound"),
                 protocol: str = typer.Option("auto", help="modes (the model opens each answer with a mode marker), "
                                              "plain (any model: answers read from free text), choice (in-process: "
                                              "the options scored by log-likelihood, no generation), or auto: modes "
                                              "when the model has the markers / the endpoint is a PersonaDual server"),
                 choice_form: Optional[str] = typer.Option(None, help="--protocol choice: text (the chat prompt with "
                                                           "the options listed, each option's text after 'Answer:', "
                                                           "per character; default), letter (the option letters "
                                                           "after 'The answer is ('), cloze (the question alone, no "
                                                           "options listed, no chat template, each option's text "
                                                           "after 'Answer:') or cloze-chat (the same as the chat's "
                                                           "user turn); a mode model is scored on the letters of its "
                                                           "answer block, or on the texts in the cloze forms"),
                 general_context: str = typer.Option("persona", help="--protocol choice, a mode model: persona (its "
                                                     "general mode reads the prompt as given) or set-aside (the "
                                                     "general mode reads the prompt without its persona; the "
                                                     "mode choice still reads it)"),
                 endpoint: Optional[str] = typer.Option(None, help="evaluate through this OpenAI-compatible base URL "
                                                        "(e.g. http://127.0.0.1:8000/v1) instead of in-process"),
                 api_key_env: str = typer.Option("OPENAI_API_KEY", help="environment variable holding the endpoint's "
                                                 "API key (unset: no key, as a local server needs)"),
                 concurrency: int = typer.Option(8, help="endpoint requests in flight"),
                 retries: int = typer.Option(4, help="extra attempts per endpoint request"),
                 timeout: float = typer.Option(120.0, help="seconds per endpoint request"),
                 limit: Optional[int] = typer.Option(None, help="first N items only"),
                 batch_size: int = typer.Option(128), max_new_tokens: int = typer.Option(96),
                 threads: Optional[int] = typer.Option(None, help="torch CPU threads"),
                 name: Optional[str] = typer.Option(None, help="name shown in reports"),
                 backend: str = typer.Option("hf", help="hf | vllm (vllm needs personadual[vllm] and a GPU)"),
                 chat_template_kwargs: Optional[str] = typer.Option(None, help=TEMPLATE_KWARGS_HELP),
                 extra_body: Optional[str] = typer.Option(None, help="endpoint: JSON object merged into every request "
                                                          "(e.g. '{\"max_completion_tokens\": 512}')"),
                 progress: bool = typer.Option(True, help="progress bar on stderr")):
    """Evaluate a model, in-process or through an endpoint: predictions.jsonl, metrics.json, report.md."""
    kwargs = parse_template_kwargs(chat_template_kwargs)
    if protocol == "choice" and endpoint:
        _fail("--protocol choice scores each option's log-likelihood in-process; an endpoint's replies carry no "
              "option log-likelihoods: drop --endpoint (evaluate the model directory), or use --protocol plain")
    if choice_form is not None and protocol != "choice":
        _fail(f"--choice-form applies to --protocol choice only (got --protocol {protocol})")
    try:
        if endpoint:
            body = parse_template_kwargs(extra_body, "--extra-body")
            m, out = _through_endpoint(endpoint, model, data, out, api_key_env, concurrency, retries, timeout, mode,
                                       forced, drop_persona, protocol, kwargs, limit, max_new_tokens, name, progress,
                                       body)
        else:
            from .run import evaluate

            if threads:
                import torch

                torch.set_num_threads(threads)
            out = out or Path(model).parent / "eval"
            m = evaluate(model, str(data), str(out), mode=mode, forced=forced, drop_persona=drop_persona, limit=limit,
                         batch_size=batch_size, max_new_tokens=max_new_tokens, name=name, backend=backend,
                         chat_template_kwargs=kwargs, protocol=protocol, choice_form=choice_form or "text",
                         progress=progress, general_context=general_context)
    except ValueError as e:  # bad rows (file:line), a protocol the model cannot run, bad settings
        _fail(str(e))
    summary = {"out": str(out), "protocol": m["protocol"], "acc": {c: v["mean"] for c, v in m["acc"].items()},
               "personalized_acc": (m["personalized_acc"] or {}).get("mean"), "hacc": m.get("hacc"),
               "interference": m["interference"], "helpful_gain": m["helpful_gain"],
               "pull": {c: v["mean"] for c, v in (m.get("pull") or {}).items()},
               "answer_letters": (m.get("letters") or {}).get("answers")}
    for key in ("unreadable", "choice"):
        if key in m:
            summary[key] = m[key]
    typer.echo(json.dumps(summary, indent=2))


def _through_endpoint(endpoint, model, data, out, api_key_env, concurrency, retries, timeout, mode, forced,
                      drop_persona, protocol, kwargs, limit, max_new_tokens, name, progress, extra_body):
    import os

    from .endpoint import EndpointConfig, EndpointError, evaluate_endpoint

    if out is None:
        _fail("--out is required with --endpoint (where predictions, metrics and the resumable log go)")
    key = os.environ.get(api_key_env) or None
    if api_key_env != "OPENAI_API_KEY" and key is None:
        _fail(f"--api-key-env {api_key_env}: that environment variable is not set")
    cfg = EndpointConfig(endpoint, model, key, concurrency, retries, timeout, max_new_tokens, mode, forced, drop_persona,
                         protocol, kwargs, limit, progress, extra_body)
    try:
        return evaluate_endpoint(cfg, str(data), str(out), name=name), out
    except EndpointError as e:
        _fail(str(e))



def report_command(runs: list[Path] = typer.Argument(..., help="eval directories (or metrics.json files)"),
                   out: Path = typer.Option(Path("report"), help="where comparison.md and the PNG plots go")):
    """Compare evaluated runs: one Markdown table and PNG plots."""
    from .report import compare_runs

    typer.echo(compare_runs([str(r) for r in runs], out))
