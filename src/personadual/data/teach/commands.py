"""``data teach`` and ``data personas``: the Typer command functions, wired up in `personadual.cli`."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import typer


def teach_command(
    endpoint: str = typer.Option(..., help="teacher base URL, OpenAI-compatible (e.g. http://127.0.0.1:8000/v1)"),
    model: str = typer.Option(..., help="teacher model id"),
    input: Path = typer.Option(..., "--in", help="items JSONL (PersonaBench or `data load` output)"),
    out: Path = typer.Option(..., help="output JSONL of kept items; rerun with the same OUT to resume"),
    api_key: Optional[str] = typer.Option(None, envvar="PERSONADUAL_TEACHER_API_KEY", show_default=False,
                                          help="teacher API key (env PERSONADUAL_TEACHER_API_KEY, else OPENAI_API_KEY)"),
    judge_endpoint: Optional[str] = typer.Option(None, help="optional judge base URL: grades each verified trace"),
    judge_model: Optional[str] = typer.Option(None, help="judge model id"),
    judge_api_key: Optional[str] = typer.Option(None, envvar="PERSONADUAL_JUDGE_API_KEY", show_default=False,
                                                help="judge API key (default: the teacher's)"),
    concurrency: int = typer.Option(8, help="most requests in flight"),
    retries: int = typer.Option(4, help="extra attempts per request (the openai client's exponential backoff, "
                                "or the delay a Retry-After header asks)"),
    timeout: float = typer.Option(120.0, help="seconds per request"),
    temperature: float = typer.Option(0.0, help="teacher sampling temperature"),
    max_tokens: int = typer.Option(1024, help="teacher max_tokens per trace"),
    extra_body: Optional[str] = typer.Option(None, help="JSON object merged into every teacher request "
                                             '(e.g. \'{"top_p": 0.9}\')'),
    chat_template_kwargs: Optional[str] = typer.Option(None, help="JSON object sent as the request's chat_template_kwargs "
                                                       "(vLLM and `personadual serve` render the teacher's prompt with it; "
                                                       "e.g. '{\"enable_thinking\": false}' for a Qwen3 teacher)"),
    personadual_server: bool = typer.Option(False, help="the teacher is `personadual serve`: send question, persona and "
                                            "mode natively instead of the prompt files"),
    limit: Optional[int] = typer.Option(None, help="only the first N items"),
    progress: bool = typer.Option(True, help="show a progress bar"),
):
    """Ask a teacher LLM for general and personalized traces, keep the verified ones, label the preferred mode."""
    from .client import TeacherFatal
    from .teach import TeachConfig, env_api_key, teach

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        body = _request_body(extra_body, chat_template_kwargs)
        cfg = TeachConfig(endpoint, model, input, out, api_key=env_api_key(api_key, "OPENAI_API_KEY"),
                          judge_endpoint=judge_endpoint, judge_model=judge_model, judge_api_key=judge_api_key,
                          concurrency=concurrency, retries=retries, timeout=timeout,
                          temperature=temperature, max_tokens=max_tokens, extra_body=body, limit=limit,
                          personadual_server=personadual_server,
                          progress=progress)
    except ValueError as e:
        raise typer.BadParameter(str(e))
    try:
        summary = teach(cfg)
    except TeacherFatal as e:
        typer.secho(f"error: the teacher refused every request: {e}", fg="red", err=True)
        raise typer.Exit(2)
    except (ValueError, FileNotFoundError) as e:  # bad input rows, duplicate ids, a corrupt output file, no input
        typer.secho(f"error: {e}", fg="red", err=True)
        raise typer.Exit(2)
    typer.echo(json.dumps(summary, indent=2))
    if summary["failed"]:
        typer.secho(f"{summary['failed']} item(s) failed after retries: rerun the same command to retry them",
                    fg="yellow", err=True)
        raise typer.Exit(1)


def _request_body(extra_body: str | None, chat_template_kwargs: str | None) -> dict | None:
    """The JSON fields merged into every request (``--extra-body`` and ``--chat-template-kwargs``)."""
    body = json.loads(extra_body) if extra_body else None
    if body is not None and not isinstance(body, dict):
        raise ValueError("--extra-body must be a JSON object")
    if chat_template_kwargs is not None:
        kwargs = json.loads(chat_template_kwargs)
        if not isinstance(kwargs, dict):
            raise ValueError("--chat-template-kwargs must be a JSON object")
        body = {**(body or {}), "chat_template_kwargs": kwargs}
    return body


def personas_command(
    endpoint: str = typer.Option(..., help="teacher base URL, OpenAI-compatible (e.g. http://127.0.0.1:8000/v1)"),
    model: str = typer.Option(..., help="teacher model id"),
    input: Path = typer.Option(..., "--in", help="items JSONL (`data load` output: objective items without a persona)"),
    out: Path = typer.Option(..., help="output JSONL of persona items; rerun with the same OUT to resume"),
    api_key: Optional[str] = typer.Option(None, envvar="PERSONADUAL_TEACHER_API_KEY", show_default=False,
                                          help="teacher API key (env PERSONADUAL_TEACHER_API_KEY, else OPENAI_API_KEY)"),
    concurrency: int = typer.Option(8, help="most requests in flight"),
    retries: int = typer.Option(4, help="extra attempts per request"),
    timeout: float = typer.Option(120.0, help="seconds per request"),
    temperature: float = typer.Option(0.7, help="sampling temperature for writing personas (verification uses 0)"),
    max_tokens: int = typer.Option(512, help="max_tokens per request"),
    conditions: str = typer.Option("misaligned,helpful", help="comma-separated persona conditions to write"),
    verify: bool = typer.Option(True, help="ask the teacher which option each persona points to; keep only the target"),
    seed: int = typer.Option(0, help="draws each item's wrong option and kind of persona"),
    limit: Optional[int] = typer.Option(None, help="only the first N input items"),
    progress: bool = typer.Option(True, help="show a progress bar"),
    extra_body: Optional[str] = typer.Option(None, help="JSON object merged into every request "
                                             '(e.g. \'{"top_p": 0.9}\')'),
    chat_template_kwargs: Optional[str] = typer.Option(None, help="JSON object sent as the request's chat_template_kwargs "
                                                       "(e.g. '{\"enable_thinking\": false}' for a Qwen3 teacher)"),
):
    """Ask a teacher LLM to write misaligned and helpful personas for objective items, check them, keep the good ones."""
    from ..schema import DataError
    from .client import TeacherFatal
    from .personas import PersonasConfig, write_personas
    from .teach import env_api_key

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = PersonasConfig(endpoint, model, input, out, api_key=env_api_key(api_key, "OPENAI_API_KEY"),
                             concurrency=concurrency, retries=retries, timeout=timeout, temperature=temperature,
                             max_tokens=max_tokens, conditions=tuple(c.strip() for c in conditions.split(",") if c.strip()),
                             verify=verify, seed=seed, limit=limit, progress=progress,
                             extra_body=_request_body(extra_body, chat_template_kwargs))
    except ValueError as e:
        raise typer.BadParameter(str(e))
    try:
        summary = write_personas(cfg)
    except TeacherFatal as e:
        typer.secho(f"error: the teacher refused every request: {e}", fg="red", err=True)
        raise typer.Exit(2)
    except (DataError, ValueError, FileNotFoundError) as e:  # bad input rows, duplicate ids, a corrupt output file
        typer.secho(f"error: {e}", fg="red", err=True)
        raise typer.Exit(2)
    typer.echo(json.dumps(summary, indent=2))
    if summary["failed"]:
        typer.secho(f"{summary['failed']} persona(s) failed after retries: rerun the same command to retry them",
                    fg="yellow", err=True)
        raise typer.Exit(1)
