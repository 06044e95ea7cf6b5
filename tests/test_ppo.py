"""PPO: the losses against their definitions, GAE against a naive recursion, the SA-PPO inner
maximization, and short training runs (learning, layout independence, interruption and resume,
masks that survive optimizer steps)."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Categorical, Independent, Normal

from pruningrl.agent import load_agent
from pruningrl.attacks import assert_in_ball, project_to_ball, random_in_ball
from pruningrl.normalization import ObservationNormalizer, RewardScaler, RunningMeanStd
from pruningrl.policies import CategoricalPolicy, GaussianPolicy
from pruningrl.ppo import (
    PPOConfig,
    clipped_surrogate,
    gae,
    log_prob_and_entropy,
    policy_divergence,
    sa_regularizer,
    train,
    train_state_path,
    worst_case_states,
)
from pruningrl.pruning import magnitude_prune, sparsity

# ----------------------------------------------------------------------------- normalization


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 20), min_size=1, max_size=6), st.integers(0, 2**16))
def test_running_moments_merge_exactly(sizes, seed):
    rng = np.random.default_rng(seed)
    batches = [rng.normal(3.0, 2.0, size=(n, 4)) for n in sizes]
    streamed, at_once = RunningMeanStd((4,)), RunningMeanStd((4,))
    for batch in batches:
        streamed.update(batch)
    data = np.concatenate(batches)
    at_once.update(data)
    np.testing.assert_allclose(streamed.mean, at_once.mean, rtol=1e-10)
    np.testing.assert_allclose(streamed.var, at_once.var, rtol=1e-10)
    # the prior (count 1e-4 at mean 0, variance 1) is negligible against the data
    pooled_mean = data.sum(0) / (len(data) + 1e-4)
    np.testing.assert_allclose(at_once.mean, pooled_mean, rtol=1e-10)
    np.testing.assert_allclose(at_once.var, data.var(0), rtol=0.05, atol=1e-3 * 9 + 1e-3)


def test_observation_normalizer_clips_and_freezes():
    norm = ObservationNormalizer(3, clip=5.0)
    norm.update(np.random.default_rng(0).normal(size=(1000, 3)))
    mean = norm.rms.mean.copy()
    out = norm(np.array([[100.0, -100.0, 0.0]]))
    assert out.dtype == np.float32 and out[0, 0] == 5.0 and out[0, 1] == -5.0
    np.testing.assert_array_equal(norm.rms.mean, mean)  # calling without update= changes nothing


def test_reward_scaler_restarts_returns_at_episode_ends():
    scaler = RewardScaler(num_envs=2, gamma=0.5)
    scaler(np.array([1.0, 1.0]), np.array([False, True]))
    np.testing.assert_allclose(scaler.returns, [1.0, 0.0])
    scaler(np.array([1.0, 1.0]), np.array([False, False]))
    np.testing.assert_allclose(scaler.returns, [1.5, 1.0])


# ----------------------------------------------------------------------------- losses


def test_log_prob_and_entropy_match_torch_distributions():
    torch.manual_seed(0)
    gaussian = GaussianPolicy(5, 3, log_std_init=-0.4)
    obs, actions = torch.randn(16, 5), torch.randn(16, 3)
    log_prob, entropy = log_prob_and_entropy(gaussian, obs, actions)
    reference = Independent(Normal(gaussian(obs), gaussian.log_std.exp()), 1)
    torch.testing.assert_close(log_prob, reference.log_prob(actions))
    torch.testing.assert_close(entropy, reference.entropy().mean())
    categorical = CategoricalPolicy(5, 4)
    with torch.no_grad():
        for p in categorical.parameters():
            p.normal_()
    discrete = torch.randint(0, 4, (16,))
    log_prob, entropy = log_prob_and_entropy(categorical, obs, discrete)
    reference = Categorical(logits=categorical(obs))
    torch.testing.assert_close(log_prob, reference.log_prob(discrete))
    torch.testing.assert_close(entropy, reference.entropy().mean())


def test_clipped_surrogate_has_no_gradient_beyond_the_clip():
    old = torch.zeros(4)
    # ratios e^{0.5} > 1.2 with positive advantages, e^{-0.5} < 0.8 with negative ones: clipped
    log_prob = torch.tensor([0.5, 0.5, -0.5, -0.5], requires_grad=True)
    advantages = torch.tensor([1.0, 2.0, -1.0, -2.0])
    clipped_surrogate(log_prob, old, advantages, 0.2).backward()
    assert torch.all(log_prob.grad == 0)
    # inside the trust region the gradient is -A r / n
    log_prob = torch.tensor([0.1, -0.1], requires_grad=True)
    clipped_surrogate(log_prob, torch.zeros(2), torch.tensor([1.0, -1.0]), 0.2).backward()
    expected = -torch.tensor([1.0, -1.0]) * torch.exp(torch.tensor([0.1, -0.1])) / 2
    torch.testing.assert_close(log_prob.grad, expected)


def naive_gae(rewards, values, dones, last, gamma, lam):
    T, N = rewards.shape
    out = np.zeros((T, N))
    for i in range(N):
        for t in range(T):
            total, weight, live = 0.0, 1.0, True
            for k in range(t, T):  # A_t = sum_k (gamma lam)^{k-t} delta_k within the episode
                nxt = values[k + 1, i] if k + 1 < T else last[i]
                delta = rewards[k, i] + gamma * nxt * (1 - dones[k, i]) - values[k, i]
                total += weight * delta
                if dones[k, i]:
                    live = False
                    break
                weight *= gamma * lam
            del live
            out[t, i] = total
    return out


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 12), st.integers(1, 3), st.floats(0.5, 1.0), st.floats(0.0, 1.0),
       st.integers(0, 2**16))
def test_gae_equals_the_naive_sum(T, N, gamma, lam, seed):
    rng = np.random.default_rng(seed)
    rewards, values = rng.normal(size=(T, N)), rng.normal(size=(T, N))
    dones, last = (rng.random((T, N)) < 0.3).astype(float), rng.normal(size=N)
    got = gae(*(torch.tensor(x) for x in (rewards, values, dones, last)), gamma, lam)
    np.testing.assert_allclose(got.numpy(), naive_gae(rewards, values, dones, last, gamma, lam),
                               atol=1e-9)


def test_gae_with_lambda_one_is_the_discounted_return_minus_the_value():
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    values = torch.tensor([[0.5], [0.2], [0.1]])
    dones = torch.zeros(3, 1)
    advantages = gae(rewards, values, dones, torch.tensor([4.0]), 0.9, 1.0)
    returns = [1 + 0.9 * 2 + 0.81 * 3 + 0.729 * 4, 2 + 0.9 * 3 + 0.81 * 4, 3 + 0.9 * 4]
    torch.testing.assert_close(advantages[:, 0] + values[:, 0], torch.tensor(returns))


# ----------------------------------------------------------------------------- SA-PPO


@pytest.mark.parametrize("method", ["pgd", "sgld"])
@pytest.mark.parametrize("norm", ["inf", "2"])
@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_worst_case_states_stay_in_the_ball_and_beat_random_points(method, norm, kind):
    torch.manual_seed(1)
    policy = GaussianPolicy(6, 2) if kind == "gaussian" else CategoricalPolicy(6, 3)
    with torch.no_grad():
        for layer in policy.net:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.normal_(0, 0.8)
    states = torch.randn(64, 6)
    eps = 0.1
    generator = torch.Generator().manual_seed(0)
    attacked = worst_case_states(policy, states, eps, norm, 10, method, generator)
    assert_in_ball(attacked - states, eps, norm)
    with torch.no_grad():
        clean = policy(states)
        found = policy_divergence(policy, clean, policy(attacked))
        best_random = torch.stack([
            policy_divergence(policy, clean, policy(
                states + random_in_ball(tuple(states.shape), eps, norm, generator)))
            for _ in range(20)]).amax(0)
    # stronger than the best of 20 random points on average, and for most states (the KL of a
    # categorical policy has more local maxima than the Gaussian's quadratic form)
    assert float(found.mean()) > float(best_random.mean())
    assert float((found >= best_random).float().mean()) > (0.75 if kind == "gaussian" else 0.6)


@pytest.mark.parametrize("norm", ["inf", "2"])
@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_worst_case_states_is_pgd_with_autograd(norm, kind):
    """The numpy inner loop takes the same steps as PGD written with autograd."""
    torch.manual_seed(3)
    policy = GaussianPolicy(6, 2) if kind == "gaussian" else CategoricalPolicy(6, 3)
    with torch.no_grad():
        policy.net[-1].weight.normal_(0, 0.5)
    magnitude_prune(policy, 0.3, scope="layer")
    states, eps, steps = torch.randn(32, 6), 0.1, 10
    got = worst_case_states(policy, states, eps, norm, steps, "pgd",
                            torch.Generator().manual_seed(0))
    with torch.no_grad():
        clean = policy.net(states)
    delta = random_in_ball(tuple(states.shape), eps, norm, torch.Generator().manual_seed(0))
    for _ in range(steps):
        d = delta.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(
            policy_divergence(policy, clean, policy.net(states + d)).sum(), d)
        direction = grad.sign() if norm == "inf" else grad / grad.norm(dim=-1, keepdim=True)
        delta = project_to_ball(delta + 2.5 * eps / steps * direction, eps, norm)
    # float32, summed in other orders by the two paths: ten steps compound their rounding to
    # about 1e-5. A wrong step would be off by up to its size, 2.5 eps / steps = 0.025.
    torch.testing.assert_close(got, states + delta, rtol=0, atol=1e-3 * eps)


def test_sa_regularizer_is_zero_at_zero_eps_and_differentiable():
    policy = CategoricalPolicy(4, 3)
    states = torch.randn(8, 4)
    assert float(sa_regularizer(policy, states, 0.0).detach()) == 0.0
    reg = sa_regularizer(policy, states, 0.2, steps=5)
    assert float(reg.detach()) >= 0.0
    reg.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.parameters())


def test_config_rejects_impossible_settings():
    with pytest.raises(ValueError, match="unknown environment"):
        PPOConfig(env_id="NoSuchEnv-v0").validate()
    with pytest.raises(ValueError, match="total_steps"):
        PPOConfig(total_steps=0).validate()
    with pytest.raises(ValueError, match="sa_eps"):
        PPOConfig(sa_reg=0.1).validate()
    with pytest.raises(ValueError, match="multiple"):
        PPOConfig(num_envs=3).validate()
    with pytest.raises(ValueError, match="unknown PPO settings"):
        PPOConfig.from_dict({"learning_rat": 1.0})


# ----------------------------------------------------------------------------- training runs

TINY = dict(env_id="CartPole-v1", steps_per_iteration=256, num_envs=4, minibatches=4,
            epochs=4, num_workers=0)


def flat(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


@pytest.mark.parametrize("env_id, sa_reg", [("CartPole-v1", 0.0), ("CartPole-v1", 0.3),
                                           ("Hopper-v5", 0.0), ("Hopper-v5", 0.3)])
def test_numpy_fast_path_trains_like_autograd(env_id, sa_reg):
    """Two iterations with the numpy gradients and with autograd end at the same weights."""
    config = dict(TINY, env_id=env_id, total_steps=512, sa_reg=sa_reg, sa_eps=0.1 * bool(sa_reg),
                  sa_ramp=0.0)
    fast = train(PPOConfig(**config), progress=False).agent
    slow = train(PPOConfig(**config, analytic_gradients=False), progress=False).agent
    for a, b in ((fast.policy, slow.policy), (fast.value, slow.value)):
        torch.testing.assert_close(flat(a), flat(b), rtol=0, atol=1e-4)


def test_cartpole_learns_in_a_few_iterations():
    result = train(PPOConfig(total_steps=40_960, **{**TINY, "steps_per_iteration": 2048,
                                                     "num_envs": 8, "minibatches": 32,
                                                     "epochs": 10}), progress=False)
    returns = [r for r in result.agent.metadata["curve"]["return"] if r is not None]
    assert returns[-1] > 3 * returns[0] and returns[-1] > 100


def test_a_run_does_not_depend_on_how_envs_map_to_workers():
    base = train(PPOConfig(total_steps=1024, **TINY), progress=False)
    split = train(PPOConfig(total_steps=1024, **{**TINY, "num_workers": 2}), progress=False)
    torch.testing.assert_close(flat(base.agent.policy), flat(split.agent.policy), rtol=0, atol=0)
    np.testing.assert_array_equal(base.agent.obs_mean, split.agent.obs_mean)


def test_gaussian_and_sa_runs_checkpoint_small_and_complete(tmp_path):
    out = tmp_path / "hopper.safetensors"
    config = PPOConfig(env_id="Hopper-v5", total_steps=512, steps_per_iteration=256, num_envs=2,
                       minibatches=4, epochs=2, num_workers=0, sa_reg=0.1, sa_eps=0.075,
                       sa_steps=2)
    train(config, out, progress=False)
    assert out.stat().st_size < 100_000
    assert not train_state_path(out).exists()  # a finished run leaves only the agent
    agent = load_agent(out)
    meta = agent.metadata
    assert meta["algorithm"] == "sappo" and meta["steps"] == 512 and meta["seed"] == 0
    assert meta["config"]["sa_eps"] == 0.075 and len(meta["curve"]["steps"]) == 2
    assert meta["code_version"]
    assert agent.obs_mean.shape == (11,) and np.all(agent.obs_var > 0)


class Interrupt:
    """A hook that presses Ctrl-C after ``at`` updates."""

    def __init__(self, at):
        self.at, self.calls = at, 0

    def __call__(self, policy, step, total):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt


def test_interrupted_run_keeps_its_checkpoint_and_resumes(tmp_path):
    out = tmp_path / "agent.safetensors"
    config = PPOConfig(total_steps=256 * 6, checkpoint_every=2, **TINY)
    result = train(config, out, hooks=[Interrupt(3)], progress=False)
    assert result.interrupted
    saved = load_agent(out)  # the checkpoint of update 2 is intact
    assert saved.metadata["steps"] == 512
    assert train_state_path(out).is_file()
    resumed = train(config, out, resume=True, progress=False)
    assert not resumed.interrupted and resumed.steps == 256 * 6
    final = load_agent(out)
    assert final.metadata["steps"] == 256 * 6 and len(final.metadata["curve"]["steps"]) == 6


def test_resume_refuses_other_settings(tmp_path):
    out = tmp_path / "agent.safetensors"
    config = PPOConfig(total_steps=256 * 4, checkpoint_every=1, **TINY)
    train(config, out, hooks=[Interrupt(2)], progress=False)
    with pytest.raises(ValueError, match="settings differ"):
        train(PPOConfig(total_steps=256 * 4, **{**TINY, "epochs": 3}), out, resume=True,
              progress=False)
    train_state_path(out).write_bytes(b"not a training state")
    with pytest.raises(ValueError, match="unreadable training state"):
        train(config, out, resume=True, progress=False)


def test_pruning_masks_survive_optimizer_steps_and_saving(tmp_path):
    def prune_once(policy, step, total):
        if step == 256:
            magnitude_prune(policy, 0.5)

    out = tmp_path / "pruned.safetensors"
    result = train(PPOConfig(total_steps=256 * 4, **TINY), out, hooks=[prune_once],
                   progress=False)
    assert math.isclose(sparsity(result.agent.policy), 0.5, abs_tol=1e-3)
    assert math.isclose(sparsity(load_agent(out).policy), 0.5, abs_tol=1e-3)


def test_vector_env_backends_step_identically():
    from pruningrl.envs import VectorEnv

    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(60, 4, 3))
    traces = []
    for workers, backend in ((0, "thread"), (2, "thread"), (2, "process")):
        with VectorEnv("Hopper-v5", 4, seed=5, num_workers=workers, backend=backend) as envs:
            obs = [envs.reset(seed=5)]
            episodes = []
            for a in actions:
                res = envs.step(a)
                obs.append(res.obs)
                episodes.extend(res.episodes)
            traces.append((np.stack(obs), sorted(episodes)))
    for obs, episodes in traces[1:]:
        np.testing.assert_array_equal(obs, traces[0][0])
        assert episodes == traces[0][1]
