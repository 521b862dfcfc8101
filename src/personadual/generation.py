"""One generation engine for eval, RL-side checks and serving.

Batched, KV-cached generation on a Hugging Face model (CPU or GPU), or on vLLM when installed:

- ``p(mode | prompt)`` for every prompt: the next-token distribution at the first completion
  position, renormalised over the registered markers (one prefill forward pass). It says how much
  the model thinks the persona matters here: our "persona relevance" score. ``marker_mass`` is the
  un-renormalised total, p(any marker | prompt): near 1 for a healthy model (see `choose_modes`);
- ``mode="auto"``: the model chooses its marker from p(mode | prompt) (`choose_modes`), then
  continues exactly as if that marker had been forced; a mode name forces it by prefilling the marker;
- greedy (``temperature=0``) or sampled decoding, stopping at the end of the answer block.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from . import modes as modes_lib
from .modes import AUTO, ModeSet, Parsed


@dataclass
class GenerationConfig:
    max_new_tokens: int = 96
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    batch_size: int = 64
    stop: tuple[str, ...] = (modes_lib.ANSWER_CLOSE,)
    seed: int | None = None

    def __post_init__(self):
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be >= 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError("temperature must be >= 0 and top_p in (0, 1]")


@dataclass
class Generation:
    prompt: str
    text: str  # the completion, marker included (forced or generated)
    forced: bool
    p_mode: dict[str, float]  # p(mode | prompt), over the registered markers
    parsed: Parsed
    num_tokens: int = 0  # generated tokens: an auto response's marker counts, a forced one's does not
    marker_mass: float | None = None  # p(any marker | prompt) before renormalising; None where not computed

    @property
    def mode(self) -> str | None:
        return self.parsed.mode


@dataclass
class Engine:
    """Wraps a model + tokenizer. Build with `Engine.load(path)` or from objects already in memory."""

    model: object
    tokenizer: object
    modes: ModeSet = field(default_factory=lambda: modes_lib.DEFAULT_MODES)

    def __post_init__(self):
        self.marker_ids = modes_lib.marker_token_ids(self.tokenizer, self.modes)
        if self.tokenizer.padding_side != "left":
            self.tokenizer.padding_side = "left"  # decoder-only batches pad on the left

    @classmethod
    def load(cls, path: str, device: str | None = None, dtype: str | None = None, modes: ModeSet | None = None,
             backend: str = "hf", trust_remote_code: bool = False):
        """Load a saved model directory (safetensors only). ``backend="vllm"`` needs personadual[vllm]."""
        if backend == "vllm":
            from .vllm_backend import VLLMEngine

            return VLLMEngine(path, modes or modes_lib.DEFAULT_MODES, dtype=dtype)
        if backend != "hf":
            raise ValueError(f"backend: expected 'hf' or 'vllm', got {backend!r}")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=getattr(torch, dtype) if dtype else "auto", use_safetensors=True,
            trust_remote_code=trust_remote_code,
        ).to(device).eval()
        return cls(model, tok, modes or modes_lib.DEFAULT_MODES)

    @property
    def device(self):
        return next(self.model.parameters()).device

    def _encode(self, texts: Sequence[str]):
        enc = self.tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=False)
        return enc.input_ids.to(self.device), enc.attention_mask.to(self.device)

    @torch.no_grad()
    def mode_stats(self, prompts: Sequence[str], batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """p(mode | prompt) (N, n_modes), the softmax of the marker logits at the first completion
        position, and the marker mass (N,): the full softmax's total on the markers."""
        probs, mass = [], []
        for i in range(0, len(prompts), batch_size):
            ids_BT, mask_BT = self._encode(prompts[i : i + batch_size])
            probs_BM, mass_B = marker_distribution(self.model(input_ids=ids_BT, attention_mask=mask_BT).logits[:, -1, :],
                                                   self.marker_ids)
            probs.append(probs_BM.cpu())
            mass.append(mass_B.cpu())
        if not probs:
            return torch.empty(0, len(self.marker_ids)), torch.empty(0)
        return torch.cat(probs), torch.cat(mass)

    def mode_probs(self, prompts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """p(mode | prompt), shape (N, n_modes)."""
        return self.mode_stats(prompts, batch_size)[0]

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], mode: str | Sequence[str] = AUTO,
                 config: GenerationConfig | None = None, p_mode: Sequence[Sequence[float]] | None = None) -> list[Generation]:
        """Generate one completion per prompt. ``mode`` is one mode for all prompts, or one per prompt.

        ``p_mode``: p(mode | prompt) rows already computed for these prompts (it does not depend on a
        forced marker, so an eval's later runs reuse the first one's); None = one prefill pass here,
        which also gives each Generation its ``marker_mass``.
        """
        cfg = config or GenerationConfig()
        modes_per = [mode] * len(prompts) if isinstance(mode, str) else list(mode)
        if len(modes_per) != len(prompts):
            raise ValueError(f"got {len(modes_per)} modes for {len(prompts)} prompts")
        for m in set(modes_per):
            if m != AUTO:
                self.modes.get(m)  # clear KeyError for an unknown mode
        if cfg.seed is not None:
            torch.manual_seed(cfg.seed)
        mass = None
        if p_mode is None:
            p_mode, mass = self.mode_stats(prompts, cfg.batch_size)
        else:
            p_mode = check_mode_rows(p_mode, len(prompts))
        prefixes, chosen = opening(modes_per, p_mode, self.modes, cfg.temperature, self.tokenizer)
        inputs = [p + x for p, x in zip(prompts, prefixes)]
        # Sort by length so each batch pads little; results go back in the caller's order.
        order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))
        texts: list[str] = [""] * len(inputs)
        counts: list[int] = [0] * len(inputs)
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            ids_BT, mask_BT = self._encode([inputs[i] for i in idx])
            out_BT = self.model.generate(
                input_ids=ids_BT, attention_mask=mask_BT, max_new_tokens=cfg.max_new_tokens,
                do_sample=cfg.temperature > 0, temperature=cfg.temperature if cfg.temperature > 0 else None,
                top_p=cfg.top_p if cfg.temperature > 0 else None, top_k=None,
                stop_strings=list(cfg.stop) or None, tokenizer=self.tokenizer,
                pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id,
            )
            new_BT = out_BT[:, ids_BT.shape[1] :]
            for row, i in enumerate(idx):
                toks = _until_end(new_BT[row].tolist(), {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id})
                counts[i] = len(toks) + chosen[i]
                texts[i] = prefixes[i] + self.tokenizer.decode(toks, skip_special_tokens=False)
        return [
            Generation(prompts[i], texts[i], modes_per[i] != AUTO,
                       dict(zip(self.modes.names, p_mode[i].tolist())), modes_lib.parse(texts[i], self.modes), counts[i],
                       float(mass[i]) if mass is not None else None)
            for i in range(len(prompts))
        ]


def choose_modes(p_mode, names: Sequence[str], temperature: float) -> list[str]:
    """The mode each auto response opens with: the model's own choice, restricted to the markers.

    Greedy (T = 0): argmax_m p(m|x), the marker greedy decoding writes whenever a marker is the top
    token. Sampled: m ~ softmax(z_m / T) over the marker logits z, i.e. p(m|x)^(1/T) renormalised:
    what sampling the first token at temperature T gives, conditioned on it being a marker.

    Why restrict: "every response opens with a mode marker" is the method's contract, and RL can
    break it. A large negative advantage on one marker moves shared parameters (tied embeddings),
    which can lower every marker's logit at once; the probability leaks to reasoning words, and an
    unconstrained first token then skips the marker (on a 3x-data run of the tiny recipe, 5-6% of
    auto responses of `dual` and `dual_paper`: docs/results.md). ``marker_mass`` keeps the leak visible.
    Uses the global torch RNG (seeded by GenerationConfig.seed).
    """
    p = check_mode_rows(p_mode, len(p_mode))
    if p.shape[0] == 0:
        return []
    if temperature == 0:
        idx = p.argmax(dim=1)
    else:
        w = p.clamp(min=1e-300).log().div(temperature)
        idx = torch.multinomial(torch.softmax(w, dim=1), 1).squeeze(1)
    return [names[int(k)] for k in idx]


def opening(requested: Sequence[str], p_mode, modes: ModeSet, temperature: float, tokenizer) -> tuple[list[str], list[int]]:
    """What each row's completion opens with (both engines): the prefilled text (its forced marker, or
    the model's choice for an auto row) and how many of its tokens count as generated (an auto row's
    marker was the model's choice, so it counts; a forced one does not)."""
    opens = list(requested)
    if AUTO in requested:
        chosen = choose_modes(p_mode, modes.names, temperature)
        opens = [c if m == AUTO else m for m, c in zip(requested, chosen)]
    prefixes = [modes_lib.forced_prefix(m, modes) for m in opens]
    n_tokens = {p: len(tokenizer(p, add_special_tokens=False).input_ids) for p in set(prefixes)}  # one per mode
    return prefixes, [n_tokens[p] if m == AUTO else 0 for p, m in zip(prefixes, requested)]


def marker_distribution(logits_BV: torch.Tensor, marker_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """From first-position logits: p(mode | x), the softmax over the marker logits only (B, M), and the
    marker mass p(any marker | x) under the full softmax (B,), as exp(lse(markers) - lse(all))."""
    z_BV = logits_BV.float()
    z_BM = z_BV[:, marker_ids]
    return torch.softmax(z_BM, dim=-1), torch.exp(torch.logsumexp(z_BM, dim=-1) - torch.logsumexp(z_BV, dim=-1))


def check_mode_rows(p_mode, n: int) -> torch.Tensor:
    """Precomputed p(mode | prompt) rows as a tensor, one per prompt (both engines accept them)."""
    rows = torch.as_tensor(p_mode, dtype=torch.float64)  # float32 values (HF) and vLLM's float64 both exact
    if rows.shape[0] != n:
        raise ValueError(f"p_mode has {rows.shape[0]} rows for {n} prompts")
    return rows


def _until_end(ids: list[int], end_ids: set[int]) -> list[int]:
    for k, t in enumerate(ids):
        if t in end_ids:
            return ids[:k]
    return ids
