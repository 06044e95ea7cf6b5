"""The hand-derived PPO gradients equal autograd's, for every policy kind, activation and mask."""

import pytest
import torch

from pruningrl.gradients import ppo_gradients
from pruningrl.policies import CategoricalPolicy, GaussianPolicy, ValueNetwork
from pruningrl.ppo import clipped_surrogate, log_prob_and_entropy
from pruningrl.pruning import magnitude_prune, random_prune


def autograd_gradients(policy, value, obs, actions, old, adv, ret, clip, vf, ent):
    params = [*policy.parameters(), *value.parameters()]
    for p in params:
        p.grad = None
    log_prob, entropy = log_prob_and_entropy(policy, obs, actions)
    loss = (clipped_surrogate(log_prob, old, adv, clip)
            + vf * 0.5 * (value(obs) - ret).pow(2).mean() - ent * entropy)
    loss.backward()
    return {p: p.grad.clone() for p in params}


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("pruning", [None, "magnitude", "random"])
@pytest.mark.parametrize("ent", [0.0, 0.01])
def test_fast_gradients_equal_autograd(kind, activation, pruning, ent):
    torch.manual_seed(0)
    obs_dim, batch = 7, 64
    if kind == "gaussian":
        policy = GaussianPolicy(obs_dim, 3, (32, 16), activation, log_std_init=-0.3)
        with torch.no_grad():
            policy.net[-1].weight.normal_(0, 0.3)
        actions = torch.randn(batch, 3)
    else:
        policy = CategoricalPolicy(obs_dim, 4, (32, 16), activation)
        with torch.no_grad():
            policy.net[-1].weight.normal_(0, 0.3)
        actions = torch.randint(0, 4, (batch,)).float()
    value = ValueNetwork(obs_dim, (32, 16), activation)
    if pruning == "magnitude":
        magnitude_prune(policy, 0.5)
    elif pruning == "random":
        random_prune(policy, 0.3, seed=1)
    obs = torch.randn(batch, obs_dim)
    with torch.no_grad():
        log_prob, _ = log_prob_and_entropy(policy, obs, actions)
    old = log_prob + 0.4 * torch.randn(batch)  # many ratios beyond the clip range
    adv, ret = torch.randn(batch), torch.randn(batch)
    expected = autograd_gradients(policy, value, obs, actions, old, adv, ret, 0.2, 0.5, ent)
    got = ppo_gradients(policy, value, obs, actions, old, adv, ret, 0.2, 0.5, ent)
    assert set(got) == set(expected)
    for param, grad in expected.items():
        torch.testing.assert_close(got[param], grad, rtol=1e-4, atol=1e-6)
    if pruning:  # pruned entries get no gradient
        for layer in policy.net:
            if hasattr(layer, "weight_mask"):
                assert torch.all(got[layer.weight_orig][layer.weight_mask == 0] == 0)


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
@pytest.mark.parametrize("pruned", [False, True])
def test_sa_gradients_equal_autograd(kind, pruned):
    from pruningrl.gradients import NumpyMLP, divergence_gradients, sa_gradients
    from pruningrl.ppo import policy_divergence

    torch.manual_seed(2)
    policy = (GaussianPolicy(6, 2, (16, 16), log_std_init=-0.5) if kind == "gaussian"
              else CategoricalPolicy(6, 3, (16, 16)))
    with torch.no_grad():
        policy.net[-1].weight.normal_(0, 0.5)
    if pruned:
        magnitude_prune(policy, 0.4, scope="layer")
    states = torch.randn(32, 6)
    attacked = (states + 0.1 * torch.randn(32, 6)).requires_grad_(True)
    # the inner maximisation's step: d D / d s'
    with torch.no_grad():
        clean = policy.net(states)
    divergence = policy_divergence(policy, clean, policy.net(attacked))
    (expected_input,) = torch.autograd.grad(divergence.sum(), attacked)
    mlp = NumpyMLP(policy.net)  # float64: the inner loop's numpy path, pruned weights included
    s_attacked = attacked.detach().double().numpy()
    hs = mlp.hidden(s_attacked)
    torch.testing.assert_close(torch.from_numpy(mlp.output(hs)).float(),
                               policy.net(attacked).detach())
    _, grad_out, _ = divergence_gradients(policy, clean.double().numpy(), mlp.output(hs))
    got_input = mlp.vjp(s_attacked, grad_out, hs)
    torch.testing.assert_close(torch.from_numpy(got_input).float(), expected_input,
                               rtol=1e-4, atol=1e-6)
    # the outer term: d/dtheta of kappa * mean D with s' held fixed
    params = list(policy.parameters())
    loss = 0.3 * policy_divergence(policy, policy.net(states),
                                   policy.net(attacked.detach())).mean()
    expected = dict(zip(params, torch.autograd.grad(loss, params, allow_unused=True),
                        strict=True))
    got, got_divergence = sa_gradients(policy, states, attacked.detach(), 0.3)
    assert got_divergence == pytest.approx(float(divergence.detach().mean()), rel=1e-4)
    for param, grad in expected.items():
        if grad is None:  # the log-std is held fixed inside the divergence
            assert param not in got
        else:
            torch.testing.assert_close(got[param], grad, rtol=1e-4, atol=1e-6)


def test_sa_gradients_reach_the_log_std_when_it_is_not_held_fixed():
    """SA-PPO's own setting (robust_ppo_detach_stdev false): the regularizer's gradient also
    reaches the Gaussian's log-std, in the closed form as in autograd."""
    from pruningrl.gradients import sa_gradients
    from pruningrl.ppo import policy_divergence

    torch.manual_seed(4)
    policy = GaussianPolicy(5, 2, (8, 8), log_std_init=-0.7)
    states = torch.randn(16, 5)
    attacked = states + 0.1 * torch.randn(16, 5)
    params = list(policy.parameters())
    loss = 0.2 * policy_divergence(policy, policy.net(states), policy.net(attacked),
                                   detach_std=False).mean()
    expected = dict(zip(params, torch.autograd.grad(loss, params), strict=True))
    got, _ = sa_gradients(policy, states, attacked, 0.2, detach_std=False)
    assert policy.log_std in got and float(got[policy.log_std].abs().max()) > 0
    for param, grad in expected.items():
        torch.testing.assert_close(got[param], grad, rtol=1e-4, atol=1e-6)
