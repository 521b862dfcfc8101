"""``personadual eval`` and ``personadual report``: Typer command functions, wired up in `personadual.cli`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..serve.commands import TEMPLATE_KWARGS_HELP, parse_template_kwargs


def eval_command(model: Path = typer.Option(..., help="model directory"),
                 data: Path = typer.Option(..., help="items JSONL, or a PersonaBench directory (its test.jsonl)"),
                 out: Optional[Path] = typer.Option(None, help="output directory (default: MODEL/../eval)"),
                 mode: str = typer.Option("auto", help="auto, or a mode to force for every item"),
                 forced: bool = typer.Option(True, help="also run every mode forced, for HAcc and calibration"),
                 drop_persona: bool = typer.Option(False, help="remove personas: the interference-free upper bound"),
                 limit: Optional[int] = typer.Option(None, help="first N items only"),
                 batch_size: int = typer.Option(128), max_new_tokens: int = typer.Option(96),
                 threads: Optional[int] = typer.Option(None, help="torch CPU threads"),
                 name: Optional[str] = typer.Option(None, help="name shown in reports"),
                 backend: str = typer.Option("hf", help="hf | vllm (vllm needs personadual[vllm] and a GPU)"),
                 chat_template_kwargs: Optional[str] = typer.Option(None, help=TEMPLATE_KWARGS_HELP)):
    """Evaluate a model: predictions.jsonl, metrics.json, report.md."""
    from .run import evaluate

    if threads:
        import torch

        torch.set_num_threads(threads)
    out = out or model.parent / "eval"
    m = evaluate(str(model), str(data), str(out), mode=mode, forced=forced, drop_persona=drop_persona, limit=limit,
                 batch_size=batch_size, max_new_tokens=max_new_tokens, name=name, backend=backend,
                 chat_template_kwargs=parse_template_kwargs(chat_template_kwargs))
    typer.echo(json.dumps({"out": str(out), "acc": {c: v["mean"] for c, v in m["acc"].items()},
                           "personalized_acc": (m["personalized_acc"] or {}).get("mean"), "hacc": m.get("hacc"),
                           "interference": m["interference"], "helpful_gain": m["helpful_gain"]}, indent=2))


def report_command(runs: list[Path] = typer.Argument(..., help="eval directories (or metrics.json files)"),
                   out: Path = typer.Option(Path("report"), help="where comparison.md and the PNG plots go")):
    """Compare evaluated runs: one Markdown table and PNG plots."""
    from .report import compare_runs

    typer.echo(compare_runs([str(r) for r in runs], out))
