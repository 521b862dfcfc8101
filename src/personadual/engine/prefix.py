"""Several continuations of one prompt, scored with the prompt run once: a shared-prefix KV cache.

Why. The choice protocol asks several questions of every prompt. The text form scores each option's
text after ``Answer:``: four rows per item that each repeat a ~150-token prompt to score ~7 tokens. A
mode model is asked p(mode | x) at the prompt's end and the option letters after each forced marker:
three passes over the same prompt. Scored row by row, the prompt is nearly all the work. Here each
prompt (the *prefix*) runs once, with a cache; each *branch* (the tokens that follow it: an option's
text, a marker line and the open answer block) then runs as one short row against its prefix's
cached keys and values. The work per item falls from k prompts to one prompt plus k short rows.

How. Prefixes are right-padded and run once (explicit positions, so each real token has the position
it has alone). The cache rows are then selected per branch row (`Cache.reorder_cache`, the batch
selection beam search uses; a prefix with k branches appears k times), and the branches, right-padded,
run with the attention mask "the prefix's real tokens, then the branch's own" and positions that go
on from the prefix's length. A read at position 0 of a branch is the next-token distribution at the
prefix's end, taken from the prefix pass. The LM head is applied only where something is read
(`Scorer.logits_at`'s rule), or, for a model whose logits are not head(hidden) (`Scorer.gathered`
false), the model's own logits from the first read position on. `tests/test_choice.py` checks the
result against one full forward per row.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Sequence

import torch

from .logprobs import Progress, length_batches, right_padded


@dataclass(frozen=True)
class Branch:
    """What follows one prefix, and what to read there.

    ``reads``: (position, candidate token ids) pairs; the log-probs of the candidates as the next token
    after ``prefix + ids[:position]`` (position 0: right after the prefix)."""

    prefix: int
    ids: tuple[int, ...] = ()
    reads: tuple[tuple[int, tuple[int, ...]], ...] = field(default_factory=tuple)

    @property
    def fed(self) -> int:
        """How many of ``ids`` must run: a read at position p needs the hidden state of ids[p - 1]."""
        return max((p for p, _ in self.reads), default=0)


def _cache_kwarg(module) -> str:
    """The keyword a model's forward takes its cache by (transformers renamed ``past_key_values`` to ``cache``)."""
    params = inspect.signature(module.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _cache_of(output):
    cache = getattr(output, "cache", None)
    return cache if cache is not None else getattr(output, "past_key_values", None)


def _check(prefixes: Sequence[list[int]], branches: Sequence[Branch]) -> None:
    if any(not p for p in prefixes):
        raise ValueError("every prefix needs at least one token")
    for b in branches:
        if not 0 <= b.prefix < len(prefixes):
            raise ValueError(f"branch prefix index {b.prefix} is not one of the {len(prefixes)} prefixes")
        if any(not 0 <= p <= len(b.ids) for p, _ in b.reads):
            raise ValueError(f"a read position is outside its branch's {len(b.ids)} tokens (0 to {len(b.ids)} allowed)")


def _batches(prefixes: Sequence[list[int]], by_prefix: list[list[int]], rows: int) -> list[list[int]]:
    """Prefix indices, longest first (a batch of about one length; the largest memory first), in groups of at
    most ``rows`` branch rows (so at most ``rows`` prefixes), closed early where lengths spread (`length_batches`)."""
    order = sorted((i for i in range(len(prefixes)) if by_prefix[i]), key=lambda i: -len(prefixes[i]))
    lengths = [len(p) for p in prefixes]
    return length_batches(order, lengths, rows, weight=[len(b) for b in by_prefix])


def _reads(logp_KV: torch.Tensor, keys: list[tuple[int, int]], branches: Sequence[Branch], out: list) -> None:
    """Fill ``out[branch][read]`` with the candidates' log-probs from the rows of ``logp_KV``."""
    logp_KV = logp_KV.cpu()
    for row, (b, r) in enumerate(keys):
        out[b][r] = logp_KV[row, list(branches[b].reads[r][1])].tolist()


@torch.inference_mode()
def branch_logprobs(scorer, prefixes: Sequence[list[int]], branches: Sequence[Branch], batch_size: int = 32,
                    progress: Progress = None) -> list[list[list[float]]]:
    """branch -> read -> log p(candidate) under the full softmax, every prefix run once (module docstring).
    ``batch_size`` bounds the branch rows (and the prefixes) of one pass; ``progress`` is told how many
    branches each batch finished."""
    _check(prefixes, branches)
    model, device = scorer.model, scorer.device
    by_prefix: list[list[int]] = [[] for _ in prefixes]
    for j, b in enumerate(branches):
        by_prefix[b.prefix].append(j)
    out: list[list[list[float]]] = [[[] for _ in b.reads] for b in branches]
    decoder = model.get_decoder() if scorer.gathered else model
    key = _cache_kwarg(decoder)
    for group in _batches(prefixes, by_prefix, batch_size):
        ids_PT, mask_PT = right_padded([list(prefixes[i]) for i in group], scorer.pad_id, device)
        lens_P = mask_PT.sum(1)
        width = ids_PT.shape[1]
        pos_PT = torch.arange(width, device=device).expand(len(group), -1)
        fed = [j for i in group for j in by_prefix[i] if branches[j].fed]
        kw = {"input_ids": ids_PT, "attention_mask": mask_PT, "position_ids": pos_PT, "use_cache": bool(fed)}
        # position 0 reads: the next token at each prefix's end
        at_end = [(j, r) for i in group for j in by_prefix[i] for r, (p, _) in enumerate(branches[j].reads) if p == 0]
        last_P = lens_P - 1
        if scorer.gathered:
            res = decoder(**kw)
            logits_PV = model.get_output_embeddings()(res.last_hidden_state[torch.arange(len(group), device=device), last_P])
        else:
            first = int(last_P.min())
            res = model(**kw, logits_to_keep=width - first)
            logits_PV = res.logits[torch.arange(len(group), device=device), last_P - first]
        row_of = {i: k for k, i in enumerate(group)}
        if at_end:
            logp_PV = logits_PV.float().log_softmax(-1)
            _reads(logp_PV[[row_of[branches[j].prefix] for j, _ in at_end]], at_end, branches, out)
        if fed:
            cache = _cache_of(res)
            if cache is None:
                raise ValueError(f"{type(model).__name__} returned no cache: shared-prefix scoring needs one")
            src = torch.tensor([row_of[branches[j].prefix] for j in fed], device=device)
            cache.reorder_cache(src)  # one cache row per branch row
            b_ids, b_mask = right_padded([list(branches[j].ids[: branches[j].fed]) for j in fed], scorer.pad_id, device)
            pos = lens_P[src][:, None] + torch.arange(b_ids.shape[1], device=device)[None]
            mask = torch.cat([mask_PT[src], b_mask], dim=1)
            later = [(j, r, row, p - 1) for row, j in enumerate(fed) for r, (p, _) in enumerate(branches[j].reads) if p > 0]
            rows_K = torch.tensor([row for _, _, row, _ in later], device=device)
            pos_K = torch.tensor([p for _, _, _, p in later], device=device)
            kw = {"input_ids": b_ids, "attention_mask": mask, "position_ids": pos, "use_cache": True, key: cache}
            if scorer.gathered:
                h_BWH = decoder(**kw).last_hidden_state
                logits_KV = model.get_output_embeddings()(h_BWH[rows_K, pos_K])
            else:
                logits_KV = model(**kw).logits[rows_K, pos_K]
            _reads(logits_KV.float().log_softmax(-1), [(j, r) for j, r, _, _ in later], branches, out)
        if progress:
            progress(sum(len(by_prefix[i]) for i in group))
    return out
