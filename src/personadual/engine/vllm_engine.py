"""The engine on vLLM (``load_engine(path, backend="vllm")``); needs personadual[vllm] and a GPU.

Prompts are sent as token ids (`personadual.tokenization.prompt_ids`), never as text: vLLM
tokenizes a text prompt with special tokens added, which doubles a BOS that the chat template
already wrote.

p(mode | prompt) is scored, not sampled. ``SamplingParams(logprobs=k)`` returns the top k of the
whole vocabulary before ``allowed_token_ids`` applies, so a marker outside the top k would get
probability 0. Instead each marker is appended to the prompt and its prompt log-prob read back
(``prompt_logprobs=0``): log p(marker | prompt) under the full softmax, exactly what the HF engine
reads from its logits. That gives the marker mass as well. It costs one prefill per marker; such
requests skip vLLM's prefix cache.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .. import modes as modes_lib
from ..modes import AUTO, ModeSet
from ..tokenization import resolve_chat_template_kwargs
from .types import EngineBase, Generation, GenerationConfig, check_mode_rows, opening, pick_protocol


def _require_vllm():
    try:
        import vllm
    except ImportError as e:
        raise ImportError(
            "the vLLM backend needs vLLM: pip install 'personadual[vllm]' (GPU only); "
            "or use backend='hf'"
        ) from e
    return vllm


class VLLMEngine(EngineBase):
    def __init__(self, path: str, modes: ModeSet = modes_lib.DEFAULT_MODES, dtype: str | None = None,
                 chat_template_kwargs: dict | None = None, protocol: str = "modes", **llm_kwargs):
        vllm = _require_vllm()
        self.llm = vllm.LLM(model=path, dtype=dtype or "auto", **llm_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.modes = pick_protocol(self.tokenizer, modes, protocol)
        self.marker_ids = [] if self.modes is None else modes_lib.marker_token_ids(self.tokenizer, self.modes)
        self.chat_template_kwargs = resolve_chat_template_kwargs(chat_template_kwargs, path)

    def mode_stats(self, prompts: Sequence[str], batch_size: int = 0,
                   ids: Sequence[list[int]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """p(mode | prompt) (N, M) and the marker mass (N,), from each marker's prompt log-prob.
        ``ids``: the prompts' ids when the caller has them already."""
        from vllm import SamplingParams

        rows = self.prompt_ids(prompts) if ids is None else ids
        if not rows:
            return torch.empty(0, len(self.marker_ids), dtype=torch.float64), torch.empty(0, dtype=torch.float64)
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)
        requests = [{"prompt_token_ids": r + [m]} for r in rows for m in self.marker_ids]
        results = self.llm.generate(requests, params, use_tqdm=False)
        M = len(self.marker_ids)
        logp_NM = torch.tensor([[_last_prompt_logprob(results[i * M + k], m) for k, m in enumerate(self.marker_ids)]
                                for i in range(len(rows))], dtype=torch.float64)
        return torch.softmax(logp_NM, dim=1), torch.logsumexp(logp_NM, dim=1).exp()

    def mode_probs(self, prompts: Sequence[str], batch_size: int = 0) -> torch.Tensor:
        return self.mode_stats(prompts, batch_size)[0]

    def generate(self, prompts: Sequence[str], mode: str | Sequence[str] = AUTO,
                 config: GenerationConfig | None = None, p_mode: Sequence[Sequence[float]] | None = None,
                 progress=None) -> list[Generation]:
        from vllm import SamplingParams

        cfg = config or GenerationConfig()
        modes_per = self.requested_modes(prompts, mode)
        params = SamplingParams(max_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                                stop=list(cfg.stop), include_stop_str_in_output=True, skip_special_tokens=False,
                                seed=cfg.seed)
        rows, mass = self.prompt_ids(prompts), None
        if self.modes is None:
            p_mode = self.no_mode_rows(len(prompts))
        elif p_mode is None:
            p_mode, mass = self.mode_stats(prompts, ids=rows)
        else:
            p_mode = check_mode_rows(p_mode, len(prompts))
        if cfg.seed is not None:
            torch.manual_seed(cfg.seed)  # choose_modes samples with torch's RNG
        opened = opening(modes_per, p_mode, self.modes, cfg.temperature, self.tokenizer)
        requests = [{"prompt_token_ids": p + x} for p, x in zip(rows, opened.ids)]
        results = self.llm.generate(requests, params, use_tqdm=False)
        gens = []
        for i, res in enumerate(results):
            text = opened.texts[i] + res.outputs[0].text.replace(self.tokenizer.eos_token or "\0", "")
            gens.append(Generation(prompts[i], text, modes_per[i] != AUTO, dict(zip(self.mode_names, p_mode[i].tolist())),
                                   self.parse(text), len(res.outputs[0].token_ids) + opened.counted[i],
                                   float(mass[i]) if mass is not None else None))
        if progress:  # vLLM schedules the whole list at once: one update at the end
            progress(len(prompts))
        return gens

    def score_continuations(self, *args, **kwargs):
        raise ValueError(NO_SCORING)

    def next_token_logprobs(self, *args, **kwargs):
        raise ValueError(NO_SCORING)

    def branch_logprobs(self, *args, **kwargs):
        raise ValueError(NO_SCORING)


NO_SCORING = ("the vLLM engine does not score option log-likelihoods (the choice protocol): "
              "use the HF engine (--backend hf)")


def _last_prompt_logprob(result, token_id: int) -> float:
    """log p(last prompt token | the tokens before it) from a ``prompt_logprobs`` result."""
    entry = result.prompt_logprobs[-1] if result.prompt_logprobs else None
    if not entry or token_id not in entry:
        raise RuntimeError("vLLM returned no prompt log-prob for the appended marker (prompt_logprobs=0 expected)")
    lp = entry[token_id]
    return float(getattr(lp, "logprob", lp))

