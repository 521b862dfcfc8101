"""A stand-in for the ``vllm`` module that behaves as vLLM does where our engine depends on it, run
on a Hugging Face model on CPU (vLLM itself needs a GPU):

- a text prompt is tokenized with special tokens added (vLLM's default); a dict prompt is taken
  as its ``prompt_token_ids``;
- ``SamplingParams(logprobs=k)`` returns the raw top k over the whole vocabulary (plus the sampled
  token), before ``allowed_token_ids`` applies;
- ``prompt_logprobs=k`` returns, per prompt position, the raw log-prob of the actual token (plus the
  top k); the first position has none;
- generation is greedy, ends at an end-of-sequence id and at a stop string (kept in the text).

Install with ``monkeypatch.setitem(sys.modules, "vllm", fake_vllm.module(model, tokenizer))``.
"""

from __future__ import annotations

import types

import torch


class Logprob:
    def __init__(self, logprob: float):
        self.logprob = logprob


class SamplingParams:
    def __init__(self, max_tokens=16, temperature=1.0, top_p=1.0, logprobs=None, prompt_logprobs=None,
                 allowed_token_ids=None, stop=None, include_stop_str_in_output=False, skip_special_tokens=True,
                 seed=None, detokenize=True):
        self.__dict__.update(locals())
        del self.__dict__["self"]


def module(model, tokenizer, calls: list | None = None):
    """A fake ``vllm`` module whose LLM runs ``model``; every request it gets is appended to ``calls``."""
    calls = [] if calls is None else calls
    from personadual.tokenization import end_of_sequence_ids

    end_ids = end_of_sequence_ids(model, tokenizer)

    class LLM:
        def __init__(self, model=None, dtype=None, **kwargs):
            self.kwargs = kwargs

        def get_tokenizer(self):
            return tokenizer

        @torch.no_grad()
        def generate(self, prompts, params, use_tqdm=False):
            results = []
            for p in prompts:
                ids = list(p["prompt_token_ids"]) if isinstance(p, dict) else tokenizer(p).input_ids
                calls.append((ids, params))
                logits_TV = model(input_ids=torch.tensor([ids])).logits[0].float()
                logp_TV = torch.log_softmax(logits_TV, dim=-1)
                prompt_lp = None
                if params.prompt_logprobs is not None:
                    prompt_lp = [None] + [_top(logp_TV[t - 1], params.prompt_logprobs, ids[t]) for t in range(1, len(ids))]
                new = self._greedy(ids, params.max_tokens)
                first_lp = [_top(logp_TV[-1], params.logprobs, new[0])] if params.logprobs and new else None
                text = tokenizer.decode(new, skip_special_tokens=params.skip_special_tokens)
                for s in params.stop or []:
                    if s in text:
                        text = text[: text.index(s) + (len(s) if params.include_stop_str_in_output else 0)]
                out = types.SimpleNamespace(text=text, token_ids=new, logprobs=first_lp)
                results.append(types.SimpleNamespace(prompt_token_ids=ids, prompt_logprobs=prompt_lp, outputs=[out]))
            return results

        def _greedy(self, ids, max_tokens):
            out = model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 max_new_tokens=max_tokens, do_sample=False, top_k=None, eos_token_id=end_ids,
                                 pad_token_id=tokenizer.pad_token_id)[0, len(ids):].tolist()
            for k, t in enumerate(out):
                if t in end_ids:
                    return out[:k]
            return out

    fake = types.ModuleType("vllm")
    fake.LLM, fake.SamplingParams, fake.calls = LLM, SamplingParams, calls
    return fake


def _top(logp_V: torch.Tensor, k: int | None, actual: int) -> dict:
    """vLLM's raw log-probs: the top k of the whole vocabulary, plus the actual (or sampled) token."""
    entry = {actual: Logprob(float(logp_V[actual]))}
    if k:
        vals, idx = logp_V.topk(k)
        entry.update({int(i): Logprob(float(v)) for v, i in zip(vals, idx)})
    return entry
