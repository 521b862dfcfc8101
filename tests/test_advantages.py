import math

import pytest
import torch

from personadual.rl.advantages import (DualConfig, DualPaperConfig, GrpoConfig, SeqAdvantages, compute_advantages,
                                       token_advantages)
from personadual.rl.estimator_registry import ESTIMATORS, get_estimator

EPS = 1e-4
t = lambda *x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
ids = lambda *x: torch.tensor(x, dtype=torch.long)  # noqa: E731


def test_grpo_by_hand():
    r, g = t(1, 0, 1, 1, 0, 0), ids(7, 7, 7, 7, 3, 3)
    a = get_estimator("grpo")(r, g)
    std = math.sqrt(((0.25 ** 2) * 3 + 0.75 ** 2) / 3)  # unbiased, as TRL
    torch.testing.assert_close(a.reasoning, t(0.25 / (std + EPS), -0.75 / (std + EPS), 0.25 / (std + EPS),
                                             0.25 / (std + EPS), 0, 0))
    assert torch.equal(a.reasoning, a.marker)
    dr = get_estimator("grpo")(r, g, cfg=GrpoConfig(scale_rewards="none"))
    torch.testing.assert_close(dr.reasoning, t(0.25, -0.75, 0.25, 0.25, 0, 0))


def test_dual_by_hand_uniform_policy():
    r, g, m = t(1, 0, 1, 1), ids(0, 0, 0, 0), ids(0, 0, 1, 1)
    a = get_estimator("dual")(r, g, m, 2, None, DualConfig(scale_rewards="none"))
    torch.testing.assert_close(a.reasoning, t(0.5, -0.5, 0, 0))  # within-mode
    torch.testing.assert_close(a.marker, t(-0.25, -0.25, 0.25, 0.25))  # V = (.5, 1), Vbar = .75
    s = get_estimator("dual")(r, g, m, 2, None, DualConfig())
    torch.testing.assert_close(s.reasoning, t(0.5 / (math.sqrt(0.5) + EPS), -0.5 / (math.sqrt(0.5) + EPS), 0, 0))
    torch.testing.assert_close(s.marker, t(-0.25, -0.25, 0.25, 0.25) / (0.5 + EPS))


def test_dual_by_hand_importance_corrected():
    r, g, m = t(1, 0, 1, 1), ids(0, 0, 0, 0), ids(0, 0, 1, 1)
    probs = torch.tensor([[0.2, 0.8]] * 4, dtype=torch.float64)
    a = get_estimator("dual")(r, g, m, 2, probs, DualConfig(scale_rewards="none", alpha=2.0))
    # p/q = (.4, 1.6); Vbar = .2*.5 + .8*1 = .9; alpha * p/q * (V - Vbar)
    torch.testing.assert_close(a.marker, t(2 * 0.4 * -0.4, 2 * 0.4 * -0.4, 2 * 1.6 * 0.1, 2 * 1.6 * 0.1))
    # weight_reasoning: the within-mode advantages (.5, -.5, 0, 0) times p/q, the gradient of J itself
    w = get_estimator("dual")(r, g, m, 2, probs, DualConfig(scale_rewards="none", weight_reasoning=True))
    torch.testing.assert_close(w.reasoning, t(0.4 * 0.5, 0.4 * -0.5, 0, 0))


def test_dual_paper_by_hand_and_its_degeneracy():
    r, g, m = t(1, 0, 1, 1, 0, 1, 1, 1), ids(0, 0, 0, 0, 0, 0, 0, 0), ids(0, 0, 0, 0, 1, 1, 1, 1)
    z = get_estimator("grpo")(r, g).reasoning
    a = get_estimator("dual_paper")(r, g, m)
    same = torch.where(m == 0, z[:4].mean(), z[4:].mean())
    other = torch.where(m == 0, z[4:].mean(), z[:4].mean())
    torch.testing.assert_close(a.reasoning, (z - other) + (z - same))
    # balanced split: z sums to zero, so the paper's estimator is GRPO times 2 (and 4 on the marker)
    torch.testing.assert_close(a.reasoning, 2 * z)
    torch.testing.assert_close(a.marker, 4 * z)


def test_dual_without_split_is_grpo_exactly():
    gen = torch.Generator().manual_seed(0)
    r = torch.randint(0, 3, (64,), generator=gen).double() / 2
    g = torch.arange(64) // 8
    m = torch.randint(0, 2, (64,), generator=gen)
    for scale in ("group", "none"):
        a = get_estimator("dual")(r, g, m, 2, None, DualConfig(scale_rewards=scale, split_modes=False))
        b = get_estimator("grpo")(r, g, cfg=GrpoConfig(scale_rewards=scale))
        assert torch.equal(a.reasoning, b.reasoning) and torch.equal(a.marker, b.marker)


# --- reference loop implementation -------------------------------------------------------------


def _std(xs):
    if len(xs) < 2:
        return 0.0
    mu = sum(xs) / len(xs)
    return math.sqrt(sum((x - mu) ** 2 for x in xs) / (len(xs) - 1))


def _loop_dual(r, g, m, probs, cfg):
    n = len(r)
    reasoning, marker = [0.0] * n, [0.0] * n
    for gid in set(g):
        rows = [i for i in range(n) if g[i] == gid]
        modes = sorted({m[i] for i in rows})
        V = {k: sum(r[i] for i in rows if m[i] == k) / sum(1 for i in rows if m[i] == k) for k in modes}
        p = {k: (probs[rows[0]][k] if probs else sum(1 for i in rows if m[i] == k)) for k in modes}
        z = sum(p.values())
        p = {k: v / z for k, v in p.items()}
        q = {k: sum(1 for i in rows if m[i] == k) / len(rows) for k in modes}
        vbar = sum(p[k] * V[k] for k in modes)
        gstd = _std([r[i] for i in rows])
        for i in rows:
            sub = [r[j] for j in rows if m[j] == m[i]]
            c = r[i] - V[m[i]]
            reasoning[i] = c / (_std(sub) + cfg.eps) if cfg.scale_rewards == "group" else c
            reasoning[i] *= p[m[i]] / q[m[i]] if cfg.weight_reasoning else 1.0
            mk = cfg.alpha * p[m[i]] / q[m[i]] * (V[m[i]] - vbar)
            marker[i] = mk / (gstd + cfg.eps) if cfg.scale_rewards == "group" else mk
    return reasoning, marker


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("scale", ["group", "none"])
def test_loop_equals_vectorised(seed, scale):
    gen = torch.Generator().manual_seed(seed)
    n = 48
    r = torch.rand(n, generator=gen, dtype=torch.float64).round(decimals=1)
    g = torch.randint(0, 6, (n,), generator=gen) * 11  # arbitrary, non-contiguous ids
    m = torch.randint(0, 3, (n,), generator=gen)  # three modes, unbalanced
    logits = torch.randn(6 * 11 + 1, 3, generator=gen, dtype=torch.float64)
    probs = torch.softmax(logits, -1)[g]  # one p(mode|x) per prompt
    for pr, weight in ((None, False), (probs, False), (probs, True)):
        cfg = DualConfig(scale_rewards=scale, alpha=1.5, weight_reasoning=weight)
        a = get_estimator("dual")(r, g, m, 3, pr, cfg)
        lr, lm = _loop_dual(r.tolist(), g.tolist(), m.tolist(), pr.tolist() if pr is not None else None, cfg)
        torch.testing.assert_close(a.reasoning, torch.tensor(lr, dtype=torch.float64))
        torch.testing.assert_close(a.marker, torch.tensor(lm, dtype=torch.float64))


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_reordering_the_batch_changes_no_advantage(name):
    gen = torch.Generator().manual_seed(1)
    r = torch.rand(40, generator=gen, dtype=torch.float64)
    g, m = torch.arange(40) // 8, (torch.arange(40) % 8 >= 4).long()
    probs = torch.softmax(torch.randn(5, 2, generator=gen, dtype=torch.float64), -1)[g]
    perm = torch.randperm(40, generator=gen)
    cfg = ESTIMATORS[name].config()
    a = get_estimator(name)(r, g, m, 2, probs, cfg)
    b = get_estimator(name)(r[perm], g[perm], m[perm], 2, probs[perm], cfg)
    torch.testing.assert_close(a.reasoning[perm], b.reasoning)
    torch.testing.assert_close(a.marker[perm], b.marker)


def test_dual_marker_advantages_sum_to_zero_per_group():
    gen = torch.Generator().manual_seed(2)
    r = torch.rand(32, generator=gen, dtype=torch.float64)
    g, m = torch.arange(32) // 8, (torch.arange(32) % 2).long()
    probs = torch.softmax(torch.randn(4, 2, generator=gen, dtype=torch.float64), -1)[g]
    mk = get_estimator("dual")(r, g, m, 2, probs, DualConfig()).marker
    torch.testing.assert_close(torch.zeros(4, dtype=torch.float64).index_add(0, g, mk), torch.zeros(4, dtype=torch.float64))


def test_nan_rewards_are_left_out():
    r, g, m = t(1, float("nan"), 0, 1), ids(0, 0, 0, 0), ids(0, 0, 1, 1)
    a = get_estimator("dual")(r, g, m, 2, None, DualConfig(scale_rewards="none"))
    assert a.reasoning[1] == 0 and not torch.isnan(a.marker).any()
    torch.testing.assert_close(a.reasoning, t(0, 0, -0.5, 0.5))


def _marker_gradient_estimate(name, theta, V, G, n_groups, gen):
    """Average over groups of (1/G) sum_i A^marker_i grad_theta log p(m_i), with forced balanced modes."""
    M = theta.numel()
    p = torch.softmax(theta, 0)
    m = torch.arange(G) * M // G  # forced split
    grad_logp = torch.eye(M, dtype=torch.float64)[m] - p  # d log p(m_i) / d theta, (G, M)
    total = torch.zeros(M, dtype=torch.float64)
    for _ in range(n_groups):
        r = torch.bernoulli(V[m], generator=gen)
        adv = get_estimator(name)(r, torch.zeros(G, dtype=torch.long), m, M, p.expand(G, M),
                                  ESTIMATORS[name].config(scale_rewards="none")).marker
        total += (adv[:, None] * grad_logp).sum(0) / G
    return total / n_groups


def test_dual_marker_gradient_matches_the_true_policy_gradient():
    """d/dtheta E_{m ~ softmax(theta)} E[r | m], estimated from forced rollouts, vs the exact gradient."""
    gen = torch.Generator().manual_seed(0)
    theta = torch.tensor([1.5, -0.5, 0.0], dtype=torch.float64)  # the policy strongly prefers mode 0
    V = torch.tensor([0.3, 0.8, 0.5], dtype=torch.float64)  # ... which is the worst mode
    p = torch.softmax(theta, 0)
    true = p * (V - (p * V).sum())
    est = _marker_gradient_estimate("dual", theta, V, G=6, n_groups=4000, gen=gen)
    assert torch.allclose(est, true, atol=0.01), (est, true)
    # plain GRPO on forced rollouts estimates a different vector: the correction is needed
    biased = _marker_gradient_estimate("grpo", theta, V, G=6, n_groups=4000, gen=gen)
    assert (biased - true).abs().max() > 3 * (est - true).abs().max()
    assert biased[2] < 0 < true[2]  # it would even push the policy away from an above-average mode


def test_token_advantages_put_marker_credit_on_marker_tokens():
    seq = SeqAdvantages(t(1.0, -2.0), t(10.0, 20.0))
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    marker = torch.tensor([[1, 0, 0, 0], [1, 0, 0, 0]])
    out = token_advantages(seq, mask, marker)
    torch.testing.assert_close(out, t(10, 1, 1, 0, 20, -2, -2, -2).view(2, 4))
    full = compute_advantages(GrpoConfig(), t(1, 0), ids(0, 0), ids(0, 1), mask, marker)
    assert full.shape == (2, 4) and full[0, 3] == 0


def test_unknown_estimator_and_bad_config():
    with pytest.raises(KeyError, match="known: \\['dual', 'dual_paper', 'grpo'\\]"):
        get_estimator("ppo")
    for config in (GrpoConfig, DualPaperConfig, DualConfig):  # the shared checks hold in every estimator's config
        with pytest.raises(ValueError, match="scale_rewards"):
            config(scale_rewards="batchy")
        with pytest.raises(ValueError, match="eps"):
            config(eps=0.0)


def test_marker_mass_term_ascends_the_log_of_the_markers_total_probability():
    """lambda * p(m_i|x)/q(m_i) added to each forced marker's advantage: summed over a group, the
    policy-gradient step sum_i A_i grad log pi(m_i|x) gains exactly lambda * G * grad log M, with
    M = pi(marker 0) + pi(marker 1) over the full vocabulary, and leaves everything else as it was."""
    torch.manual_seed(0)
    logits = torch.randn(7, dtype=torch.float64, requires_grad=True)  # vocabulary of 7; markers are tokens 2 and 5
    markers = [2, 5]
    pi = torch.softmax(logits, 0)
    p_mode = (pi[markers] / pi[markers].sum()).detach()  # p(m|x): renormalised over the markers
    G, lam = 6, 0.7
    rewards, group, modes = t(1, 0, 1, 0, 0, 1), ids(0, 0, 0, 0, 0, 0), ids(0, 0, 0, 1, 1, 1)
    probs = p_mode.expand(G, 2)

    def step(coef):  # the surrogate whose gradient is the policy-gradient step on the marker tokens
        adv = get_estimator("dual")(rewards, group, modes, 2, probs, DualConfig(alpha=3.0, marker_mass_coef=coef))
        logp = torch.log_softmax(logits, 0)[torch.tensor([markers[m] for m in modes])]
        (g,) = torch.autograd.grad((adv.marker * logp).sum(), logits)
        return g, adv

    with_mass, adv_mass = step(lam)
    without, adv_plain = step(0.0)
    (grad_log_m,) = torch.autograd.grad(torch.log(torch.softmax(logits, 0)[markers].sum()), logits)
    torch.testing.assert_close(with_mass - without, lam * G * grad_log_m)
    torch.testing.assert_close(adv_mass.reasoning, adv_plain.reasoning)  # reasoning credit untouched
    with pytest.raises(ValueError, match="marker_mass_coef"):
        DualConfig(marker_mass_coef=-1.0)


def test_reasoning_coef_scales_the_reasoning_credit_and_leaves_the_mode_choice_alone():
    r, g, m = t(1, 0, 1, 1), ids(0, 0, 0, 0), ids(0, 0, 1, 1)
    probs = torch.tensor([[0.2, 0.8]] * 4, dtype=torch.float64)
    full = get_estimator("dual")(r, g, m, 2, probs, DualConfig(alpha=2.0, weight_reasoning=True))
    for coef in (0.0, 0.3):
        part = get_estimator("dual")(r, g, m, 2, probs, DualConfig(alpha=2.0, weight_reasoning=True, reasoning_coef=coef))
        torch.testing.assert_close(part.reasoning, coef * full.reasoning)
        torch.testing.assert_close(part.marker, full.marker)
    assert torch.count_nonzero(full.reasoning) == 2  # the test would pass trivially on all-zero credit
    with pytest.raises(ValueError, match="reasoning_coef"):
        DualConfig(reasoning_coef=-0.5)
