"""A GGUF file -> a normal Hugging Face model directory (safetensors + tokenizer files).

Why convert at all: transformers reads a GGUF (``from_pretrained(folder, gguf_file=name)``, with the
``gguf`` package installed) by dequantising it into an fp32 model, but that model is flagged as
quantised and refuses ``save_pretrained``, while every stage here (sft, rl, eval, serve) takes a
model directory. So the weights are moved into a fresh model built from the same config without
its ``quantization_config``, checked key by key and value by value, and saved with
`training.save_final` (an atomic folder). The tokenizer (vocabulary, merges, special tokens, chat
template, whether to add a BOS) is the one transformers builds from the GGUF's metadata.

The result is as good as the file: a Q4_1 GGUF gives the dequantised Q4_1 weights, not the original
model's. Beside the model, ``personadual_source.json`` records where it came from.
"""

from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
import json
import os
import time
from pathlib import Path

from ..training import save_final

SOURCE_FILE = "personadual_source.json"
GGUF_PACKAGE_HINT = "pip install gguf==0.19.0 (or pip install 'personadual[real]')"


class GGUFImportError(Exception):
    """A GGUF that cannot become a model directory: which file, and why."""


def _load_gguf(path: Path):
    """(model, tokenizer) as transformers reads the file: dequantised fp32, not serialisable."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("gguf") is None:
        raise GGUFImportError(f"{path}: reading a GGUF needs the gguf package: {GGUF_PACKAGE_HINT}")
    folder, name = str(path.parent.resolve()), path.name
    try:
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except Exception as e:  # an unsupported architecture, a missing key, not a GGUF at all: name the file
        raise GGUFImportError(f"{path}: transformers {transformers.__version__} cannot read this GGUF: "
                              f"{type(e).__name__}: {e}") from e
    return model, tok


def serializable_copy(loaded):
    """The same model, built from its config without ``quantization_config``, so it saves.

    Every key must match and every tensor must come across unchanged (a GGUF with its own output
    matrix under a config that says "tied" would otherwise lose one of the two silently)."""
    import torch
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state = loaded.state_dict()
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a shape mismatch
        raise GGUFImportError(f"the GGUF's weights do not fit a fresh {type(model).__name__}: {e}") from e
    if missing or unexpected:
        raise GGUFImportError(f"the GGUF's weights do not match a fresh {type(model).__name__}: "
                              f"missing {sorted(missing)[:8]}, unexpected {sorted(unexpected)[:8]}")
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
        head, table = model.get_output_embeddings().weight, model.get_input_embeddings().weight
        if head.data_ptr() != table.data_ptr():
            raise GGUFImportError("the config ties the LM head to the embeddings, but the copy's are separate tensors")
    copied = model.state_dict()
    changed = [k for k, v in state.items() if not torch.equal(copied[k], v)]
    if changed:
        raise GGUFImportError(f"weights changed on the way into the copy (tied embeddings that were not the same?): "
                              f"{changed[:8]}")
    model.generation_config = copy.deepcopy(loaded.generation_config)
    return model.eval()


def import_gguf(gguf_path: str | os.PathLike, out_dir: str | os.PathLike, *, artifact: str | None = None,
                sha256: str | None = None) -> dict:
    """Convert ``gguf_path`` into a model directory at ``out_dir``; returns a summary.

    ``artifact`` / ``sha256``: where it came from (`personadual model get` passes the table's name and
    the checked hash); without ``sha256`` the file is hashed here."""
    import transformers

    from ..artifacts import sha256_file

    path, start = Path(gguf_path), time.monotonic()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    loaded, tok = _load_gguf(path)
    try:
        model = serializable_copy(loaded)
    except GGUFImportError as e:
        raise GGUFImportError(f"{path}: {e}") from e
    del loaded
    config = model.config
    source = {"artifact": artifact, "gguf": str(path.resolve()), "gguf_sha256": sha256 or sha256_file(path),
              "transformers": transformers.__version__, "gguf_package": importlib.metadata.version("gguf"),
              "architecture": type(model).__name__, "dtype": "float32 (dequantised)"}
    save_final(model, tok, out_dir, {SOURCE_FILE: json.dumps(source, indent=2) + "\n"})
    return {"out": str(out_dir), "architecture": source["architecture"],
            "params": sum(p.numel() for p in model.parameters()), "vocab_size": config.vocab_size,
            "tokenizer_tokens": len(tok), "tied": bool(getattr(config, "tie_word_embeddings", False)),
            "bos": tok.bos_token, "eos": tok.eos_token, "add_bos_token": getattr(tok, "add_bos_token", None),
            "chat_template": bool(tok.chat_template), "gguf_sha256": source["gguf_sha256"],
            "seconds": round(time.monotonic() - start, 1)}


def get_model(name: str, out_dir: str | os.PathLike, cache: str | os.PathLike | None = None) -> Path:
    """A model of the artifact table as an HF directory at ``out_dir``: fetched (`artifacts.fetch`) and
    imported (`import_gguf`) unless the directory is already complete. The studies' way to `model get`."""
    from ..artifacts import fetch
    from ..training import is_complete

    out = Path(out_dir)
    if not is_complete(out):
        fetched = fetch(name, cache)
        import_gguf(fetched.path, out, artifact=name, sha256=fetched.artifact.member_sha256)
    return out
