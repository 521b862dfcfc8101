r"""Advantage estimators for GRPO with reasoning modes: pure tensor functions, each registered by name
together with its config class (`estimator_registry`): `GrpoConfig`, `DualPaperConfig` and `DualConfig`
hold exactly the settings their function reads, and a recipe's ``estimator:`` block is that config.

Every estimator maps one generation batch of N rollouts to two per-rollout advantages:
``reasoning`` (for every completion token) and ``marker`` (for the mode-marker token). Rollouts
are tied together by ids, never by position: ``group_ids`` says which prompt a rollout answers,
``mode_ids`` which mode it is in, so a shuffled batch gives the same advantages row for row.
`token_advantages` then spreads them over a (N, T) completion mask.

Notation: a group g is one prompt x and its G rollouts; rollout i has mode m_i, reward r_i; the
subgroup (g, m) holds the n_{g,m} rollouts of mode m, with mean reward \hat V_{g,m}.

``grpo``  -- A_i = (r_i - mean_g r) / (std_g r + eps), or without the division (Dr. GRPO); every
token of rollout i, marker included, gets A_i.

``dual_paper`` -- the PersonaDual authors' code: z_i = the grpo A_i; intra_i = z_i - mean of z over
i's own mode; inter_i = z_i - mean of z over the other modes; tokens get inter_i + intra_i, marker
tokens ``prefix_weight`` (2) times that. With a balanced split the group's z sum to zero, so
mean_same + mean_other = 0 and inter_i + intra_i = 2 z_i: plain GRPO, scaled. Kept to reproduce.

``dual`` -- ours. The objective is J(x) = sum_m p(m|x) V(x, m), with p(m|x) the policy's mode
distribution (softmax over the marker logits only) and V(x, m) = E_{y ~ pi(.|x,m)} r.

* Reasoning tokens: rollouts of mode m are on-policy draws from pi(.|x, m), so the REINFORCE term
  for y given m, with the subgroup mean as baseline, is unbiased for grad V(x, m):
  A^reason_i = (r_i - \hat V_{g,m_i}) [/ (std_{g,m_i} + eps)].
  Each mode is credited against itself, so a mode is never blamed for being the weaker mode: it
  learns to reason well on its own terms. The gradient of J itself weights mode m by p(m|x):
  grad_reasoning J = sum_m p(m|x) grad V(x, m) = E_{m~q}[p(m|x)/q(m) * ...], so with
  ``weight_reasoning`` the reasoning advantage is multiplied by p(m_i|x)/q(m_i) too: a mode learns
  where the policy uses it. Without it (the default), every forced mode learns on every prompt --
  on PersonaBench that teaches the personalized mode, forced onto misaligned personas, to distrust
  every persona, helpful ones included (see docs/dualgrpo.md).
* Marker token: d J / d theta = sum_m grad p(m|x) V(x,m)  (theta = marker logits)
                              = sum_m p(m|x) grad log p(m|x) (V(x,m) - b)  for any b.
  The rollouts were forced, q(m) = n_{g,m} / G, not drawn from p. Importance weighting each
  forced rollout by p(m|x)/q(m) and summing over the group gives
      sum_i w_i (\hat V_{g,m_i} - b) grad log p(m_i|x) = G sum_m p(m|x) (\hat V_{g,m} - b) grad log p(m|x),
  i.e. G times the exact expectation over modes, with \hat V unbiased for V. So
      A^marker_i = alpha * p(m_i|x) / q(m_i) * (\hat V_{g,m_i} - \bar V_g),  \bar V_g = sum_m p(m|x) \hat V_{g,m}.
  With this baseline sum_i A^marker_i = 0 in every group, so at ratio 1 the marker term moves no
  probability between the markers and the rest of the vocabulary (the leak of a negative advantage
  onto arbitrary tokens cancels); it only moves mass between modes. With ``scale_rewards="group"``
  the marker advantage is divided by the group's reward std, as GRPO does. ``alpha`` makes up for
  the marker being one token among many in a token-mean loss.
  ``mode_probs`` is p(m|x) under the policy that generated the batch (old policy); without it
  p = q and the weights are 1. Modes with no rollout in a group are left out and p renormalised.
* Marker mass (``marker_mass_coef`` = lambda, off by default). The zero-sum baseline stops the leak
  at the logits, not through shared parameters: reasoning updates and tied embeddings can still
  lower every marker's full-vocabulary probability pi(m|x) (docs/dualgrpo.md measured it). With
  M(x) = sum_m pi(m|x) and p(m|x) = pi(m|x) / M(x):
      grad log M = sum_m grad pi(m|x) / M = sum_m p(m|x) grad log pi(m|x),
  and over the forced split, sum_i p(m_i|x)/q(m_i) grad log pi(m_i|x) = G grad log M. So adding
  lambda * p(m_i|x)/q(m_i) to each marker advantage ascends lambda * log M, the markers' total
  probability, and leaves p(m|x), the mode choice, to the selection term.
* Reasoning scale (``reasoning_coef``, 1 by default). 0 leaves only the selection term: RL learns
  when to use each mode and does not retrain how either mode reasons, which an SFT model may
  already do better than a few hundred noisy rollouts would teach it.
* ``split_modes=False`` treats the whole group as one mode: it is then ``grpo`` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch

from ..config import help_field
from .estimator_registry import EstimatorConfig, get_estimator, register_estimator

# Each estimator's config holds exactly what its function reads (`EstimatorConfig`: scale_rewards, eps).


@dataclass(frozen=True)
class GrpoConfig(EstimatorConfig):
    PER_SEQUENCE: ClassVar[bool] = True


@dataclass(frozen=True)
class DualPaperConfig(EstimatorConfig):
    prefix_weight: float = help_field("marker tokens get this multiple of the advantage (the authors' \"prefix "
                                      "strengthening\")", 2.0)


@dataclass(frozen=True)
class DualConfig(EstimatorConfig):
    alpha: float = help_field("weight of the marker (mode-selection) advantage", 1.0)
    split_modes: bool = help_field("one subgroup per mode (false: the prompt's whole group, and dual is then grpo "
                                   "exactly)", True)
    weight_reasoning: bool = help_field("reasoning advantages times p(mode|x)/q(mode) (the gradient of J), so a mode "
                                        "learns where it is used", False)
    marker_mass_coef: float = help_field("lambda, ascend lambda * log p(any marker | x) so RL cannot leak the "
                                         "markers' probability to other tokens (0 = off; needs force_modes)", 0.0)
    reasoning_coef: float = help_field("scale of the reasoning tokens' advantages (0 = RL trains the mode choice "
                                       "alone)", 1.0)

    def __post_init__(self):
        super().__post_init__()
        if self.alpha < 0 or self.marker_mass_coef < 0 or self.reasoning_coef < 0:
            raise ValueError(f"alpha, marker_mass_coef and reasoning_coef must be >= 0, got {self.alpha}, "
                             f"{self.marker_mass_coef} and {self.reasoning_coef}")

    def needs_forced_modes(self) -> str:
        return "marker_mass_coef weights forced markers by p/q" if self.marker_mass_coef else ""


class SeqAdvantages(NamedTuple):
    reasoning: torch.Tensor  # (N,) for every completion token of a rollout
    marker: torch.Tensor  # (N,) for its mode-marker token(s)


# ---------------------------------------------------------------------------------------------
# segment statistics keyed by ids (NaN rewards are unscorable: left out, advantage 0)


def _segments(*ids: torch.Tensor) -> torch.Tensor:
    """Dense segment index (0..S-1) for each row, from one or more id columns."""
    return torch.unique(torch.stack(ids, dim=1), dim=0, return_inverse=True)[1]


def _seg_mean_std(x_N: torch.Tensor, seg_N: torch.Tensor):
    """Per-row mean and unbiased std of x over its segment, ignoring NaN; count too."""
    valid = ~torch.isnan(x_N)
    xv = torch.where(valid, x_N, torch.zeros_like(x_N))
    S = int(seg_N.max()) + 1 if seg_N.numel() else 0
    count = torch.zeros(S, dtype=x_N.dtype).index_add_(0, seg_N, valid.to(x_N.dtype))
    total = torch.zeros(S, dtype=x_N.dtype).index_add_(0, seg_N, xv)
    mean = total / count.clamp(min=1)
    sq = torch.where(valid, (x_N - mean[seg_N]) ** 2, torch.zeros_like(x_N))
    var = torch.zeros(S, dtype=x_N.dtype).index_add_(0, seg_N, sq) / (count - 1).clamp(min=1)
    std = torch.where(count > 1, var.sqrt(), torch.zeros_like(var))
    return mean[seg_N], std[seg_N], count[seg_N]


def _normalise(centered_N, std_N, cfg: EstimatorConfig):
    return centered_N / (std_N + cfg.eps) if cfg.scale_rewards == "group" else centered_N


# ---------------------------------------------------------------------------------------------
# estimators


@register_estimator("grpo", GrpoConfig)
def grpo(rewards, group_ids, mode_ids=None, n_modes=None, mode_probs=None, cfg=GrpoConfig()) -> SeqAdvantages:
    mean, std, _ = _seg_mean_std(rewards, _segments(group_ids))
    adv = torch.nan_to_num(_normalise(rewards - mean, std, cfg), nan=0.0)
    return SeqAdvantages(adv, adv)


@register_estimator("dual_paper", DualPaperConfig)
def dual_paper(rewards, group_ids, mode_ids, n_modes=None, mode_probs=None, cfg=DualPaperConfig()) -> SeqAdvantages:
    z = grpo(rewards, group_ids, cfg=cfg).reasoning
    g_seg, s_seg = _segments(group_ids), _segments(group_ids, mode_ids)
    g_mean, _, g_count = _seg_mean_std(z, g_seg)
    s_mean, _, s_count = _seg_mean_std(z, s_seg)
    other_count = g_count - s_count
    other_mean = torch.where(other_count > 0, (g_mean * g_count - s_mean * s_count) / other_count.clamp(min=1),
                             torch.zeros_like(z))
    combined = (z - other_mean) + (z - s_mean)
    return SeqAdvantages(combined, cfg.prefix_weight * combined)


@register_estimator("dual", DualConfig)
def dual(rewards, group_ids, mode_ids, n_modes, mode_probs=None, cfg=DualConfig()) -> SeqAdvantages:
    if not cfg.split_modes:
        return grpo(rewards, group_ids, cfg=cfg)
    g_seg, s_seg = _segments(group_ids), _segments(group_ids, mode_ids)
    _, g_std, g_count = _seg_mean_std(rewards, g_seg)
    v_row, s_std, s_count = _seg_mean_std(rewards, s_seg)  # \hat V_{g, m_i}, per row
    reasoning = torch.nan_to_num(_normalise(rewards - v_row, s_std, cfg), nan=0.0)

    # Subgroup-level view: each (g, m) once, with its group, p(m|x) and \hat V.
    S, G = int(s_seg.max()) + 1, int(g_seg.max()) + 1
    sub_group = torch.zeros(S, dtype=torch.long).index_copy_(0, s_seg, g_seg)
    sub_n = torch.zeros(S, dtype=rewards.dtype).index_add_(0, s_seg, torch.ones_like(rewards))
    sub_v = torch.zeros(S, dtype=rewards.dtype).index_copy_(0, s_seg, torch.nan_to_num(v_row, nan=0.0))
    if mode_probs is None:  # p = q: the forced split itself
        sub_p = sub_n.clone()
    else:  # rows of a subgroup share one p(m|x); averaging guards against float noise
        p_row = mode_probs[torch.arange(rewards.shape[0]), mode_ids].to(rewards.dtype)
        sub_p = torch.zeros(S, dtype=rewards.dtype).index_add_(0, s_seg, p_row) / sub_n
    sub_p = sub_p / torch.zeros(G, dtype=rewards.dtype).index_add_(0, sub_group, sub_p)[sub_group].clamp(min=1e-12)
    sub_q = sub_n / torch.zeros(G, dtype=rewards.dtype).index_add_(0, sub_group, sub_n)[sub_group]
    v_bar = torch.zeros(G, dtype=rewards.dtype).index_add_(0, sub_group, sub_p * sub_v)  # \bar V_g

    sub_marker = cfg.alpha * sub_p / sub_q * (sub_v - v_bar[sub_group])
    marker = torch.nan_to_num(_normalise(sub_marker[s_seg], g_std, cfg), nan=0.0)
    if cfg.marker_mass_coef:
        marker = marker + cfg.marker_mass_coef * (sub_p / sub_q)[s_seg]
    if cfg.weight_reasoning:
        reasoning = reasoning * (sub_p / sub_q)[s_seg]
    return SeqAdvantages(cfg.reasoning_coef * reasoning, marker)


# ---------------------------------------------------------------------------------------------


def token_advantages(seq: SeqAdvantages, completion_mask_NT: torch.Tensor, marker_mask_NT: torch.Tensor) -> torch.Tensor:
    """(N,) reasoning/marker advantages -> (N, T): marker positions get ``marker``, the rest ``reasoning``."""
    adv_NT = seq.reasoning[:, None] * completion_mask_NT
    return torch.where(marker_mask_NT.bool(), seq.marker[:, None].expand_as(adv_NT), adv_NT)


def compute_advantages(cfg: EstimatorConfig, rewards_N, group_ids_N, mode_ids_N, completion_mask_NT, marker_mask_NT,
                       n_modes: int = 2, mode_probs_NM=None) -> torch.Tensor:
    """The whole estimator ``cfg`` configures: (rewards, ids, token masks, optional old p(mode|x)) -> per-token
    advantages (N, T)."""
    seq = get_estimator(cfg.name)(rewards_N, group_ids_N, mode_ids_N, n_modes, mode_probs_NM, cfg)
    return token_advantages(seq, completion_mask_NT, marker_mask_NT)
