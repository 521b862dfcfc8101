"""The engine on a Hugging Face model (CPU or GPU): batched, KV-cached generation.

Memory: the p(mode | prompt) pass asks the model for the last position's logits only
(``logits_to_keep=1``). Without it a causal LM returns logits at every position, B x T x V: at
V = 151,936 (Qwen3), 128 prompts of 512 tokens that is about 20 GB in bf16 for one row per prompt.
``generate`` keeps one position per step by itself. Scoring given continuations (the choice protocol)
applies the LM head at the scored positions only (`logprobs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from .. import modes as modes_lib
from ..modes import AUTO, ModeSet, marker_distribution
from ..tokenization import end_of_sequence_ids, resolve_chat_template_kwargs
from .logprobs import Progress, Scorer, length_batches
from .prefix import Branch, branch_logprobs
from .types import EngineBase, Generation, GenerationConfig, check_mode_rows, opening, pick_protocol, until_end


@dataclass
class Engine(EngineBase):
    """Wraps a model + tokenizer. Build with `Engine.load(path)` or from objects already in memory."""

    model: object
    tokenizer: object
    modes: ModeSet | None = field(default_factory=lambda: modes_lib.DEFAULT_MODES)  # None: plain protocol
    chat_template_kwargs: dict = field(default_factory=dict)  # how prompts are rendered (saved with the model)
    _scorer: Scorer | None = field(default=None, init=False, repr=False)
    _stops: dict = field(default_factory=dict, init=False, repr=False)  # stop strings -> their criteria, built once

    def __post_init__(self):
        self.marker_ids = [] if self.modes is None else modes_lib.marker_token_ids(self.tokenizer, self.modes)
        self.end_ids = end_of_sequence_ids(self.model, self.tokenizer)
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.end_ids[0]

    @classmethod
    def load(cls, path: str, device: str | None = None, dtype: str | None = None, modes: ModeSet | None = None,
             trust_remote_code: bool = False, chat_template_kwargs: dict | None = None, protocol: str = "modes"):
        """Load a saved model directory (safetensors only), with the prompt settings saved beside it
        unless ``chat_template_kwargs`` says otherwise. ``protocol``: modes | plain | auto (`pick_protocol`).
        Another backend: `personadual.engine.load_engine`."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=getattr(torch, dtype) if dtype else "auto", use_safetensors=True,
            trust_remote_code=trust_remote_code,
        ).to(device).eval()
        modes = pick_protocol(tok, modes or modes_lib.DEFAULT_MODES, protocol)
        return cls(model, tok, modes, resolve_chat_template_kwargs(chat_template_kwargs, path))

    @property
    def device(self):
        return next(self.model.parameters()).device

    def _batch(self, rows: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded ids and attention mask (decoder-only batches pad on the left)."""
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            if r:
                ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
                mask[i, width - len(r):] = 1
        return ids.to(self.device), mask.to(self.device)

    @torch.no_grad()
    def mode_stats(self, prompts: Sequence[str], batch_size: int = 64,
                   ids: Sequence[list[int]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """p(mode | prompt) (N, n_modes), the softmax of the marker logits at the first completion
        position, and the marker mass (N,): the full softmax's total on the markers. ``ids``: the
        prompts' ids when the caller has them already."""
        rows = self.prompt_ids(prompts) if ids is None else ids
        probs, mass = [], []
        for i in range(0, len(rows), batch_size):
            ids_BT, mask_BT = self._batch(rows[i : i + batch_size])
            logits_BV = self.model(input_ids=ids_BT, attention_mask=mask_BT, logits_to_keep=1).logits[:, -1, :]
            probs_BM, mass_B = marker_distribution(logits_BV, self.marker_ids)
            probs.append(probs_BM.cpu())
            mass.append(mass_B.cpu())
        if not probs:
            return torch.empty(0, len(self.marker_ids)), torch.empty(0)
        return torch.cat(probs), torch.cat(mass)

    def mode_probs(self, prompts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """p(mode | prompt), shape (N, n_modes)."""
        return self.mode_stats(prompts, batch_size)[0]

    @property
    def scorer(self) -> Scorer:
        """Log-probs of given tokens (`logprobs.Scorer`), made on first use: it checks the model's head once."""
        if self._scorer is None:
            self._scorer = Scorer(self.model, self.pad_id)
        return self._scorer

    def score_continuations(self, contexts_ids: Sequence[list[int]], continuations_ids: Sequence[list[int]],
                            batch_size: int = 32, progress: Progress = None) -> list[float]:
        """log p(continuation | context), summed over the continuation's tokens, per pair."""
        return self.scorer.continuation_logprobs(contexts_ids, continuations_ids, batch_size, progress)

    def next_token_logprobs(self, contexts_ids: Sequence[list[int]], candidate_ids: Sequence[Sequence[int]],
                            batch_size: int = 32, progress: Progress = None) -> list[list[float]]:
        """log p(token | context) of each candidate token right after its context: one pass per context."""
        return self.scorer.next_token_logprobs(contexts_ids, candidate_ids, batch_size, progress)

    def branch_logprobs(self, prefixes: Sequence[list[int]], branches: Sequence[Branch], batch_size: int = 32,
                        progress: Progress = None) -> list[list[list[float]]]:
        """Log-probs read after several continuations (branches) of each prefix, each prefix run once
        (`prefix.branch_logprobs`: the choice protocol's options and forced modes)."""
        return branch_logprobs(self.scorer, prefixes, branches, batch_size, progress)

    def stopping(self, stop: tuple[str, ...]):
        """The stop-string criteria for ``stop``, built once per engine. transformers builds them from the
        whole vocabulary (49,152 entries for SmolLM2: its dict, sorted, hashed) whenever ``generate`` is given
        ``stop_strings``, i.e. once per batch; the criteria themselves keep no state between calls."""
        if not stop:
            return None
        if stop not in self._stops:
            from transformers import StoppingCriteriaList, StopStringCriteria

            self._stops[stop] = StoppingCriteriaList([StopStringCriteria(self.tokenizer, list(stop))])
        return self._stops[stop]

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], mode: str | Sequence[str] = AUTO,
                 config: GenerationConfig | None = None, p_mode: Sequence[Sequence[float]] | None = None,
                 progress: Progress = None) -> list[Generation]:
        """Generate one completion per prompt. ``mode`` is one mode for all prompts, or one per prompt.

        ``p_mode``: p(mode | prompt) rows already computed for these prompts (it does not depend on a
        forced marker, so an eval's later runs reuse the first one's); None = one prefill pass here,
        which also gives each Generation its ``marker_mass``. ``progress`` is told each batch's size.
        """
        cfg = config or GenerationConfig()
        modes_per = self.requested_modes(prompts, mode)
        if cfg.seed is not None:
            torch.manual_seed(cfg.seed)
        rows, mass = self.prompt_ids(prompts), None
        if self.modes is None:
            p_mode = self.no_mode_rows(len(prompts))
        elif p_mode is None:
            p_mode, mass = self.mode_stats(prompts, cfg.batch_size, ids=rows)
        else:
            p_mode = check_mode_rows(p_mode, len(prompts))
        opened = opening(modes_per, p_mode, self.modes, cfg.temperature, self.tokenizer)
        inputs = [p + x for p, x in zip(rows, opened.ids)]
        # Sorted by length and closed early where lengths spread, so each batch pads little (the prompt's
        # prefill is most of the work at eval's answer lengths); results go back in the caller's order.
        order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))
        texts: list[str] = [""] * len(inputs)
        counts: list[int] = [0] * len(inputs)
        end = set(self.end_ids) | {self.pad_id}
        for idx in length_batches(order, [len(x) for x in inputs], cfg.batch_size):
            ids_BT, mask_BT = self._batch([inputs[i] for i in idx])
            out_BT = self.model.generate(
                input_ids=ids_BT, attention_mask=mask_BT, max_new_tokens=cfg.max_new_tokens,
                do_sample=cfg.temperature > 0, temperature=cfg.temperature if cfg.temperature > 0 else None,
                top_p=cfg.top_p if cfg.temperature > 0 else None, top_k=None,
                stopping_criteria=self.stopping(tuple(cfg.stop)),
                pad_token_id=self.pad_id, eos_token_id=self.end_ids,
            )
            new_BT = out_BT[:, ids_BT.shape[1] :]
            for row, i in enumerate(idx):
                toks = until_end(new_BT[row].tolist(), end)
                counts[i] = len(toks) + opened.counted[i]
                texts[i] = opened.texts[i] + self.tokenizer.decode(toks, skip_special_tokens=False)
            if progress:
                progress(len(idx))
        return [
            Generation(prompts[i], texts[i], modes_per[i] != AUTO,
                       dict(zip(self.mode_names, p_mode[i].tolist())), self.parse(texts[i]), counts[i],
                       float(mass[i]) if mass is not None else None)
            for i in range(len(prompts))
        ]
