"""How text becomes token ids, the same way in training and in inference, for any tokenizer.

A chat model is trained on ``prompt ids + completion ids`` and later asked to continue ``prompt ids``.
The two must be the same ids, token for token, or the model is served a context it never saw. Three
things make them drift apart on real tokenizers, and each has one answer here:

- **BOS.** Llama-style tokenizers add a BOS token when asked to add special tokens, and their chat
  templates often write it too. TRL tokenizes text prompts with special tokens added, engines
  usually without, so one side gets two BOS tokens or none. `prompt_ids` is the one rule: a prompt
  starts with the tokenizer's special prefix exactly once (none for Qwen, one BOS for Llama).
- **Template settings.** Qwen3's template renders a different generation prompt with
  ``enable_thinking=False``. The settings a model was trained with are saved beside it
  (`save_settings`, ``personadual.json``) and every stage that renders a prompt reads them back
  (`load_settings`), unless told otherwise.
- **New tokens.** The mode markers are new special tokens. They must be added without dropping the
  tokenizer's own special tokens (transformers 5 replaces them by default), and their embedding rows
  must start somewhere sensible: padded tables (Qwen3 has 151,936 rows for 151,669 tokens) put them
  on rows that were never trained, and two markers on one row are one token (`init_marker_rows`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

SETTINGS_FILE = "personadual.json"


# ---------------------------------------------------------------------------------------------
# Prompt and completion ids


def special_prefix(tokenizer) -> list[int]:
    """The ids the tokenizer puts before any text when it adds special tokens ([] for Qwen, [BOS] for Llama)."""
    probe = "a"
    plain = tokenizer(probe, add_special_tokens=False).input_ids
    full = tokenizer(probe, add_special_tokens=True).input_ids
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return list(full[:start])
    return []


def prompt_ids(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Rendered prompts -> token ids, each starting with the tokenizer's special prefix exactly once.

    The text is tokenized without special tokens (a template that writes its BOS keeps exactly that
    one), and the prefix is put in front where the text did not already start with it (a template
    that leaves BOS to the tokenizer gets it). Training (SFT examples, RL prompts) and inference (both
    engines, the server) all call this, so they see the same ids.
    """
    prefix = special_prefix(tokenizer)
    out = []
    for ids in tokenizer(list(texts), add_special_tokens=False).input_ids:
        ids = list(ids)
        out.append(ids if not prefix or ids[: len(prefix)] == prefix else prefix + ids)
    return out


def completion_ids(tokenizer, text: str) -> list[int]:
    """A completion's ids: plain text after the prompt, never a special prefix."""
    return list(tokenizer(text, add_special_tokens=False).input_ids)


def example_ids(tokenizer, examples: Sequence[dict]) -> list[dict]:
    """Prompt/completion text pairs -> SFT rows of ``input_ids`` and ``completion_mask``.

    The prompt's ids are exactly what an engine is given at inference (`prompt_ids`), and the
    completion's follow them: the loss starts at the completion's first token (the mode marker), or
    at the one after it for an example marked ``marker_in_loss: False`` (a marker given as context).
    Tokenizing here, not in TRL, is what makes that exact: TRL would add special tokens to a text
    prompt and find the completion's start by comparing two tokenizations.
    """
    prompts = prompt_ids(tokenizer, [ex["prompt"] for ex in examples])
    rows = []
    for ex, p in zip(examples, prompts):
        c = completion_ids(tokenizer, ex["completion"])
        mask = [1] * len(c)
        if not ex.get("marker_in_loss", True):  # the completion's first token (its marker) is context
            mask[0] = 0
        rows.append({"input_ids": p + c, "completion_mask": [0] * len(p) + mask})
    return rows


def end_of_sequence_ids(model, tokenizer) -> list[int]:
    """Every id that ends a response: the model's own list (Qwen3 instruct models stop on <|im_end|>
    and <|endoftext|>) plus the tokenizer's EOS, the tokenizer's first, as TRL orders them."""
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    eos = tokenizer.eos_token_id
    return list(dict.fromkeys(([eos] if eos is not None else []) + ids))


# ---------------------------------------------------------------------------------------------
# New special tokens and their embedding rows


def add_special_tokens(tokenizer, tokens: Sequence[str]) -> int:
    """Register ``tokens`` as special tokens, keeping the tokenizer's own (transformers 5's default
    replaces its extra special tokens, e.g. Qwen's <|im_start|>). Returns how many were new."""
    return tokenizer.add_special_tokens({"additional_special_tokens": list(tokens)}, replace_extra_special_tokens=False)


MARKER_INITS = ("words", "mean")


def check_marker_init(how: str) -> None:
    """A clear error for a ``marker_init`` that is not one of MARKER_INITS (the config's field and the call)."""
    if how not in MARKER_INITS:
        raise ValueError(f"marker_init: expected one of {', '.join(MARKER_INITS)}, got {how!r}")


def init_marker_rows(model, tokenizer, marker_words: dict[int, str], n_trained: int, how: str = "words") -> None:
    """Start the embedding rows of the mode markers on trained rows, and apart from each other.

    ``marker_words`` maps each marker's token id to words that name its mode (" general"); the trained
    rows are the table's first ``n_trained`` rows, the markers' own excluded. Input and output tables
    both (an untied head has its own); a tied table is set once.

    - ``words``: a marker starts at the mean row of its words' tokens.
    - ``mean``: every marker starts at the mean trained row.

    Why words by default: the markers' only job is to be told apart, and two markers on one row are one
    token. With equal input rows (and, tied, equal head rows) every hidden state after either marker
    is the same, so the forced modes write the same reasoning, and the gradient can part the rows only
    from a distance of zero: a saddle the model leaves late, at a step that moves with the seed and
    the rounding, or never within a short SFT. Word rows are distinct from the first step and carry
    what the mode means. Both are trained rows (a logit near an ordinary token's), never an untrained
    padding row or a random one.
    """
    import torch

    check_marker_init(how)
    trained = torch.ones(n_trained, dtype=torch.bool)
    trained[[i for i in marker_words if i < n_trained]] = False

    def word_rows(words: str):
        ids = [t for t in tokenizer(words, add_special_tokens=False).input_ids if t < n_trained and trained[t]]
        if not ids:
            raise ValueError(f"marker_init=words: {words!r} has no trained token in this tokenizer; use marker_init=mean")
        return torch.tensor(ids, dtype=torch.long)

    sources = {i: trained if how == "mean" else word_rows(words) for i, words in marker_words.items()}
    tables = [model.get_input_embeddings().weight]
    head = model.get_output_embeddings()
    if head is not None and head.weight.data_ptr() != tables[0].data_ptr():
        tables.append(head.weight)
    with torch.no_grad():
        for w in tables:
            rows = {i: w[:n_trained][src.to(w.device)].mean(dim=0) for i, src in sources.items()}
            for i, row in rows.items():  # all read before any is written: a marker may not start from another
                w[i] = row.to(w.dtype)


# ---------------------------------------------------------------------------------------------
# Settings saved with a model


def load_settings(model_dir) -> dict:
    """The prompt settings saved with a model ({} when none were saved, e.g. a hub model)."""
    path = Path(model_dir) / SETTINGS_FILE if model_dir else None
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    kwargs = data.get("chat_template_kwargs", {})
    if not isinstance(kwargs, dict):
        raise ValueError(f"{path}: chat_template_kwargs must be a mapping, got {type(kwargs).__name__}")
    return data


def settings_text(chat_template_kwargs: dict) -> str:
    """The ``personadual.json`` saved beside a model."""
    return json.dumps({"chat_template_kwargs": dict(chat_template_kwargs)}, indent=2, sort_keys=True) + "\n"


def resolve_chat_template_kwargs(explicit: dict | None, model_dir) -> dict:
    """What a stage renders prompts with: its own setting when given (``{}`` = none), else what the
    model it starts from was trained with."""
    if isinstance(explicit, str):  # TRL's GRPOConfig field also takes a JSON string
        explicit = json.loads(explicit)
    if explicit is not None:
        if not isinstance(explicit, dict):
            raise ValueError(f"chat_template_kwargs must be a mapping, got {type(explicit).__name__}")
        return dict(explicit)
    return dict(load_settings(model_dir).get("chat_template_kwargs", {}))
