"""``personadual serve`` and ``personadual chat``: Typer command functions, wired up in `personadual.cli`.

Heavy modules (torch, transformers, fastapi, uvicorn) are imported inside the functions, so the CLI
starts fast and ``--help`` works without them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..cli_args import TEMPLATE_KWARGS_HELP, parse_template_kwargs


def open_engine(model: Path, backend: str = "hf", device: Optional[str] = None, dtype: Optional[str] = None,
                trust_remote_code: bool = False, chat_template_kwargs: Optional[dict] = None):
    """`personadual.engine.load_engine`, with its errors as command-line errors. A model without mode markers
    (a base or instruct model straight from `model get`) is served as a plain chat model: no mode, no p(mode)."""
    from ..engine import load_engine

    try:
        return load_engine(model, backend, device, dtype, trust_remote_code, chat_template_kwargs, protocol="auto")
    except FileNotFoundError as e:
        raise typer.BadParameter(str(e), param_hint="--model") from None
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None




def context_length(engine) -> Optional[int]:
    """Longest prompt + completion the model takes (HF config or vLLM), None when unknown."""
    cfg = getattr(getattr(engine, "model", None), "config", None)
    if cfg is not None and getattr(cfg, "max_position_embeddings", None):
        return int(cfg.max_position_embeddings)
    llm = getattr(engine, "llm", None)
    try:
        return int(llm.llm_engine.model_config.max_model_len)
    except AttributeError:
        return None


def serve_command(
    model: Path = typer.Option(..., help="model directory (safetensors)"),
    host: str = typer.Option("127.0.0.1", help="address to bind; the default is loopback only"),
    port: int = typer.Option(8000, help="port"),
    api_key: Optional[str] = typer.Option(None, envvar="PERSONADUAL_API_KEY", show_default=False,
                                          help="require 'Authorization: Bearer KEY' on /v1/* (env PERSONADUAL_API_KEY)"),
    served_model_name: Optional[str] = typer.Option(None, help="model id clients use (default: the directory name)"),
    backend: str = typer.Option("hf", help="hf | vllm (vllm needs personadual[vllm] and a GPU)"),
    device: Optional[str] = typer.Option(None, help="hf backend: cpu, cuda, cuda:1 ... (default: cuda if available)"),
    dtype: Optional[str] = typer.Option(None, help="e.g. bfloat16 (default: the checkpoint's)"),
    max_batch_size: int = typer.Option(32, help="most requests generated together"),
    batch_wait_ms: float = typer.Option(5.0, help="how long a request waits for others to batch with"),
    max_tokens_cap: int = typer.Option(512, help="refuse requests asking for more max_tokens"),
    max_request_bytes: int = typer.Option(1_000_000, help="refuse larger request bodies (413)"),
    max_queue: int = typer.Option(1024, help="refuse requests (503) beyond this many queued"),
    trust_remote_code: bool = typer.Option(False, help="run the checkpoint's own Python code (only for models you trust)"),
    chat_template_kwargs: Optional[str] = typer.Option(None, help=TEMPLATE_KWARGS_HELP),
    threads: Optional[int] = typer.Option(None, help="CPU threads for torch (default: torch's choice)"),
    log_level: str = typer.Option("info", help="uvicorn log level"),
):
    """Serve a model behind an OpenAI-compatible API (/v1/chat/completions, /v1/models, /health)."""
    import uvicorn

    from .app import create_app
    from .config import ServeConfig

    try:
        cfg = ServeConfig(model_name=served_model_name or Path(model).resolve().name, host=host, port=port,
                          api_key=api_key or None, max_batch_size=max_batch_size, batch_wait_ms=batch_wait_ms,
                          max_tokens_cap=max_tokens_cap, default_max_tokens=min(256, max_tokens_cap),
                          max_request_bytes=max_request_bytes, max_queue=max_queue)
    except ValueError as e:
        raise typer.BadParameter(str(e))
    if not cfg.loopback and cfg.api_key is None:
        typer.secho(f"warning: serving on {host} without an API key: anyone who can reach this address can use "
                    "the model (set --api-key or PERSONADUAL_API_KEY)", fg="yellow", err=True)
    if threads:
        import torch

        torch.set_num_threads(threads)
    engine = open_engine(model, backend, device, dtype, trust_remote_code, parse_template_kwargs(chat_template_kwargs))
    cfg.max_context_tokens = context_length(engine)
    typer.echo(f"serving {cfg.model_name!r} on http://{host}:{port}/v1 (auth {'on' if cfg.api_key else 'off'})", err=True)
    uvicorn.run(create_app(engine, cfg), host=host, port=port, log_level=log_level, access_log=False,
                timeout_graceful_shutdown=5)


def chat_command(
    model: Path = typer.Option(..., help="model directory (safetensors)"),
    persona: Optional[str] = typer.Option(None, help="persona to start with (change it with /persona)"),
    mode: str = typer.Option("auto", help="auto, or a mode to force (change it with /mode)"),
    temperature: float = typer.Option(0.0, help="0 = greedy"),
    max_tokens: int = typer.Option(256, help="most tokens per answer"),
    show_reasoning: bool = typer.Option(True, help="print the reasoning above the answer"),
    backend: str = typer.Option("hf", help="hf | vllm"),
    trust_remote_code: bool = typer.Option(False, help="run the checkpoint's own Python code"),
    chat_template_kwargs: Optional[str] = typer.Option(None, help=TEMPLATE_KWARGS_HELP),
):
    """Chat with a model in the terminal; each answer shows the chosen mode and p(mode).

    Commands: /persona TEXT (no text: clear it), /mode auto|general|personalized, /quit.
    Each question is answered on its own (PersonaDual models are trained single-turn).
    """
    from ..engine import GenerationConfig
    from ..modes import AUTO
    from .prompting import build_prompt
    from .schemas import Message

    engine = open_engine(model, backend, trust_remote_code=trust_remote_code,
                         chat_template_kwargs=parse_template_kwargs(chat_template_kwargs))
    names = [AUTO, *engine.mode_names]
    if mode not in names:
        raise typer.BadParameter(f"unknown mode {mode!r}; expected one of {', '.join(names)}", param_hint="--mode")
    gen_cfg = GenerationConfig(max_new_tokens=max_tokens, temperature=temperature)
    typer.echo(f"chatting with {model} -- /persona TEXT, /mode {'|'.join(names)}, /quit")
    while True:
        try:
            line = input(f"[{mode}{' | persona' if persona else ''}] > ").strip()
        except (EOFError, KeyboardInterrupt):
            typer.echo("")
            break
        if not line:
            continue
        if line in ("/quit", "/exit"):
            break
        if line.startswith("/persona"):
            persona = line[len("/persona"):].strip() or None
            typer.echo(f"persona: {persona or '(none)'}")
        elif line.startswith("/mode"):
            new = line[len("/mode"):].strip()
            if new in names:
                mode = new
                typer.echo(f"mode: {mode}")
            else:
                typer.secho(f"unknown mode {new!r}; expected one of {', '.join(names)}", fg="red")
        elif line.startswith("/"):
            typer.secho(f"unknown command {line.split()[0]!r}: /persona TEXT, /mode NAME, /quit", fg="red")
        else:
            prompt = build_prompt(engine.tokenizer, [Message(role="user", content=line)], persona,
                                  engine.chat_template_kwargs)
            g = engine.generate([prompt], mode, gen_cfg)[0]
            p = " ".join(f"{k}={v:.2f}" for k, v in g.p_mode.items())
            typer.secho(f"[{g.mode or 'no marker'}{' (forced)' if g.forced else ''}] p(mode): {p}", fg="cyan")
            if show_reasoning and g.parsed.reasoning:
                typer.echo(g.parsed.reasoning)
            typer.secho(f"answer: {g.parsed.answer if g.parsed.answer is not None else '(no answer block)'}", bold=True)
