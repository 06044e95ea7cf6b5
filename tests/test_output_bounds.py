"""Soundness and tightness of the output bounds (IBP, CROWN, alpha-CROWN) and the certificates
built on them: never below a strong PGD search or dense sampling in the ball, in both norms,
on random networks and on shipped agents."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pruningrl import bounds
from pruningrl.evaluation import visited_states
from pruningrl.output_bounds import METHODS, Network, output_box, relax
from pruningrl.zoo import load

PROPERTY = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NORMS = [math.inf, 2.0]
#: rounding slack: every quantity is float64 and of order 1-100
SLACK = 1e-9


def random_network(seed: int, activation: str, depth: int, width: int, in_dim: int,
                   out_dim: int) -> Network:
    g = torch.Generator().manual_seed(seed)
    sizes = [in_dim, *[width] * depth, out_dim]
    weights = tuple(torch.randn(o, i, generator=g, dtype=torch.float64) * 1.5 / math.sqrt(i)
                    for i, o in zip(sizes[:-1], sizes[1:], strict=True))
    biases = tuple(torch.randn(o, generator=g, dtype=torch.float64) * 0.5 for o in sizes[1:])
    return Network(weights, biases, activation)


def forward(net: Network, x: torch.Tensor) -> torch.Tensor:
    for weight, bias in zip(net.weights[:-1], net.biases[:-1], strict=True):
        x = x @ weight.T + bias
        x = torch.tanh(x) if net.activation == "tanh" else torch.relu(x)
    return x @ net.weights[-1].T + net.biases[-1]


def project(delta: torch.Tensor, eps: float, p: float) -> torch.Tensor:
    if p == math.inf:
        return delta.clamp(-eps, eps)
    norm = delta.norm(dim=-1, keepdim=True).clamp(min=1e-300)
    return delta * torch.clamp(eps / norm, max=1.0)


def in_ball(count: int, states: torch.Tensor, eps: float, p: float, g) -> torch.Tensor:
    """Dense samples of each state's ball (batch, count, n): uniform directions, the boundary,
    and for l_inf the corners."""
    shape = (states.shape[0], count, states.shape[1])
    raw = torch.randn(shape, generator=g, dtype=torch.float64)
    if p == math.inf:
        delta = eps * (2 * torch.rand(shape, generator=g, dtype=torch.float64) - 1)
        delta[:, : count // 2] = eps * torch.sign(raw[:, : count // 2])
    else:
        scale = torch.rand(shape[:2] + (1,), generator=g, dtype=torch.float64)
        delta = eps * raw / raw.norm(dim=-1, keepdim=True) * scale ** (1 / shape[2])
        delta[:, : count // 2] = eps * raw[:, : count // 2] / raw[:, : count // 2].norm(
            dim=-1, keepdim=True)
    return states.unsqueeze(1) + delta


def pgd_extremes(function, states: torch.Tensor, eps: float, p: float, outputs: int,
                 steps: int = 60, restarts: int = 4, seed: int = 0) -> tuple:
    """The smallest and largest value of each output of ``function`` that PGD finds in each
    state's ball: several restarts, sign (l_inf) or normalised (l_2) gradient steps."""
    g = torch.Generator().manual_seed(seed)
    lows, highs = [], []
    for k in range(outputs):
        for sign, found in ((1.0, highs), (-1.0, lows)):
            best = None
            for _ in range(restarts):
                delta = project(eps * (2 * torch.rand(states.shape, generator=g,
                                                       dtype=torch.float64) - 1), eps, p)
                for step in range(steps):
                    delta.requires_grad_(True)
                    value = sign * function(states + delta)[:, k]
                    (grad,) = torch.autograd.grad(value.sum(), delta)
                    size = 2.5 * eps / steps * (1 - step / steps) + eps / steps / 10
                    direction = grad.sign() if p == math.inf else grad / grad.norm(
                        dim=-1, keepdim=True).clamp(min=1e-300)
                    delta = project(delta.detach() + size * direction, eps, p)
                with torch.no_grad():
                    value = sign * function(states + delta)[:, k]
                best = value if best is None else torch.maximum(best, value)
            found.append(sign * best)
    return torch.stack(lows, -1), torch.stack(highs, -1)


@PROPERTY
@given(seed=st.integers(0, 10_000), activation=st.sampled_from(["tanh", "relu"]),
       depth=st.integers(1, 3), width=st.integers(1, 8), in_dim=st.integers(1, 5),
       out_dim=st.integers(1, 4), eps=st.floats(0.0, 1.5), p=st.sampled_from(NORMS))
def test_every_box_holds_every_sampled_point_and_crown_sits_inside_ibp(
        seed, activation, depth, width, in_dim, out_dim, eps, p):
    net = random_network(seed, activation, depth, width, in_dim, out_dim)
    g = torch.Generator().manual_seed(seed + 1)
    states = torch.randn(4, in_dim, generator=g, dtype=torch.float64)
    samples = forward(net, in_ball(400, states, eps, p, g))
    boxes = {m: output_box(net, states, eps, p, m, alpha_steps=5) for m in METHODS}
    for lower, upper in boxes.values():
        assert (samples >= lower.unsqueeze(1) - SLACK).all()
        assert (samples <= upper.unsqueeze(1) + SLACK).all()
    for tighter, looser in (("crown", "ibp"), ("alpha-crown", "crown")):
        assert (boxes[tighter][0] >= boxes[looser][0]).all()
        assert (boxes[tighter][1] <= boxes[looser][1]).all()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), activation=st.sampled_from(["tanh", "relu"]),
       eps=st.floats(0.01, 1.0), p=st.sampled_from(NORMS))
def test_crown_and_alpha_crown_are_never_below_a_strong_pgd_search(seed, activation, eps, p):
    net = random_network(seed, activation, 2, 16, 4, 3)
    states = torch.randn(6, 4, generator=torch.Generator().manual_seed(seed),
                         dtype=torch.float64)
    low, high = pgd_extremes(lambda x: forward(net, x), states, eps, p, 3, seed=seed)
    for method in ("crown", "alpha-crown"):
        lower, upper = output_box(net, states, eps, p, method, alpha_steps=10)
        assert (lower <= low + SLACK).all() and (upper >= high - SLACK).all(), method


@PROPERTY
@given(low=st.floats(-40, 6), width=st.floats(0, 50), activation=st.sampled_from(["tanh", "relu"]),
       share_low=st.floats(0, 1), share_up=st.floats(0, 1))
def test_the_relaxation_lines_enclose_the_activation_for_any_free_parameter(
        low, width, activation, share_low, share_up):
    lo = torch.tensor([low], dtype=torch.float64)
    hi = lo + width
    for alpha in (None, {"lower": torch.tensor([share_low], dtype=torch.float64),
                         "upper": torch.tensor([share_up], dtype=torch.float64)}):
        relaxation = relax(lo, hi, activation, alpha)
        z = torch.linspace(low, low + width, 2001, dtype=torch.float64)
        value = torch.tanh(z) if activation == "tanh" else torch.relu(z)
        (a_low, c_low), (a_up, c_up) = relaxation.lower, relaxation.upper
        assert (a_low * z + c_low <= value + SLACK).all()
        assert (a_up * z + c_up >= value - SLACK).all()


@pytest.mark.parametrize("agent_id, eps", [("Hopper-v5/ppo/seed0", 0.01),
                                           ("Hopper-v5/sappo/seed0", 0.075),
                                           ("CartPole-v1/ppo/seed0", 0.1)])
@pytest.mark.parametrize("p", NORMS)
def test_shipped_agents_crown_certificates_are_above_pgd(agent_id, eps, p):
    """On 40 visited states: each output's deviation that PGD finds never exceeds CROWN's or
    alpha-CROWN's bound on it, the TV that PGD finds never exceeds the certified TV, and for
    a categorical agent no logit difference moves further than its certified bound."""
    from pruningrl.attacks import maximize_tv

    agent = load(agent_id)
    states = visited_states(agent, 40, seed=0).to(torch.float64)
    view = bounds.mlp_view(agent.policy)
    net = Network(view.weights, view.biases, view.activation)
    centre = forward(net, states)
    low, high = pgd_extremes(lambda x: forward(net, x), states, eps, p, centre.shape[1],
                             steps=40, restarts=3)
    deviation = torch.maximum(high - centre, centre - low)
    _, attacked_tv = maximize_tv(agent.policy, states, eps, "inf" if p == math.inf else "2",
                                 steps=40, restarts=3)
    for method in ("crown", "alpha-crown"):
        assert (bounds.output_deviation(agent.policy, states, eps, p, method)
                >= deviation - SLACK).all()
        certified = bounds.certified_tv(agent.policy, eps, p, method, states)
        assert (certified >= attacked_tv - 1e-6).all()  # maximize_tv runs in float32
    if agent.discrete:
        spec = bounds.pairwise_spec(centre.shape[1])
        found = pgd_extremes(lambda x: forward(net, x) @ spec.T, states, eps, p,
                             spec.shape[0], steps=40, restarts=3)[1]
        statistic = (found - centre @ spec.T).amax(-1)
        crown = bounds.certified_statistic(agent.policy, states, eps, p, "crown")
        assert (crown >= statistic - SLACK).all()


@pytest.mark.parametrize("agent_id, eps, limit", [("Hopper-v5/sappo/seed0", 0.075, 0.40),
                                                  ("Walker2d-v5/sappo/seed0", 0.05, 0.50),
                                                  ("Hopper-v5/ppo/seed0", 0.01, 0.17)])
def test_crown_is_tight_on_the_shipped_agents(agent_id, eps, limit):
    """Mean CROWN TV over 1,000 visited states, l_inf, at or under what the mathematics of a
    linear relaxation gives on these networks; PGD's lower bound on the truth is below it."""
    agent = load(agent_id)
    states = visited_states(agent, 1000, seed=0)
    crown = bounds.certified_tv(agent.policy, eps, "inf", "crown", states)
    local = bounds.certified_tv(agent.policy, eps, "inf", "local", states)
    assert float(crown.mean()) <= limit < float(local.mean())
    from pruningrl.attacks import maximize_tv

    _, attacked_tv = maximize_tv(agent.policy, states[:100], eps, "inf", steps=20, restarts=2)
    assert (attacked_tv <= crown[:100] + 1e-6).all()
    assert float(attacked_tv.mean()) > 0.1 * float(crown[:100].mean())  # not vacuous either


def test_a_certified_action_cannot_be_flipped_and_the_radius_is_certified():
    agent = load("CartPole-v1/ppo/seed0")
    states = visited_states(agent, 60, seed=0).to(torch.float64)
    radius = bounds.certified_radii(agent.policy, states, criterion="action", eps_max=2.0)
    assert (radius > 0).any() and (radius <= 2.0).all()
    certified = bounds.certified_action(agent.policy, radius, "inf", states)
    assert certified[radius > 0].all()
    view = bounds.mlp_view(agent.policy)
    net = Network(view.weights, view.biases, view.activation)
    chosen = forward(net, states).argmax(-1)
    for k in torch.nonzero(radius > 0).flatten()[:20]:
        x = in_ball(2000, states[k:k + 1], float(radius[k]), math.inf,
                    torch.Generator().manual_seed(int(k)))[0]
        assert (forward(net, x).argmax(-1) == chosen[k]).all()


def test_per_state_eps_and_bad_input():
    policy = bounds.mlp_view(load("Hopper-v5/ppo/seed0").policy)
    states = torch.randn(5, 11, dtype=torch.float64)
    eps = torch.tensor([0.0, 0.01, 0.02, 0.05, 0.1], dtype=torch.float64)
    per_state = bounds.certified_tv(policy, eps, "inf", "crown", states)
    one_by_one = torch.stack([bounds.certified_tv(policy, float(e), "inf", "crown",
                                                  states[k:k + 1])[0]
                              for k, e in enumerate(eps)])
    torch.testing.assert_close(per_state, one_by_one, rtol=1e-12, atol=1e-12)
    assert float(per_state[0]) == 0.0
    with pytest.raises(ValueError, match="unknown bound method"):
        output_box(Network(policy.weights, policy.biases, "tanh"), states, 0.1, 2.0, "fast")
    with pytest.raises(ValueError, match="needs states"):
        bounds.certified_tv(policy, 0.1, "inf", "crown")
    with pytest.raises(ValueError, match="eps must be"):
        bounds.certified_tv(policy, -eps, "inf", "crown", states)


@pytest.mark.parametrize("agent_id", ["Hopper-v5/sappo/seed0", "CartPole-v1/ppo/seed0",
                                      "Acrobot-v1/ppo/seed0"])
def test_one_box_gives_the_same_certificates_as_the_separate_calls(agent_id):
    agent = load(agent_id)
    states = visited_states(agent, 100, seed=0)
    eps = 0.05 if not agent.discrete else 0.2
    together = bounds.certify_states(agent.policy, eps, "inf", states)
    torch.testing.assert_close(together.tv, bounds.certified_tv(agent.policy, eps, "inf",
                                                                "crown", states))
    if agent.discrete:
        separate = bounds.certified_action(agent.policy, eps, "inf", states)
        assert torch.equal(together.certified_action, separate)
        assert 0 < int(separate.sum()) < len(separate)  # the check can tell them apart
    else:
        torch.testing.assert_close(together.action_deviation, bounds.certified_action_deviation(
            agent.policy, eps, "inf", states))
