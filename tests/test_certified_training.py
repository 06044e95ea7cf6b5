"""Certified training: CROWN-IBP's box and SA-PPO's convex regularizer are sound upper bounds,
differentiable, and the convex variant trains."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_output_bounds import forward, in_ball, pgd_extremes, random_network

from pruningrl.certified_training import (
    action_margin_bound,
    convex_sa_regularizer,
    divergence_bound,
)
from pruningrl.output_bounds import crown_ibp_box, output_box
from pruningrl.policies import CategoricalPolicy, GaussianPolicy
from pruningrl.ppo import PPOConfig, policy_divergence, sa_schedule, train
from pruningrl.zoo import load

PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NORMS = [math.inf, 2.0]
SLACK = 1e-9


@PROPERTY
@given(seed=st.integers(0, 10_000), activation=st.sampled_from(["tanh", "relu"]),
       depth=st.integers(1, 3), width=st.integers(1, 8), eps=st.floats(0.0, 1.0),
       p=st.sampled_from(NORMS))
def test_crown_ibp_holds_every_sampled_point_and_pgd_and_sits_inside_ibp(
        seed, activation, depth, width, eps, p):
    net = random_network(seed, activation, depth, width, 3, 2)
    g = torch.Generator().manual_seed(seed)
    states = torch.randn(4, 3, generator=g, dtype=torch.float64)
    low, high = crown_ibp_box(net, states, eps, p)
    values = forward(net, in_ball(256, states, eps, p, g))
    assert (values >= low.unsqueeze(1) - SLACK).all()
    assert (values <= high.unsqueeze(1) + SLACK).all()
    pgd_low, pgd_high = pgd_extremes(lambda x: forward(net, x), states, eps, p, 2, steps=20,
                                     restarts=2, seed=seed)
    assert (pgd_low >= low - SLACK).all() and (pgd_high <= high + SLACK).all()
    ibp_low, ibp_high = output_box(net, states, eps, p, "ibp")
    assert (low >= ibp_low - SLACK).all() and (high <= ibp_high + SLACK).all()


def _policy(kind: str, seed: int, scale: float) -> torch.nn.Module:
    torch.manual_seed(seed)
    policy = GaussianPolicy(4, 2, hidden=(8, 8)) if kind == "gaussian" else \
        CategoricalPolicy(4, 3, hidden=(8, 8))
    for layer in policy.net:
        if isinstance(layer, torch.nn.Linear):
            torch.nn.init.normal_(layer.weight, std=scale / math.sqrt(layer.in_features))
    return policy.double()


def _worst_divergence(policy, states: torch.Tensor, eps: float, p: float, seed: int):
    """The largest divergence dense sampling and PGD find in each state's ball."""
    g = torch.Generator().manual_seed(seed)
    clean = policy.net(states)
    with torch.no_grad():
        samples = in_ball(256, states, eps, p, g)
        sampled = policy_divergence(policy, clean.unsqueeze(1).expand(-1, 256, -1),
                                    policy.net(samples)).amax(1)
    _, pgd = pgd_extremes(lambda x: policy_divergence(policy, clean.detach(),
                                                      policy.net(x)).unsqueeze(-1),
                          states, eps, p, 1, steps=30, restarts=2, seed=seed)
    return torch.maximum(sampled, pgd[:, 0].detach())


@PROPERTY
@given(seed=st.integers(0, 10_000), kind=st.sampled_from(["gaussian", "categorical"]),
       scale=st.floats(0.3, 3.0), eps=st.floats(0.0, 0.5), p=st.sampled_from(NORMS),
       ibp_weight=st.sampled_from([0.0, 0.3, 1.0]))
def test_the_divergence_bound_is_above_pgd_and_dense_sampling(seed, kind, scale, eps, p,
                                                              ibp_weight):
    policy = _policy(kind, seed, scale)
    states = torch.randn(6, 4, generator=torch.Generator().manual_seed(seed),
                         dtype=torch.float64)
    bound = divergence_bound(policy, states, eps, "inf" if p == math.inf else "2",
                             ibp_weight=ibp_weight)
    assert (bound >= _worst_divergence(policy, states, eps, p, seed) - 1e-7).all()
    if ibp_weight > 0:  # more IBP in the mix never tightens the bound
        tight = divergence_bound(policy, states, eps, "inf" if p == math.inf else "2")
        assert (bound >= tight - 1e-9).all()


@pytest.mark.parametrize("agent_id", ["Hopper-v5/sappo/seed0", "CartPole-v1/ppo/seed0"])
@pytest.mark.parametrize("p", NORMS)
def test_the_divergence_bound_holds_on_shipped_agents(agent_id, p):
    agent = load(agent_id)
    policy = agent.policy.double()
    states = torch.randn(8, policy.obs_dim, generator=torch.Generator().manual_seed(1),
                         dtype=torch.float64)
    eps = 0.075 if agent_id.startswith("Hopper") else 0.05
    worst = _worst_divergence(policy, states, eps, p, 1)
    for ibp_weight in (0.0, 1.0):
        bound = divergence_bound(policy, states, eps, "inf" if p == math.inf else "2",
                                 ibp_weight=ibp_weight)
        assert (bound >= worst - 1e-7).all()


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_the_regularizer_is_zero_at_radius_zero_and_a_step_on_it_lowers_it(kind):
    policy = _policy(kind, 0, 2.0).float()
    states = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
    assert float(divergence_bound(policy, states, 0.0).detach().abs().max()) < 1e-9
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.05)
    before = convex_sa_regularizer(policy, states, 0.1)
    before.backward()
    grads = [p.grad for p in policy.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    optimizer.step()
    assert float(convex_sa_regularizer(policy, states, 0.1).detach()) < float(before.detach())


def test_the_convex_variant_trains_and_is_named():
    config = PPOConfig(env_id="CartPole-v1", total_steps=4096, seed=0, sa_reg=0.1, sa_eps=0.05,
                       sa_method="convex", num_envs=4)
    assert config.variant == "sappo-convex"
    result = train(config)
    assert result.agent.metadata["config"]["sa_method"] == "convex"
    with pytest.raises(ValueError, match="unknown sa_method"):
        PPOConfig(env_id="CartPole-v1", sa_reg=0.1, sa_eps=0.1, sa_method="lp").validate()


@pytest.mark.parametrize("ibp_weight", [0.0, 0.5, 1.0])
def test_the_fast_path_adds_the_convex_regularizer_as_autograd_does(ibp_weight):
    """Eight minibatch updates of the convex variant, at each end of the CROWN-IBP-to-IBP
    schedule and between: closed-form PPO gradients plus the bound's backward pass give the
    same parameters as autograd alone. (Over hundreds of Adam steps float rounding grows
    chaotically, so the comparison is kept short enough to be exact.)"""
    results = []
    for analytic in (True, False):
        config = PPOConfig(env_id="CartPole-v1", total_steps=2048, seed=3, sa_reg=0.5,
                           sa_eps=0.1, sa_method="convex", sa_ramp=0.0, num_envs=4,
                           epochs=2, minibatches=4, sa_ibp_weight=ibp_weight,
                           analytic_gradients=analytic)
        results.append(train(config).agent.policy.state_dict())
    for name, value in results[0].items():
        torch.testing.assert_close(value, results[1][name], rtol=1e-5, atol=1e-6)


def test_the_schedule_ramps_eps_and_the_ibp_share_together_then_holds_them():
    config = PPOConfig(env_id="Hopper-v5", total_steps=2048 * 100, sa_reg=0.03, sa_eps=0.075,
                       sa_method="convex", sa_ramp=0.75, sa_ibp_weight=0.5)
    assert sa_schedule(config, 0) == (0.0, 0.0)
    eps_k, w_k = sa_schedule(config, 30)  # 40% of the ramp
    assert eps_k == pytest.approx(0.4 * 0.075) and w_k == pytest.approx(0.4 * 0.5)
    assert sa_schedule(config, 75) == sa_schedule(config, 99) == (0.075, 0.5)
    eps = [sa_schedule(config, k)[0] for k in range(100)]
    assert eps == sorted(eps)


def _worst_greedy_loss(policy, states: torch.Tensor, eps: float, p: float, seed: int):
    """The largest -log pi(a*|s') that dense sampling and PGD find in each state's ball, a* the
    clean greedy action."""
    g = torch.Generator().manual_seed(seed)
    greedy = policy.net(states).argmax(-1).detach()

    def loss(x: torch.Tensor) -> torch.Tensor:  # (..., in) -> (..., 1)
        log_p = torch.log_softmax(policy.net(x), -1)
        index = greedy.view(-1, *([1] * (x.dim() - 1))).expand(*x.shape[:-1], 1)
        return -log_p.gather(-1, index)

    with torch.no_grad():
        sampled = loss(in_ball(256, states, eps, p, g)).amax(1)[:, 0]
    _, pgd = pgd_extremes(loss, states, eps, p, 1, steps=30, restarts=2, seed=seed)
    return torch.maximum(sampled, pgd[:, 0].detach())


@PROPERTY
@given(seed=st.integers(0, 10_000), scale=st.floats(0.3, 3.0), eps=st.floats(0.0, 0.5),
       p=st.sampled_from(NORMS), ibp_weight=st.sampled_from([0.0, 0.3, 1.0]))
def test_the_margin_bound_is_above_the_greedy_actions_worst_loss(seed, scale, eps, p,
                                                                  ibp_weight):
    policy = _policy("categorical", seed, scale)
    states = torch.randn(6, 4, generator=torch.Generator().manual_seed(seed),
                         dtype=torch.float64)
    bound = action_margin_bound(policy, states, eps, "inf" if p == math.inf else "2",
                                ibp_weight=ibp_weight)
    assert (bound >= _worst_greedy_loss(policy, states, eps, p, seed) - 1e-7).all()


def test_the_margin_bound_is_the_greedy_loss_at_radius_zero_and_a_step_lowers_it():
    policy = _policy("categorical", 0, 2.0)
    states = torch.randn(32, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    clean = -torch.log_softmax(policy.net(states), -1).amax(-1)
    assert torch.allclose(action_margin_bound(policy, states, 0.0), clean, atol=1e-12)
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.05)
    before = convex_sa_regularizer(policy, states, 0.1, objective="margin")
    before.backward()
    optimizer.step()
    after = convex_sa_regularizer(policy, states, 0.1, objective="margin")
    assert float(after.detach()) < float(before.detach())
    with pytest.raises(ValueError, match="categorical policies"):
        action_margin_bound(_policy("gaussian", 0, 1.0), states, 0.1)
    with pytest.raises(ValueError, match="unknown objective"):
        convex_sa_regularizer(policy, states, 0.1, objective="entropy")


def test_the_margin_variant_trains_and_is_named():
    config = PPOConfig(env_id="CartPole-v1", total_steps=4096, seed=0, sa_reg=0.1, sa_eps=0.05,
                       sa_method="convex", sa_objective="margin", num_envs=4)
    assert config.variant == "sappo-margin"
    result = train(config)
    assert result.agent.metadata["config"]["sa_objective"] == "margin"
    with pytest.raises(ValueError, match="needs sa_method='convex'"):
        PPOConfig(env_id="CartPole-v1", sa_reg=0.1, sa_eps=0.1, sa_objective="margin").validate()
    with pytest.raises(ValueError, match="unknown sa_objective"):
        PPOConfig(env_id="CartPole-v1", sa_reg=0.1, sa_eps=0.1, sa_method="convex",
                  sa_objective="kl").validate()


@pytest.mark.parametrize("agent_id", ["CartPole-v1/ppo/seed0", "Acrobot-v1/ppo/seed0"])
@pytest.mark.parametrize("p", NORMS)
def test_the_margin_bound_holds_on_shipped_agents(agent_id, p):
    policy = load(agent_id).policy.double()
    states = torch.randn(8, policy.obs_dim, generator=torch.Generator().manual_seed(1),
                         dtype=torch.float64)
    worst = _worst_greedy_loss(policy, states, 0.1, p, 1)
    for ibp_weight in (0.0, 1.0):
        bound = action_margin_bound(policy, states, 0.1, "inf" if p == math.inf else "2",
                                    ibp_weight=ibp_weight)
        assert (bound >= worst - 1e-7).all()
