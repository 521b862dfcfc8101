r"""Cloze-form rollouts whose answer is one of the item's options, drawn from the model's own option distribution.

In the cloze form the options are not in the prompt. A freely sampled reply then names an option only when
it happens to spell one, and the one option text it can copy is the one a persona quotes: with free
generation the reward pays for copying the persona, in every mode, whatever the question. So a rollout
here is the reply the choice protocol reads, ``[marker]\nAnswer: {option text}<eos>``, with the option
drawn from

    q(o | x, m) = softmax_o( s(o) / T ),   s(o) = log p(" " + text_o | x, marker line, "Answer:") / len(text_o)

the per-character log-likelihood that `eval --protocol choice --choice-form cloze` scores (acc_norm), at
the rollout temperature T. The reward is then the accuracy the evaluation reports, and the policy gradient
on the option's tokens raises (or lowers) exactly the score that evaluation compares. ``T`` -> 0 is the
evaluation's argmax; ``T`` = 1 samples in proportion to the per-character likelihoods.

The functions are pure apart from one batched forward pass: they take ids and return ids.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..modes import CLOZE_ANSWER
from ..tokenization import completion_ids


def option_replies(tokenizer, marker: str, texts: Sequence[str]) -> list[list[int]]:
    """Per option, the reply's ids after the marker token: ``\nAnswer: {text}`` tokenized as SFT tokenized the
    whole reply (marker text included, then the marker's own id dropped), so rollout and training agree."""
    out, marker_ids = [], completion_ids(tokenizer, marker)
    for t in texts:
        ids = completion_ids(tokenizer, f"{marker}\n{CLOZE_ANSWER} {t}")
        if ids[: len(marker_ids)] != marker_ids:
            raise ValueError(f"the marker {marker!r} does not tokenize apart from the reply that follows it")
        out.append(ids[len(marker_ids):])
    return out


def answer_offset(tokenizer, marker: str, replies: Sequence[list[int]]) -> int:
    """How many ids of each reply (after its marker) come before the option's text: ``\nAnswer:``. Every reply
    must open with exactly those ids, or its score would read part of ``Answer:`` as the option's text."""
    lead = completion_ids(tokenizer, f"{marker}\n{CLOZE_ANSWER}")[len(completion_ids(tokenizer, marker)):]
    if any(list(r[: len(lead)]) != lead for r in replies):
        raise ValueError(f"an option's text merges with {CLOZE_ANSWER!r} when tokenized; it cannot be scored apart")
    return len(lead)


@torch.no_grad()
def option_scores(model, prefixes: Sequence[list[int]], replies: Sequence[list[int]], text_starts: Sequence[int],
                  chars: Sequence[int], pad_id: int, batch_size: int = 64) -> torch.Tensor:
    """s = sum of log p(reply[start:] | prefix + reply[:start]) / chars, one score per (prefix, reply) row.

    ``prefixes`` end with the forced marker; ``text_starts`` is where the option's text begins in its reply."""
    device = next(model.parameters()).device
    scores = []
    for lo in range(0, len(prefixes), batch_size):
        seqs = [list(p) + list(r) for p, r in zip(prefixes[lo: lo + batch_size], replies[lo: lo + batch_size])]
        width = max(map(len, seqs))
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):  # left padding, as generation pads prompts
            ids[i, width - len(s):], mask[i, width - len(s):] = torch.tensor(s), 1
        logp = torch.log_softmax(model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float(), -1)
        for i, (p, r) in enumerate(zip(prefixes[lo: lo + batch_size], replies[lo: lo + batch_size])):
            start = width - len(r) + text_starts[lo + i]  # first scored token's position
            tokens = ids[i, start:].to(device)
            scores.append(logp[i, start - 1: width - 1].gather(-1, tokens[:, None]).sum().item())
    return torch.tensor(scores, dtype=torch.float64) / torch.tensor(list(chars), dtype=torch.float64)


def draw_options(scores_per_row: Sequence[torch.Tensor], temperature: float) -> list[int]:
    """One option index per row from softmax(scores / T); the argmax at T = 0."""
    if temperature <= 0:
        return [int(s.argmax()) for s in scores_per_row]
    return [int(torch.multinomial(torch.softmax(s / temperature, -1), 1)) for s in scores_per_row]
