"""Log-probs of given continuations under a causal LM, without generating: how the choice protocol reads an answer.

Two questions, each answered with forward passes only:

- `Scorer.continuation_logprobs`: log p(c | x) = sum_t log p(c_t | x, c_<t) for (context x, continuation c)
  pairs, one row per pair (lm-eval-harness's log-likelihood requests);
- `Scorer.next_token_logprobs`: log p(v | x) at the position right after x, for a few candidate
  tokens v per context (the option letters), one row per context.

Where the work goes. A forward pass computes hidden states at every position, but a log-prob is needed
only where a continuation token is predicted: the positions len(x) - 1 ... len(x) + len(c) - 2, since
the hidden state at position p predicts the token at p + 1. The LM head costs 2 H V flops per position;
at SmolLM2-135M's H = 576, V = 49,152 that is about a fifth of the model's flops per token, and the
full logits are B x T x V floats. So the decoder's hidden states are gathered at the scored positions
and the head applied to those alone. Rows are right-padded: under a causal mask a real token never
attends to the padding after it, so positions need no correction (left padding would shift them).
Rows are sorted by length so a batch pads little.

The gathered head must give the model's own logits. Most causal LMs are decoder -> LM head, but some
transform the logits after the head (soft-capping, a logit scale). `head_reproduces_logits` checks it
once on a short row; where it fails the scorer asks the model itself, keeping logits from the first
scored position on (``logits_to_keep``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

Progress = Callable[[int], object] | None  # called with the number of rows each batch finished


def right_padded(rows: Sequence[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and attention mask, (B, T) each."""
    width = max(len(r) for r in rows)
    ids_BT = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask_BT = torch.zeros((len(rows), width), dtype=torch.long)
    for b, r in enumerate(rows):
        ids_BT[b, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask_BT[b, : len(r)] = 1
    return ids_BT.to(device), mask_BT.to(device)


def head_reproduces_logits(model) -> bool:
    """Do the decoder's hidden states through the output embeddings give the model's own logits?"""
    try:
        decoder, head = model.get_decoder(), model.get_output_embeddings()
        if decoder is None or decoder is model or head is None:
            return False
        device = next(model.parameters()).device
        ids_BT = torch.arange(min(8, model.config.vocab_size), device=device)[None]
        with torch.inference_mode():
            want_BTV = model(input_ids=ids_BT, use_cache=False).logits.float()
            got_BTV = head(decoder(input_ids=ids_BT, use_cache=False).last_hidden_state).float()
    except (AttributeError, TypeError, ValueError, KeyError, NotImplementedError):
        return False  # a model without that split: the scorer asks the model itself
    scale = float(want_BTV.abs().max()) or 1.0
    return got_BTV.shape == want_BTV.shape and bool(torch.allclose(got_BTV, want_BTV, rtol=1e-3, atol=1e-3 * scale))


def _order(rows: Sequence[list[int]]) -> list[int]:
    """Longest first: a batch holds rows of about one length, and an out-of-memory batch comes first."""
    return sorted(range(len(rows)), key=lambda i: -len(rows[i]))


PAD_SLACK = 0.25  # a batch may pad up to a quarter of its real tokens before it is closed early


def length_batches(order: Sequence[int], lengths: Sequence[int], rows: int, slack: float = PAD_SLACK,
                   weight: Sequence[int] | None = None) -> list[list[int]]:
    """Consecutive groups of ``order`` (indices sorted by length, either way), each of at most ``rows``
    rows (``weight[i]`` rows for index i, default 1), closed early once padding every row to the group's
    longest would exceed ``slack`` of its real tokens.

    Why: a fixed count of length-sorted rows still puts very different lengths together where lengths
    are spread out (MMLU's history passages run to 1,000 tokens beside 100-token questions), and a
    batch pads every row to its longest: one 1,000-token row made 63 others of ~150 cost 1,000 each.
    """
    weight = weight or [1] * len(lengths)
    out, cur, n, width, real = [], [], 0, 0, 0
    for i in order:
        w, L = weight[i], lengths[i]
        wide = max(width, L)
        if cur and (n + w > rows or (n + w) * wide > (1 + slack) * (real + w * L)):
            out.append(cur)
            cur, n, width, real = [], 0, 0, 0
            wide = L
        cur.append(i)
        n, width, real = n + w, wide, real + w * L
    return out + ([cur] if cur else [])


@dataclass
class Scorer:
    """Log-probs of given tokens under ``model`` (see the module docstring)."""

    model: object
    pad_id: int
    gathered: bool | None = None  # None: decided by `head_reproduces_logits`
    device: object = field(init=False)

    def __post_init__(self):
        self.device = next(self.model.parameters()).device
        if self.gathered is None:
            self.gathered = head_reproduces_logits(self.model)

    def logits_at(self, ids_BT: torch.Tensor, mask_BT: torch.Tensor, row_K: torch.Tensor, pos_K: torch.Tensor):
        """Logits (K, V) at the K (row, position) pairs of one batch, the LM head applied there only."""
        if self.gathered:
            h_BTH = self.model.get_decoder()(input_ids=ids_BT, attention_mask=mask_BT, use_cache=False).last_hidden_state
            return self.model.get_output_embeddings()(h_BTH[row_K, pos_K])
        first = int(pos_K.min())
        logits_BSV = self.model(input_ids=ids_BT, attention_mask=mask_BT, use_cache=False,
                                logits_to_keep=ids_BT.shape[1] - first).logits
        return logits_BSV[row_K, pos_K - first]

    @torch.inference_mode()
    def continuation_logprobs(self, contexts: Sequence[list[int]], continuations: Sequence[list[int]],
                              batch_size: int = 32, progress: Progress = None) -> list[float]:
        """sum_t log p(c_t | x, c_<t) for each (context x, continuation c) pair, in the given order."""
        if len(contexts) != len(continuations):
            raise ValueError(f"got {len(contexts)} contexts for {len(continuations)} continuations")
        if any(not x for x in contexts) or any(not c for c in continuations):
            raise ValueError("every context and every continuation needs at least one token")
        rows = [list(x) + list(c) for x, c in zip(contexts, continuations)]
        out = [0.0] * len(rows)
        for idx in length_batches(_order(rows), [len(r) for r in rows], batch_size):
            ids_BT, mask_BT = right_padded([rows[i] for i in idx], self.pad_id, self.device)
            row_K, pos_K, tok_K = [], [], []
            for b, i in enumerate(idx):  # token t of c sits at len(x) + t, predicted from the position before
                n_x, n_c = len(contexts[i]), len(continuations[i])
                row_K += [b] * n_c
                pos_K += range(n_x - 1, n_x + n_c - 1)
                tok_K += continuations[i]
            row_K = torch.tensor(row_K, device=self.device)
            logits_KV = self.logits_at(ids_BT, mask_BT, row_K, torch.tensor(pos_K, device=self.device))
            tok_K = torch.tensor(tok_K, device=self.device)
            logp_K = logits_KV.float().log_softmax(-1).gather(1, tok_K[:, None]).squeeze(1)
            sums_B = torch.zeros(len(idx), dtype=torch.float64, device=self.device).index_add_(0, row_K, logp_K.double())
            for b, i in enumerate(idx):
                out[i] = float(sums_B[b])
            if progress:
                progress(len(idx))
        return out

    @torch.inference_mode()
    def next_token_logprobs(self, contexts: Sequence[list[int]], candidates: Sequence[Sequence[int]],
                            batch_size: int = 32, progress: Progress = None) -> list[list[float]]:
        """log p(v | x) under the full softmax, for each candidate token v of each context x: one row per context."""
        if len(contexts) != len(candidates):
            raise ValueError(f"got {len(contexts)} contexts for {len(candidates)} candidate lists")
        if any(not x for x in contexts):
            raise ValueError("every context needs at least one token")
        out = [[] for _ in contexts]
        for idx in length_batches(_order(contexts), [len(x) for x in contexts], batch_size):
            ids_BT, mask_BT = right_padded([list(contexts[i]) for i in idx], self.pad_id, self.device)
            last_B = torch.tensor([len(contexts[i]) - 1 for i in idx], device=self.device)
            logits_BV = self.logits_at(ids_BT, mask_BT, torch.arange(len(idx), device=self.device), last_B)
            logp_BV = logits_BV.float().log_softmax(-1).cpu()
            for b, i in enumerate(idx):
                out[i] = logp_BV[b, list(candidates[i])].tolist()
            if progress:
                progress(len(idx))
        return out
