"""DualGRPO as a thin subclass of TRL's GRPOTrainer (trl==1.16.0).

What changes, and where (everything else -- loss types, KL, clipping, PEFT, vLLM, multi-GPU -- is TRL's):

- `_tokenize_prompts`: text prompts become ids by `personadual.tokenization.prompt_ids`, the rule
  SFT examples and the engines use. TRL's own call adds special tokens to text that the chat
  template rendered, which doubles a BOS on Llama-style tokenizers.
- `_generate_single_turn`: forced exploration. Copy k of a prompt's G rollouts gets mode
  k * M // G; its marker token is appended to the prompt for generation and then put back at the
  start of the completion, so the marker is trained on and scored. Each row is generated on its
  own (``num_generations=1``): vLLM server mode would otherwise sample G completions from the
  first copy only and silently drop the other copies' markers (docs/dualgrpo.md, trap 1).
  With ``general_context="set-aside"`` the general mode's rollouts are sampled from the prompt
  without its persona (the row's ``prompt_set_aside``), as the model is read at evaluation in that
  context; the sequence that is trained keeps the prompt with the persona, where the marker is chosen.
  With ``cloze_rollouts="options"`` a cloze-form rollout is not generated: its answer is one of the item's
  options, drawn from the model's own option scores (`option_rollouts`), since in that form a free reply
  can only name an option by copying the one a persona quotes.
- `_calculate_rewards`: tells reward functions each rollout's mode (``mode`` row field), since the
  decoded text has lost the marker (trap 2), and keeps the gathered rewards for the advantages.
- `_generate_and_score_completions`: after TRL has generated, scored and computed its own
  per-sequence advantages, replaces them with the chosen estimator's per-token advantages
  (`personadual.rl.advantages`), computed on the rewards of all processes, keyed by group and mode
  ids, then sliced to this process -- the same gather-then-slice TRL uses for GRPO.

Rollout layout: TRL's RepeatSampler puts a prompt's G copies next to each other in the global
generation batch and gives each process a contiguous slice; we check that (`_check_layout`) and
fail loudly if a TRL release changes it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import defaultdict

import torch
from accelerate.utils import gather_object
from trl import GRPOTrainer

from .. import modes as modes_lib
from ..modes import marker_distribution
from ..tokenization import prompt_ids
from .advantages import DualConfig, SeqAdvantages, token_advantages
from .estimator_registry import EstimatorConfig, get_estimator
from .option_rollouts import answer_offset, draw_options, option_replies, option_scores

NO_MODE = -1
GENERAL_CONTEXTS = ("persona", "set-aside")  # where the general mode's rollouts are sampled
CLOZE_ROLLOUTS = ("generate", "options")  # how a cloze-form rollout's answer is drawn (`option_rollouts`)


class DualGRPOTrainer(GRPOTrainer):
    def __init__(self, *args, modes: modes_lib.ModeSet = modes_lib.DEFAULT_MODES,
                 estimator: EstimatorConfig = DualConfig(), force_modes: bool = True,
                 general_context: str = "persona", cloze_rollouts: str = "generate", **kwargs):
        super().__init__(*args, **kwargs)
        if general_context not in GENERAL_CONTEXTS:
            raise ValueError(f"general_context: expected one of {GENERAL_CONTEXTS}, got {general_context!r}")
        if general_context == "set-aside" and not (force_modes and modes_lib.GENERAL in modes.names):
            raise ValueError("general_context 'set-aside' needs force_modes and a 'general' mode")
        self.general_context = general_context
        if cloze_rollouts not in CLOZE_ROLLOUTS:
            raise ValueError(f"cloze_rollouts: expected one of {CLOZE_ROLLOUTS}, got {cloze_rollouts!r}")
        self.cloze_rollouts = cloze_rollouts
        self.modes = modes
        self.marker_ids = modes_lib.marker_token_ids(self.processing_class, modes)
        self._mode_of_token = {tok: k for k, tok in enumerate(self.marker_ids)}
        self.estimator_name, self.estimator = estimator.name, get_estimator(estimator.name)
        # TRL's scale_rewards (``args``) decides for our advantages as it does for TRL's own
        self.advantage_config = dataclasses.replace(estimator, scale_rewards=self.scale_rewards)
        self.force_modes = force_modes
        if force_modes and self.num_generations % len(self.marker_ids):
            raise ValueError(f"num_generations={self.num_generations} is not divisible by {len(self.marker_ids)} modes")
        if not estimator.PER_SEQUENCE and self.top_entropy_quantile < 1.0:
            raise ValueError("top_entropy_quantile < 1 can mask the marker token out of the loss (trap 6); keep it at 1")
        self._forced_markers: list[int] | None = None
        self._generation_prompts: list[list[int] | None] | None = None  # per row: ids to sample from instead
        self._option_texts: list[list[str]] | None = None  # per row: the options a cloze rollout draws from
        self._rewards_per_func: torch.Tensor | None = None

    # -- rollouts ---------------------------------------------------------------------------------

    def _tokenize_prompts(self, prompts: list):
        if prompts and isinstance(prompts[0], str):
            return prompt_ids(self.processing_class, prompts), None, {}
        return super()._tokenize_prompts(prompts)  # conversational prompts: TRL's chat-template path

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        forced = self._forced_markers
        if forced is None:
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations, has_tool_images)
        swapped = self._generation_prompts or [None] * len(forced)
        prompt_ids = [list(s if s is not None else p) + [m] for p, m, s in zip(prompt_ids, forced, swapped, strict=True)]
        if self._option_texts is not None:
            completion_ids = self._draw_option_replies(prompt_ids)
            logprobs = [[float("nan")] * len(c) for c in completion_ids] if self.use_vllm else None
        else:
            completion_ids, logprobs = super()._generate_single_turn(prompt_ids, images, multimodal_fields, 1,
                                                                     has_tool_images)
        completion_ids = [[m] + list(c) for m, c in zip(forced, completion_ids, strict=True)]
        if logprobs is not None:
            # The marker was not sampled, and a swapped row was sampled under another prompt than the one it is
            # trained with: NaN is neutral in TRL's importance-sampling correction.
            logprobs = [[float("nan")] * (1 + len(lp)) if s is not None else [float("nan")] + list(lp)
                        for lp, s in zip(logprobs, swapped, strict=True)]
        return completion_ids, logprobs

    def _draw_option_replies(self, prefixes: list[list[int]]) -> list[list[int]]:
        """Cloze rollouts (``cloze_rollouts="options"``): per row, ``\nAnswer: {option}<eos>`` with the option drawn
        from the model's per-character option scores at the rollout temperature (`option_rollouts`).

        Rows with the same prefix (a prompt's copies forced into the same mode) share one scoring pass: their
        option distribution is the same; each row still draws its own option."""
        tok = self.processing_class
        distinct: dict[tuple, int] = {}  # (prefix ids, option texts) -> its slot
        slot_of_row = [distinct.setdefault((tuple(p), tuple(t)), len(distinct))
                       for p, t in zip(prefixes, self._option_texts, strict=True)]
        keys = list(distinct)
        prefix_rows, replies, starts, chars, spans = [], [], [], [], []
        for prefix, texts in keys:
            marker = tok.convert_ids_to_tokens(prefix[-1])  # every prefix ends with its forced marker
            ids = option_replies(tok, marker, texts)
            start = answer_offset(tok, marker, ids)
            spans.append((len(replies), len(replies) + len(ids)))
            prefix_rows += [list(prefix)] * len(ids)
            replies += ids
            starts += [start] * len(ids)
            chars += [len(t) for t in texts]
        scores = option_scores(self.accelerator.unwrap_model(self.model), prefix_rows, replies, starts, chars,
                               tok.pad_token_id)
        per_row = [scores[slice(*spans[k])] for k in slot_of_row]
        picks = draw_options(per_row, self.temperature)
        return [list(replies[spans[k][0] + pick]) + [tok.eos_token_id] for k, pick in zip(slot_of_row, picks)]

    def _cloze_options(self, inputs) -> list[list[str]] | None:
        """Per row, its option texts when every row has them and ``cloze_rollouts="options"``, else None."""
        if self.cloze_rollouts != "options":
            return None
        texts = [list(json.loads(x.get("option_texts") or "{}").values()) for x in inputs]
        if not all(texts):
            raise ValueError("cloze_rollouts 'options' needs every prompt in the cloze form, with its option texts "
                             "(RL rows of prompt_form: cloze)")
        return texts

    def _set_aside_prompts(self, inputs) -> list[list[int] | None] | None:
        """Per row, the ids of its prompt without the persona when it is a general-mode rollout of a row that has
        one (``general_context="set-aside"``), else None."""
        if self.general_context != "set-aside":
            return None
        general = self.marker_ids[self.modes.index(modes_lib.GENERAL)]
        texts = [x.get("prompt_set_aside") or None if m == general else None
                 for x, m in zip(inputs, self._forced_markers, strict=True)]
        wanted = [t for t in texts if t]
        if not wanted:
            return None
        ids = iter(prompt_ids(self.processing_class, wanted))
        return [next(ids) if t else None for t in texts]

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        for row, ids in zip(inputs, completion_ids_list, strict=True):
            mode_id = self._mode_of_token.get(ids[0], NO_MODE) if len(ids) else NO_MODE
            row["mode"] = self.modes.names[mode_id] if mode_id != NO_MODE else None
        self._rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        return self._rewards_per_func

    def _check_layout(self, inputs, G: int) -> list[str]:
        """Each block of G consecutive rows in the global batch must be one prompt (RepeatSampler).
        Returns this process's row digests (rows with the same digest share a prompt)."""
        digest = [hashlib.sha1(str(x["prompt"]).encode()).hexdigest() for x in inputs]
        all_digests = gather_object(digest)
        for g in range(0, len(all_digests), G):
            if len(set(all_digests[g : g + G])) != 1:
                raise RuntimeError(
                    f"rollout layout changed: rows {g}..{g + G - 1} of the generation batch are not one prompt's "
                    "G copies; TRL's RepeatSampler contract no longer holds (check the pinned trl version)"
                )
        # A process's slice may start or end inside a group (per-device batch not a multiple of G): fine,
        # since groups are rebuilt on the gathered batch (group id = global row // G).
        return digest

    # -- advantages -------------------------------------------------------------------------------

    @torch.no_grad()
    def _mode_probs(self, prompt_ids_BT, prompt_mask_BT, digests: list[str]) -> tuple[torch.Tensor, float]:
        """p(mode | prompt) under the current (= rollout) policy, over the marker tokens only (B, M), and the
        mean marker mass p(any marker | x) of the distinct prompts: it falls when RL leaks the markers'
        probability to other tokens (trap 4).

        One prefill per distinct prompt (not per rollout): the G copies of a prompt share it."""
        first: dict = {}  # digest -> row of its first copy, in order of first appearance
        for i, d in enumerate(digests):
            first.setdefault(d, i)
        rows = torch.tensor(list(first.values()), device=prompt_ids_BT.device)
        # Same call as generation's first step (no explicit position ids), so p is the sampling policy's.
        logits_UV = self.model(input_ids=prompt_ids_BT[rows], attention_mask=prompt_mask_BT[rows],
                               logits_to_keep=1).logits[:, -1, :]
        probs_UM, mass_U = marker_distribution(logits_UV, self.marker_ids)
        slot = {d: k for k, d in enumerate(first)}
        return probs_UM[torch.tensor([slot[d] for d in digests], device=probs_UM.device)], mass_U.mean().item()

    def _generate_and_score_completions(self, inputs):
        mode = "train" if self.model.training else "eval"
        G = self.num_generations if mode == "train" else self.num_generations_eval
        B, M = len(inputs), len(self.marker_ids)
        start = self.accelerator.process_index * B
        digests = self._check_layout(inputs, G)
        if self.force_modes:
            self._forced_markers = [self.marker_ids[((start + i) % G) * M // G] for i in range(B)]
            self._generation_prompts = self._set_aside_prompts(inputs)
            self._option_texts = self._cloze_options(inputs)
        try:
            out = super()._generate_and_score_completions(inputs)
        finally:
            self._forced_markers = self._generation_prompts = self._option_texts = None

        device = out["completion_ids"].device
        first_BT = out["completion_ids"][:, :1]
        is_marker_B = torch.isin(first_BT[:, 0], torch.tensor(self.marker_ids, device=device))
        mode_local = torch.tensor([self._mode_of_token.get(int(t), NO_MODE) for t in first_BT[:, 0]], device=device)
        marker_mask_BT = torch.zeros_like(out["completion_mask"])
        marker_mask_BT[:, 0] = is_marker_B.int()
        if self.mask_truncated_completions:  # a truncated rollout's marker still says which mode paid (trap 6)
            out["completion_mask"][:, 0] = torch.where(is_marker_B, 1, out["completion_mask"][:, 0])

        rewards_N = self._rewards_per_func.to(device) * self.reward_weights.to(device)
        unscorable = torch.isnan(self._rewards_per_func).all(dim=1)
        rewards_N = rewards_N.nansum(dim=1).double()
        rewards_N[unscorable] = float("nan")
        N = rewards_N.shape[0]
        group_ids = torch.arange(N, device=device) // G
        mode_ids = self.accelerator.gather(mode_local)
        probs = mass = None
        if self.force_modes and self.estimator_name == "dual":
            local_probs, mass = self._mode_probs(out["prompt_ids"], out["prompt_mask"], digests)
            probs = self.accelerator.gather(local_probs).double()
        # Forced rollouts all carry a marker (ids 0..M-1, indexing p). Sampled ones may not: shift by one so
        # "no marker" is a subgroup of its own; there p = q (on-policy), so no probabilities are needed.
        est_mode_ids = mode_ids if self.force_modes else mode_ids + 1
        seq = self.estimator(rewards_N.cpu(), group_ids.cpu(), est_mode_ids.cpu(), M,
                             probs.cpu() if probs is not None else None, self.advantage_config)
        local = slice(start, start + B)
        local_seq = SeqAdvantages(seq.reasoning[local].float().to(device), seq.marker[local].float().to(device))
        out["advantages"] = token_advantages(local_seq, out["completion_mask"], marker_mask_BT)
        self._log_modes(mode, inputs, rewards_N, mode_ids, group_ids, probs, mass)
        return out

    def _log_modes(self, mode, inputs, rewards_N, mode_ids, group_ids, probs, mass=None):
        """Per-mode reward, p(mode|x) per persona condition, and how often one mode beat the other."""
        metrics, M = self._metrics[mode], len(self.modes.names)
        r, ids, gids = rewards_N.double().cpu(), mode_ids.cpu(), group_ids.cpu()
        ok = (ids >= 0) & ~torch.isnan(r)
        cell = gids[ok] * M + ids[ok]  # (group, mode) cell of each scored rollout
        n_cells = (int(gids.max()) + 1) * M
        total = torch.zeros(n_cells, dtype=torch.float64).index_add_(0, cell, r[ok])
        count = torch.zeros(n_cells, dtype=torch.float64).index_add_(0, cell, torch.ones_like(r[ok]))
        for k, name in enumerate(self.modes.names):
            if count[k::M].sum() > 0:
                metrics[f"dual/reward/{name}"].append((total[k::M].sum() / count[k::M].sum()).item())
        mean_GM = (total / count.clamp(min=1)).view(-1, M)
        both = (count.view(-1, M) > 0).all(dim=1)
        if both.any():
            beat = (mean_GM[both].max(dim=1).values - mean_GM[both].min(dim=1).values) > 1e-6
            metrics["dual/mode_beat_share"].append(beat.double().mean().item())
        if mass is not None:
            metrics["dual/marker_mass"].append(mass)
        if probs is not None and "personalized" in self.modes.names:
            conds = gather_object([x.get("condition", "all") for x in inputs])
            by_cond = defaultdict(list)
            for c, p in zip(conds, probs[:, self.modes.index("personalized")].tolist()):
                by_cond[c].append(p)
            for c, ps in by_cond.items():
                metrics[f"dual/p_personalized/{c}"].append(sum(ps) / len(ps))
