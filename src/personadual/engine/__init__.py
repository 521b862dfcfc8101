"""One generation engine for eval, RL-side checks and serving, on Hugging Face or vLLM.

- `types`: the settings and result types both engines share, and how a response opens (auto
  mode's choice among the markers, forced markers);
- `hf`: the engine on a Hugging Face model (`Engine`);
- `vllm_engine`: the engine on vLLM (`VLLMEngine`, personadual[vllm]);
- `logprobs`: log-probs of given continuations and next tokens, nothing generated (the choice protocol);
- `prefix`: a prompt run once, its short continuations branched from its KV cache (on `logprobs`);
- `load_engine`: the one place a backend is chosen.
"""

from __future__ import annotations

from pathlib import Path

from .hf import Engine
from .types import PROTOCOLS, Generation, GenerationConfig, check_mode_rows, choose_modes, opening, pick_protocol

BACKENDS = ("hf", "vllm")


def load_engine(model, backend: str = "hf", device: str | None = None, dtype: str | None = None,
                trust_remote_code: bool = False, chat_template_kwargs: dict | None = None, modes=None,
                protocol: str = "modes"):
    """A saved model directory -> an engine on ``backend`` (hf | vllm), with the prompt settings saved
    beside the model unless ``chat_template_kwargs`` says otherwise. ``protocol``: modes (the model
    speaks the mode protocol), plain (any model: no markers, answers read from free text) or auto
    (modes when the tokenizer has the markers)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if not Path(model).is_dir():
        raise FileNotFoundError(f"{model} is not a model directory")
    if backend == "vllm":
        from .. import modes as modes_lib
        from .vllm_engine import VLLMEngine

        # safetensors only: vLLM's "auto" format would fall back to pickled .bin files
        return VLLMEngine(str(model), modes or modes_lib.DEFAULT_MODES, dtype=dtype, chat_template_kwargs=chat_template_kwargs,
                          protocol=protocol, load_format="safetensors", trust_remote_code=trust_remote_code)
    return Engine.load(str(model), device=device, dtype=dtype, modes=modes, trust_remote_code=trust_remote_code,
                       chat_template_kwargs=chat_template_kwargs, protocol=protocol)


__all__ = ["BACKENDS", "PROTOCOLS", "Engine", "Generation", "GenerationConfig", "check_mode_rows", "choose_modes",
           "load_engine", "opening", "pick_protocol"]
