"""Unit and property tests of pruningrl.bounds: norms, monotonicity, soundness, closed forms."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from pruningrl import bounds
from pruningrl.attacks import maximize_tv
from pruningrl.policies import CategoricalPolicy, GaussianPolicy
from pruningrl.pruning import apply_masks, random_masks

NORMS = ["inf", "2"]
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make_policy(kind: str, seed: int, obs_dim: int = 5, out: int = 3, hidden=(8, 8),
                activation: str = "tanh", scale: float = 1.0):
    torch.manual_seed(seed)
    if kind == "gaussian":
        policy = GaussianPolicy(obs_dim, out, hidden, activation, log_std_init=-0.5)
    else:
        policy = CategoricalPolicy(obs_dim, out, hidden, activation)
    with torch.no_grad():  # a "trained-looking" network: larger, less orthogonal weights
        for layer in policy.net:
            if isinstance(layer, nn.Linear):
                layer.weight.normal_(0, scale / math.sqrt(layer.weight.shape[1]))
                layer.bias.normal_(0, 0.3)
        policy.net[-1].weight.mul_(3.0)
    return policy


# --- operator norms against torch.linalg and exhaustive numpy oracles ----------------------------


def brute_inf_to_q(a: np.ndarray, q: float) -> float:
    """sup over ||x||_inf <= 1 of ||A x||_q: a convex function peaks at a cube vertex."""
    vertices = np.array(list(itertools.product([-1.0, 1.0], repeat=a.shape[1])))
    return float(np.max(np.linalg.norm(vertices @ a.T, ord=q, axis=1)))


def brute_2_to_1(a: np.ndarray) -> float:
    """||A||_{2->1} = max over sign vectors sigma of ||A^T sigma||_2 (duality)."""
    signs = np.array(list(itertools.product([-1.0, 1.0], repeat=a.shape[0])))
    return float(np.max(np.linalg.norm(signs @ a, axis=1)))


@given(st.integers(0, 10_000), st.integers(1, 6), st.integers(1, 7))
@PROPERTY
def test_operator_norms_match_torch_linalg(seed, m, n):
    a = torch.randn(m, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    assert torch.isclose(bounds.operator_norm(a, 1, 1), torch.linalg.matrix_norm(a, ord=1))
    assert torch.isclose(
        bounds.operator_norm(a, math.inf, math.inf), torch.linalg.matrix_norm(a, ord=math.inf)
    )
    assert torch.isclose(bounds.operator_norm(a, 2, 2), torch.linalg.matrix_norm(a, ord=2))
    assert torch.isclose(bounds.operator_norm(a, 2, math.inf), a.norm(dim=1).max())


@given(st.integers(0, 10_000), st.integers(1, 6), st.integers(1, 7))
@PROPERTY
def test_abs_norms_are_exact_for_nonnegative_and_bound_the_signed(seed, m, n):
    a = torch.randn(m, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    b = a.abs().numpy()
    for q in (1.0, 2.0, math.inf):
        exact_abs = brute_inf_to_q(b, q)
        assert math.isclose(float(bounds.abs_operator_norm(a, math.inf, q)), exact_abs,
                            rel_tol=1e-9)
        assert brute_inf_to_q(a.numpy(), q) <= exact_abs * (1 + 1e-9)
    assert math.isclose(float(bounds.abs_operator_norm(a, 2, 1)), brute_2_to_1(b), rel_tol=1e-9)
    assert brute_2_to_1(a.numpy()) <= float(bounds.abs_operator_norm(a, 2, 1)) * (1 + 1e-9)
    assert math.isclose(float(bounds.abs_operator_norm(a, 2, 2)), float(np.linalg.norm(b, 2)),
                        rel_tol=1e-9)


def test_intractable_signed_norm_is_refused():
    with pytest.raises(ValueError, match="not tractable"):
        bounds.operator_norm(torch.ones(2, 2), math.inf, 2)


# --- T3: the global bound never increases under any mask ----------------------------------------


@given(
    kind=st.sampled_from(["gaussian", "categorical"]),
    norm=st.sampled_from(NORMS),
    activation=st.sampled_from(["tanh", "relu"]),
    seed=st.integers(0, 10_000),
    first=st.floats(0.0, 0.9),
    extra=st.floats(0.0, 0.9),
)
@PROPERTY
def test_global_bound_is_monotone_under_any_mask(kind, norm, activation, seed, first, extra):
    policy = make_policy(kind, seed, activation=activation)
    generator = torch.Generator().manual_seed(seed + 1)
    masks = random_masks(policy, first, generator)
    nested = [m * (torch.rand(m.shape, generator=generator) >= extra) for m in masks]
    values = {}
    for name, mask_set in [("dense", None), ("pruned", masks), ("more", nested)]:
        copy = make_policy(kind, seed, activation=activation)
        if mask_set is not None:
            apply_masks(copy, mask_set)
        values[name] = (
            bounds.lipschitz_abs_product(copy, norm),
            bounds.lipschitz_layerwise(copy, norm),
            bounds.certified_tv(copy, 0.1, norm),
        )
    for i in range(3):
        assert values["pruned"][i] <= values["dense"][i] * (1 + 1e-12)
        assert values["more"][i] <= values["pruned"][i] * (1 + 1e-12)


def test_spectral_product_is_not_monotone():
    """The textbook counterexample: zeroing W[1, 1] of [[1, 1], [1, -1]] raises ||W||_2."""
    net = nn.Sequential(nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 1.0], [1.0, -1.0]]))
    before = bounds.lipschitz_spectral_product(net, "2")
    with torch.no_grad():
        net[0].weight[1, 1] = 0.0
    after = bounds.lipschitz_spectral_product(net, "2")
    assert math.isclose(before, math.sqrt(2)) and math.isclose(after, (1 + math.sqrt(5)) / 2)
    assert after > before
    assert not bounds.MONOTONE_UNDER_PRUNING["spectral_product"]
    assert bounds.MONOTONE_UNDER_PRUNING["abs_product"]


@given(st.integers(0, 10_000), st.sampled_from(["tanh", "relu"]))
@PROPERTY
def test_every_jacobian_is_dominated_by_the_abs_product(seed, activation):
    policy = make_policy("gaussian", seed, activation=activation)
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
    product = bounds.abs_product(policy)  # includes Sigma^{-1/2}
    scale = torch.exp(-policy.log_std.detach().double())
    for row in x:
        jac = torch.autograd.functional.jacobian(policy, row).double() * scale[:, None]
        assert (jac.abs() <= product + 1e-9).all()


@given(st.sampled_from(["gaussian", "categorical"]), st.sampled_from(NORMS),
       st.integers(0, 10_000))
@PROPERTY
def test_bound_ordering_layerwise_above_abs_product(kind, norm, seed):
    policy = make_policy(kind, seed)
    assert bounds.lipschitz_abs_product(policy, norm) <= bounds.lipschitz_layerwise(
        policy, norm) * (1 + 1e-12)


# --- T4: the sandwich attack <= local <= global -----------------------------------------------


@given(
    kind=st.sampled_from(["gaussian", "categorical"]),
    norm=st.sampled_from(NORMS),
    activation=st.sampled_from(["tanh", "relu"]),
    seed=st.integers(0, 10_000),
    eps=st.sampled_from([0.01, 0.05, 0.2]),
)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_sandwich_pgd_below_local_below_global(kind, norm, activation, seed, eps):
    policy = make_policy(kind, seed, activation=activation, scale=2.0)
    states = torch.randn(16, 5, generator=torch.Generator().manual_seed(seed))
    _, attacked = maximize_tv(policy, states, eps, norm, steps=20, restarts=3, seed=seed)
    local = bounds.certified_tv(policy, eps, norm, "local", states)
    global_ = bounds.certified_tv(policy, eps, norm)
    assert (attacked <= local + 1e-9).all()
    assert (local <= global_ + 1e-9).all()


@given(st.sampled_from(["gaussian", "categorical"]), st.sampled_from(NORMS),
       st.integers(0, 10_000))
@settings(max_examples=15, deadline=None)
def test_local_bound_sound_against_dense_sampling(kind, norm, seed):
    """Monte Carlo over the ball (including its vertices for l_inf) never beats the bound."""
    from pruningrl.attacks import random_in_ball

    eps = 0.3
    policy = make_policy(kind, seed, scale=2.0)
    state = torch.randn(1, 5, generator=torch.Generator().manual_seed(seed))
    generator = torch.Generator().manual_seed(seed)
    delta = random_in_ball((4096, 5), eps, norm, generator)
    if norm == "inf":
        delta[:32] = eps * torch.tensor(list(itertools.product([-1.0, 1.0], repeat=5)))
    with torch.no_grad():
        tv = bounds.policy_tv(policy, state.expand(4096, -1), state + delta)
    local = bounds.certified_tv(policy, eps, norm, "local", state)
    assert float(tv.max()) <= float(local[0]) + 1e-9


def test_local_is_not_monotone_under_pruning_somewhere():
    """Pruning can move a pre-activation out of saturation: the local bound can rise."""
    wide = nn.Sequential(nn.Linear(2, 1), nn.Tanh(), nn.Linear(1, 1))
    with torch.no_grad():
        wide[0].weight.copy_(torch.tensor([[1.0, 20.0]]))
        wide[0].bias.zero_()
        wide[2].weight.fill_(1.0)
    s = torch.tensor([[0.0, 1.0]])  # second input pushes the unit into saturation
    dense = float(bounds.local_lipschitz(wide, s, 0.01, "inf")[0])
    with torch.no_grad():
        wide[0].weight[0, 1] = 0.0
    pruned = float(bounds.local_lipschitz(wide, s, 0.01, "inf")[0])
    assert pruned > dense
    assert not bounds.MONOTONE_UNDER_PRUNING["local"]


# --- T1 and T2: closed forms against Monte Carlo ------------------------------------------------


@given(st.integers(0, 10_000), st.integers(1, 4), st.floats(0.05, 4.0))
@settings(max_examples=15, deadline=None)
def test_gaussian_tv_closed_form_matches_monte_carlo(seed, dim, distance):
    generator = torch.Generator().manual_seed(seed)
    std = torch.rand(dim, generator=generator, dtype=torch.float64) + 0.2
    direction = torch.randn(dim, generator=generator, dtype=torch.float64)
    m1 = torch.randn(dim, generator=generator, dtype=torch.float64)
    m2 = m1 + distance * std * direction / direction.norm()  # Mahalanobis distance = distance
    p = torch.distributions.Independent(torch.distributions.Normal(m1, std), 1)
    q = torch.distributions.Independent(torch.distributions.Normal(m2, std), 1)
    torch.manual_seed(seed)
    x = p.sample((200_000,))
    integrand = torch.clamp(1 - torch.exp(q.log_prob(x) - p.log_prob(x)), min=0)  # TV = E_p(1-q/p)+
    estimate, stderr = float(integrand.mean()), float(integrand.std() / math.sqrt(len(x)))
    exact = float(bounds.gaussian_tv(distance))
    assert abs(estimate - exact) <= 5 * stderr + 1e-4
    assert exact <= float(bounds.gaussian_tv_linear_bound(distance)) + 1e-12
    assert exact <= float(bounds.gaussian_tv_pinsker_bound(distance)) + 1e-12


@given(st.integers(0, 10_000), st.integers(2, 6), st.floats(0.01, 10.0))
@PROPERTY
def test_softmax_tv_bound_holds(seed, k, size):
    generator = torch.Generator().manual_seed(seed)
    z = 3 * torch.randn(k, generator=generator, dtype=torch.float64)
    v = size * torch.randn(k, generator=generator, dtype=torch.float64)
    tv = float(bounds.categorical_tv(z, z + v))
    assert tv <= float(bounds.softmax_tv_bound(bounds.oscillation(v))) + 1e-12
    assert tv <= float(v.abs().max()) / 2 + 1e-12


def test_categorical_tv_matches_monte_carlo():
    torch.manual_seed(0)
    za, zb = torch.tensor([1.0, 0.0, -1.0]), torch.tensor([0.0, 0.5, 0.2])
    pa, pb = torch.softmax(za, 0), torch.softmax(zb, 0)
    x = torch.distributions.Categorical(pa).sample((200_000,))
    estimate = float(torch.clamp(1 - pb[x] / pa[x], min=0).mean())
    assert abs(estimate - float(bounds.categorical_tv(za, zb))) < 0.005


def test_softmax_bound_is_tight_for_two_actions():
    """For two actions and tiny logit shifts, TV ~ osc/4 at equal probabilities."""
    z = torch.zeros(2, dtype=torch.float64)
    v = torch.tensor([1e-4, -1e-4], dtype=torch.float64)
    ratio = float(bounds.categorical_tv(z, z + v)) / float(bounds.oscillation(v) / 4)
    assert 0.999 < ratio <= 1.0


# --- T0 and T6 ----------------------------------------------------------------------------------


def test_value_loss_constant_and_regret_terms():
    assert math.isclose(bounds.value_loss_constant(0.0, 1.0, 0.9), 100.0)
    terms = bounds.regret_decomposition(10.0, 8.0, 7.5, 3.0)
    assert (terms.clean_regret, terms.pruning_loss, terms.robustness_gap) == (2.0, 0.5, 4.5)
    assert terms.total == 10.0 - 3.0
    with pytest.raises(ValueError, match="gamma"):
        bounds.value_loss_constant(0, 1, 1.0)


# --- bad input ----------------------------------------------------------------------------------


def test_bad_input_raises_clear_value_errors():
    policy = GaussianPolicy(3, 2, (4,))
    with pytest.raises(ValueError, match="eps"):
        bounds.certified_tv(policy, -0.1)
    with pytest.raises(ValueError, match="norm"):
        bounds.certified_tv(policy, 0.1, norm="1")
    with pytest.raises(ValueError, match=r"shape \(batch, 3\)"):
        bounds.certified_tv(policy, 0.1, method="local", states=torch.zeros(4, 5))
    with pytest.raises(ValueError, match="method"):
        bounds.certified_tv(policy, 0.1, method="exact")
    with pytest.raises(ValueError, match="Sigmoid"):
        bounds.lipschitz_abs_product(nn.Sequential(nn.Linear(2, 2), nn.Sigmoid(), nn.Linear(2, 1)))
    with pytest.raises(ValueError, match="Conv1d"):
        bounds.lipschitz_abs_product(nn.Conv1d(1, 1, 3))
    with pytest.raises(ValueError, match="Conv1d"):
        bounds.lipschitz_abs_product(nn.Sequential(nn.Conv1d(1, 1, 3)))
    with pytest.raises(ValueError, match="needs states"):
        bounds.certified_tv(policy, 0.1, method="local")


def test_global_certificate_is_fast_enough_to_call_often():
    """Not a timing test: only checks the call works on the 64-64 shape the benchmark times."""
    policy = GaussianPolicy(11, 3)
    assert 0.0 <= bounds.certified_tv(policy, 0.075) <= 1.0


# --- a bare nn.Sequential, read as the policy its caller states ---------------------------------


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_a_bare_sequential_certifies_as_the_policy_it_is_stated_to_be(kind, activation):
    policy = make_policy(kind, 3, activation=activation)
    stated = {"kind": kind, "log_std": -0.5 if kind == "gaussian" else None}
    net = policy.net  # the very network inside the policy, bare
    states = torch.randn(64, 5)
    for norm in NORMS:
        assert bounds.certified_tv(net, 0.1, norm, **stated) == bounds.certified_tv(
            policy, 0.1, norm)
        torch.testing.assert_close(
            bounds.certified_tv(net, 0.1, norm, "local", states, **stated),
            bounds.certified_tv(policy, 0.1, norm, "local", states), rtol=0, atol=0)
        for lipschitz in (bounds.lipschitz_abs_product, bounds.lipschitz_layerwise,
                          bounds.lipschitz_spectral_product):
            assert lipschitz(net, norm, **stated) == lipschitz(policy, norm)
    assert bounds.expected_certified_tv(net, states, 0.1, **stated) == \
        bounds.expected_certified_tv(policy, states, 0.1)
    torch.testing.assert_close(bounds.policy_tv(net, states, states + 0.05, **stated),
                               bounds.policy_tv(policy, states, states + 0.05))
    assert not bounds.is_constant(net, **stated)


def test_a_bare_sequential_needs_its_kind_for_a_total_variation():
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    assert bounds.lipschitz_abs_product(net) > 0  # the raw statistic needs no kind
    with pytest.raises(ValueError, match="kind"):
        bounds.certified_tv(net, 0.1)
    with pytest.raises(ValueError, match="log_std"):
        bounds.certified_tv(net, 0.1, kind="gaussian")
    with pytest.raises(ValueError, match="log_std"):
        bounds.certified_tv(net, 0.1, kind="categorical", log_std=0.0)
    with pytest.raises(ValueError, match="log_std must be"):
        bounds.certified_tv(net, 0.1, kind="gaussian", log_std=torch.zeros(3))
    with pytest.raises(ValueError, match="carries its own kind"):
        bounds.certified_tv(make_policy("gaussian", 0), 0.1, kind="categorical")
    assert 0 < bounds.certified_tv(net, 0.1, kind="gaussian", log_std=[0.0, -1.0]) < 1


def test_a_policy_pruned_of_its_whole_output_layer_is_constant():
    policy = make_policy("categorical", 1)
    assert not bounds.is_constant(policy)
    masks = [torch.ones_like(layer.weight) for layer in policy.net if isinstance(layer, nn.Linear)]
    masks[-1].zero_()
    apply_masks(policy, masks)
    assert bounds.is_constant(policy) and bounds.certified_tv(policy, 1.0) == 0.0
    states = torch.randn(16, 5)
    assert torch.equal(policy(states), policy(states + 3.0))  # it ignores the state
