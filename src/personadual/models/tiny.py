"""Tiny local models: a tokenizer trained on PersonaBench text and a small Qwen3/Llama built from a
config, saved in standard HF format so every stage loads them with ``from_pretrained`` exactly as it
would load Qwen3-8B. Nothing here touches the network.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from .. import modes as modes_lib
from ..training import save_final
from ..data.schema import Item, read_items

PAD, BOS_TURN, EOS_TURN = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
BOS = "<s>"  # only with TinyModelConfig.bos: a Llama-style tokenizer that adds it

# ChatML, as Qwen uses it: the prompt ends with "<|im_start|>assistant\n".
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Llama 3's habit: the template writes the BOS itself, and the tokenizer adds one too when asked.
BOS_CHAT_TEMPLATE = "{{ bos_token }}" + CHAT_TEMPLATE


@dataclass
class TinyModelConfig:
    arch: str = "qwen3"  # qwen3 | llama
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 384
    max_position_embeddings: int = 512
    vocab_size: int = 1024  # target size of the trained BPE vocabulary (specials included)
    bos: bool = False  # Llama-style: a BOS token the tokenizer adds and the template writes
    seed: int = 0

    def __post_init__(self):
        check_shape(self)


def check_shape(cfg) -> None:
    """An architecture we build (Qwen3 or Llama) with heads that divide the width."""
    if cfg.arch not in ("qwen3", "llama"):
        raise ValueError(f"arch: expected 'qwen3' or 'llama', got {cfg.arch!r}")
    if cfg.hidden_size % cfg.num_heads or cfg.num_heads % cfg.num_kv_heads:
        raise ValueError("hidden_size must divide by num_heads, and num_heads by num_kv_heads")


def corpus(items: Iterable[Item]) -> Iterable[str]:
    """Every text a model will see: prompts (with and without persona) and responses of each mode."""
    for it in items:
        yield modes_lib.render_messages(it.question, it.persona)[-1]["content"]
        for mode, tr in it.traces.items():
            yield modes_lib.format_response(mode, tr.reasoning, tr.answer)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024, modes: modes_lib.ModeSet = modes_lib.DEFAULT_MODES,
                    bos: bool = False):
    """Byte-level BPE (lossless round trip, like Qwen's) with the mode markers as single special tokens.
    ``bos``: also a BOS token, added on encoding and written by the chat template (Llama-style)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = [PAD, BOS_TURN, EOS_TURN] + ([BOS] if bos else [])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Markers are added after training so they never take part in merges.
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS_TURN, unk_token=None,
        chat_template=BOS_CHAT_TEMPLATE if bos else CHAT_TEMPLATE, model_max_length=1024,
        **({"bos_token": BOS, "add_bos_token": True} if bos else {}),
    )
    fast.padding_side = "left"  # decoder-only generation pads on the left
    modes_lib.add_marker_tokens(fast, modes)
    _check_contiguous(fast)
    return fast


def _check_contiguous(tokenizer) -> None:
    ids = sorted(tokenizer.get_vocab().values())
    if ids != list(range(len(ids))):
        raise ValueError("tokenizer ids are not contiguous 0..N-1: the embedding would get out-of-range ids")


def build_model(tokenizer, cfg: TinyModelConfig):
    """A randomly initialised causal LM sized to the tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(cfg.seed)
    common = dict(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
        head_dim=cfg.hidden_size // cfg.num_heads, max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    config_cls, model_cls = (Qwen3Config, Qwen3ForCausalLM) if cfg.arch == "qwen3" else (LlamaConfig, LlamaForCausalLM)
    model = model_cls(config_cls(**common))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def init_tiny(data_dir: str | Path, out_dir: str | Path, cfg: TinyModelConfig | None = None) -> dict:
    """Train the tokenizer on every split of a PersonaBench directory, build the model, save both."""
    cfg = cfg or TinyModelConfig()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    items = [it for split in ("train", "val", "test") if (data_dir / f"{split}.jsonl").exists()
             for it in read_items(data_dir / f"{split}.jsonl")]
    if not items:
        raise FileNotFoundError(f"{data_dir}: no train/val/test .jsonl files (run `personadual data build`)")
    tokenizer = train_tokenizer(corpus(items), cfg.vocab_size, bos=cfg.bos)
    model = build_model(tokenizer, cfg)
    save_final(model, tokenizer, out_dir, {"tiny_config.json": json.dumps(asdict(cfg), indent=2) + "\n"})
    n_params = sum(p.numel() for p in model.parameters())
    return {"out": str(out_dir), "params": n_params, "vocab": len(tokenizer), "arch": cfg.arch,
            "markers": dict(zip(modes_lib.DEFAULT_MODES.names, modes_lib.marker_token_ids(tokenizer)))}
