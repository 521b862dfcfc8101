"""vLLM behind the `Engine` interface (``Engine.load(path, backend="vllm")``); needs personadual[vllm].

p(mode | prompt) comes from one extra decoding step restricted to the marker tokens
(``allowed_token_ids``), whose log-probs renormalise over the markers exactly as the HF path does.
An auto response opens with the marker `choose_modes` picks from it, as on the HF path; the marker
mass is not computed here (``Generation.marker_mass`` is None).
"""

from __future__ import annotations

import math
from typing import Sequence

from . import modes as modes_lib
from .generation import Generation, GenerationConfig, check_mode_rows, opening
from .modes import AUTO, ModeSet


def _require_vllm():
    try:
        import vllm  # noqa: F401
    except ImportError as e:
        raise ImportError(
            "the vLLM backend needs vLLM: pip install 'personadual[vllm]' (GPU only); "
            "or use backend='hf'"
        ) from e
    return vllm


class VLLMEngine:
    def __init__(self, path: str, modes: ModeSet = modes_lib.DEFAULT_MODES, dtype: str | None = None, **llm_kwargs):
        vllm = _require_vllm()
        self.llm = vllm.LLM(model=path, dtype=dtype or "auto", **llm_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.modes = modes
        self.marker_ids = modes_lib.marker_token_ids(self.tokenizer, modes)

    def mode_probs(self, prompts: Sequence[str], batch_size: int = 0) -> list[list[float]]:
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=1, temperature=1.0, logprobs=len(self.marker_ids),
                                allowed_token_ids=self.marker_ids)
        out = []
        for res in self.llm.generate(list(prompts), params, use_tqdm=False):
            lp = res.outputs[0].logprobs[0]
            raw = [math.exp(lp[t].logprob) if t in lp else 0.0 for t in self.marker_ids]
            z = sum(raw) or 1.0
            out.append([r / z for r in raw])
        return out

    def generate(self, prompts: Sequence[str], mode: str | Sequence[str] = AUTO,
                 config: GenerationConfig | None = None, p_mode: Sequence[Sequence[float]] | None = None) -> list[Generation]:
        from vllm import SamplingParams

        cfg = config or GenerationConfig()
        modes_per = [mode] * len(prompts) if isinstance(mode, str) else list(mode)
        if len(modes_per) != len(prompts):
            raise ValueError(f"got {len(modes_per)} modes for {len(prompts)} prompts")
        params = SamplingParams(max_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                                stop=list(cfg.stop), include_stop_str_in_output=True, skip_special_tokens=False,
                                seed=cfg.seed)
        p_mode = self.mode_probs(prompts) if p_mode is None else check_mode_rows(p_mode, len(prompts)).tolist()
        if cfg.seed is not None:
            import torch

            torch.manual_seed(cfg.seed)  # choose_modes samples with torch's RNG
        prefixes, chosen = opening(modes_per, p_mode, self.modes, cfg.temperature, self.tokenizer)
        results = self.llm.generate([p + x for p, x in zip(prompts, prefixes)], params, use_tqdm=False)
        gens = []
        for i, res in enumerate(results):
            text = prefixes[i] + res.outputs[0].text.replace(self.tokenizer.eos_token or "\0", "")
            gens.append(Generation(prompts[i], text, modes_per[i] != AUTO, dict(zip(self.modes.names, p_mode[i])),
                                   modes_lib.parse(text, self.modes), len(res.outputs[0].token_ids) + chosen[i]))
        return gens
