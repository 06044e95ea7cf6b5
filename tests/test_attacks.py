"""The attack suite: the geometry of every attack, robust Sarsa's targets, the adversary MDPs,
and the cache of learned attackers."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pruningrl.adversaries import (
    NumpyMLP,
    OptimalAttackEnv,
    PAADEnv,
    optimal_attack_fn,
    paad_actor,
    paad_attack_fn,
    scale_to_ball,
)
from pruningrl.agent import load_agent
from pruningrl.attack_suite import ATTACKS, AttackBudget, make_attack, victim_fingerprint
from pruningrl.attacks import _pgd_descent, critic_attack, robust_sarsa_attack
from pruningrl.evaluation import evaluate
from pruningrl.policies import GaussianPolicy, ValueNetwork
from pruningrl.ppo import PPOConfig, train
from pruningrl.pruning import magnitude_prune
from pruningrl.sarsa import (
    QNetwork,
    SarsaConfig,
    Transitions,
    collect_transitions,
    sarsa_lambda_targets,
    train_robust_sarsa,
)

TINY = dict(env_id="CartPole-v1", steps_per_iteration=256, num_envs=4, minibatches=4,
            epochs=2, num_workers=0)


@pytest.fixture(scope="module")
def victim_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("victim") / "cartpole.safetensors"
    train(PPOConfig(total_steps=1024, **TINY), out, progress=False)
    return out


def _in_ball(delta: np.ndarray, eps: float, norm: str) -> bool:
    size = np.abs(delta).max(-1) if norm == "inf" else np.linalg.norm(delta, axis=-1)
    return bool(np.all(size <= eps * (1 + 1e-6) + 1e-6))  # float32 round-off near |s| = 10


# ------------------------------------------------------------------------- critic attack


@settings(deadline=None, max_examples=40)  # the first call pays torch's warm-up
@given(seed=st.integers(0, 10_000), norm=st.sampled_from(["inf", "2"]),
       activation=st.sampled_from(["tanh", "relu"]))
def test_the_numpy_critic_attack_takes_the_autograd_steps(seed, norm, activation):
    """The critic attack's numpy PGD against the same PGD through autograd: same start, same
    steps; a sign may flip where dV/ds' is ~0 in float32, so most rows must agree exactly and
    every row stays in the ball and lowers V no less than the random start."""
    torch.manual_seed(seed)
    value = ValueNetwork(11, (64, 64), activation)
    states = torch.randn(64, 11)
    eps = 0.1
    fast = critic_attack(value, states, eps, norm, generator=torch.Generator().manual_seed(seed))
    slow = _pgd_descent(lambda x: value(x), states, eps, norm, 10,
                        torch.Generator().manual_seed(seed))
    close = torch.isclose(fast, slow, atol=1e-5).all(-1).double().mean()
    assert close >= 0.9
    assert _in_ball((fast - states).numpy(), eps, norm)
    with torch.no_grad():
        assert value(fast).mean() <= value(slow).mean() + 1e-3 * value(slow).abs().mean() + 1e-4


# ------------------------------------------------------------------------- numpy victim network


@given(seed=st.integers(0, 10_000), activation=st.sampled_from(["tanh", "relu"]),
       sparsity=st.sampled_from([0.0, 0.5, 0.9]))
def test_numpy_mlp_matches_torch_and_its_input_gradient_matches_autograd(seed, activation,
                                                                          sparsity):
    torch.manual_seed(seed)
    policy = GaussianPolicy(5, 3, (16, 16), activation)
    for layer in policy.net:
        if isinstance(layer, torch.nn.Linear):
            torch.nn.init.normal_(layer.weight, std=0.7)
    if sparsity:
        magnitude_prune(policy, sparsity)
    mlp = NumpyMLP(policy.net)
    states = torch.randn(7, 5, dtype=torch.float64)
    v = torch.randn(7, 3, dtype=torch.float64)
    net64 = policy.net.double()
    np.testing.assert_allclose(mlp(states.numpy()), net64(states).detach().numpy(), atol=1e-10)
    x = states.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((net64(x) * v).sum(), x)
    np.testing.assert_allclose(mlp.vjp(states.numpy(), v.numpy()), grad.numpy(), atol=1e-10)


@given(seed=st.integers(0, 10_000), eps=st.floats(0.0, 2.0), norm=st.sampled_from(["inf", "2"]))
def test_adversary_actions_map_into_the_ball(seed, eps, norm):
    action = np.random.default_rng(seed).normal(scale=3.0, size=(20, 6))
    delta = scale_to_ball(action, eps, norm)
    assert _in_ball(delta, eps, norm)
    inside = np.clip(action, -1, 1) / (1 if norm == "inf" else math.sqrt(6))
    np.testing.assert_allclose(scale_to_ball(inside, eps, norm), eps * inside, atol=1e-12)


@given(seed=st.integers(0, 10_000), norm=st.sampled_from(["inf", "2"]))
def test_paad_actor_stays_in_the_ball_and_beats_random_perturbations(seed, norm):
    torch.manual_seed(seed)
    policy = GaussianPolicy(6, 3, (32, 32))
    for layer in policy.net:
        if isinstance(layer, torch.nn.Linear):
            torch.nn.init.normal_(layer.weight, std=0.5)
    mlp = NumpyMLP(policy.net)
    rng = np.random.default_rng(seed)
    states, directions = rng.normal(size=(64, 6)), rng.normal(size=(64, 3))
    eps = 0.2
    delta = paad_actor(mlp, states, directions, eps, norm)
    assert _in_ball(delta, eps, norm)
    unit = directions / np.linalg.norm(directions, axis=-1, keepdims=True)

    def gain(d):
        return ((mlp(states + d) - mlp(states)) * unit).sum(-1)

    noise = rng.uniform(-1, 1, size=delta.shape)
    random_delta = scale_to_ball(noise if norm == "inf" else noise / np.sqrt(6), eps, norm)
    assert gain(delta).mean() > max(gain(random_delta).mean(), 0.0)


# ------------------------------------------------------------------------------ robust Sarsa


def _chain(rewards, ends, terminal):
    """A one-env Transitions whose Q-values are set through a constant-output Q below."""
    t = len(rewards)
    zeros = torch.zeros(t, 1, 1)
    return Transitions(zeros, zeros, torch.tensor(rewards).reshape(t, 1), zeros, zeros,
                       1 - torch.tensor(terminal, dtype=torch.float32).reshape(t, 1),
                       torch.tensor(ends, dtype=torch.float32).reshape(t, 1), 1.0, [])


class _ConstantQ(QNetwork):
    def __init__(self, value):
        super().__init__(1, 1, (2,))
        self.value = value

    def forward(self, states, actions):
        return torch.full(states.shape[:-1], self.value)


@given(rewards=st.lists(st.floats(-5, 5), min_size=1, max_size=12),
       value=st.floats(-3, 3), gamma=st.floats(0.5, 0.99))
def test_sarsa_lambda_targets_are_monte_carlo_at_one_and_td_at_zero(rewards, value, gamma):
    n = len(rewards)
    ends = [0] * (n - 1) + [1]
    terminal = [0] * (n - 1) + [1]
    data = _chain(rewards, ends, terminal)
    q = _ConstantQ(value)
    mc = sarsa_lambda_targets(q, data, gamma, 1.0)[:, 0]
    expected = [sum(gamma ** (k - t) * rewards[k] for k in range(t, n)) for t in range(n)]
    np.testing.assert_allclose(mc.numpy(), expected, rtol=1e-5, atol=1e-4)
    td = sarsa_lambda_targets(q, data, gamma, 0.0)[:, 0]
    one_step = [r + gamma * value * (t < n - 1) for t, r in enumerate(rewards)]
    np.testing.assert_allclose(td.numpy(), one_step, rtol=1e-5, atol=1e-4)


def test_a_time_limit_bootstraps_and_a_terminal_state_does_not():
    q = _ConstantQ(2.0)
    truncated = sarsa_lambda_targets(q, _chain([1.0, 1.0], [0, 1], [0, 0]), 0.5, 1.0)[:, 0]
    terminal = sarsa_lambda_targets(q, _chain([1.0, 1.0], [0, 1], [0, 1]), 0.5, 1.0)[:, 0]
    assert truncated[1] == pytest.approx(1.0 + 0.5 * 2.0)
    assert terminal[1] == pytest.approx(1.0)
    assert truncated[0] == pytest.approx(1.0 + 0.5 * truncated[1])


def test_robust_sarsa_learns_and_its_attack_stays_in_the_ball(victim_file):
    agent = load_agent(victim_file)
    config = SarsaConfig(samples=4096, sweeps=8, action_eps=0.1, reg=1.0, minibatch=128)
    data = collect_transitions(agent, config)
    assert len(data) == 4096 and data.states.shape == (512, 8, 4)
    result = train_robust_sarsa(agent, config, data=data)
    # Q tracks the Monte Carlo return-to-go (lambda = 1; measured: correlation 0.65)
    monte_carlo = sarsa_lambda_targets(QNetwork(4, 2), data, config.gamma, 1.0)[:400]
    pairs = zip(data.states[:400], data.actions[:400], strict=True)
    q = torch.stack([result.q(s, a) for s, a in pairs])
    assert np.corrcoef(monte_carlo.reshape(-1), q.detach().reshape(-1))[0, 1] > 0.5
    assert result.td_rmse_relative < 0.25 and result.samples_per_s > 0
    states = data.states[0]
    for ratio in (0.0, 0.5, 1.0):
        for norm in ("inf", "2"):
            attacked = robust_sarsa_attack(agent.policy, result.q, states, 0.1, norm, 10, ratio,
                                           torch.Generator().manual_seed(0))
            assert _in_ball((attacked - states).numpy(), 0.1, norm)
    with pytest.raises(ValueError, match="action_ratio"):
        robust_sarsa_attack(agent.policy, result.q, states, 0.1, action_ratio=1.5)


# ------------------------------------------------------------------------- adversary MDPs


def test_a_silent_adversary_replays_the_clean_episode(victim_file):
    agent = load_agent(victim_file)
    clean = evaluate(agent, episodes=1, seed=5, num_envs=1)
    for cls in (OptimalAttackEnv, PAADEnv):
        env = cls(str(victim_file), eps=0.0)
        env.reset(seed=5)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, info = env.step(np.zeros(env.action_space.shape))
            assert reward == -info["victim_reward"]
            total -= reward
            done = terminated or truncated
        env.close()
        assert total == pytest.approx(clean.returns[0])


HOPPER = "Hopper-v5/ppo/seed0"  # continuous actions: a last bit of z moves the episode


@pytest.mark.parametrize("norm", ["inf", "2"])
def test_the_batched_actor_steps_every_env_as_it_steps_alone(norm):
    """``PAADEnv.prepare_steps`` (one actor call for a slice of envs) against each env's own
    step: the same observations and rewards, bit for bit, through episode ends."""
    from pruningrl.envs import _EnvSlice
    from pruningrl.zoo import resolve

    victim, seeds = str(resolve(HOPPER)), [3, 4, 5, 6]
    batched = _EnvSlice("pruningrl/PAAD-v0", seeds, 1000,
                        {"victim": victim, "eps": 0.075, "norm": norm})
    alone = [PAADEnv(victim, 0.075, norm) for _ in seeds]
    obs = batched.reset()
    first = [e.reset(seed=s)[0] for e, s in zip(alone, seeds, strict=True)]
    assert np.array_equal(obs, np.stack(first))
    rng, prepared, ended = np.random.default_rng(0), 0, 0
    for _ in range(1001):  # past the time limit, if no episode falls sooner
        actions = rng.uniform(-1, 1, size=(len(seeds), 3)).astype(np.float32)
        prepared += batched.envs[0]._prepared is None  # cleared by the previous step
        obs, rewards, terminated, truncated, *_ = batched.step(actions)
        for i, env in enumerate(alone):
            o, r, *_ = env.step(actions[i])
            if terminated[i] or truncated[i]:
                o, _ = env.reset()
                ended += 1
            assert np.array_equal(o, obs[i]) and r == rewards[i]
    assert prepared == 1001 and ended > 0
    for env in (*batched.envs, *alone):
        env.close()


def test_a_director_trained_with_the_batched_actor_is_the_same_bits(tmp_path, monkeypatch):
    from pruningrl.attack_suite import train_adversary
    from pruningrl.zoo import resolve

    def weights(out):
        return [p.detach().clone() for p in load_agent(out).policy.parameters()]

    victim = resolve(HOPPER)
    train_adversary("paad", victim, 0.075, "inf", 8192, 0, tmp_path / "batched.safetensors")
    monkeypatch.delattr(PAADEnv, "prepare_steps")
    train_adversary("paad", victim, 0.075, "inf", 8192, 0, tmp_path / "alone.safetensors")
    batched, alone = weights(tmp_path / "batched.safetensors"), weights(
        tmp_path / "alone.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(batched, alone, strict=True))


def test_adversary_spaces_follow_the_victim(victim_file):
    optimal, paad = OptimalAttackEnv(str(victim_file), 0.1), PAADEnv(str(victim_file), 0.1)
    assert optimal.action_space.shape == (4,)  # a perturbation of CartPole's 4 observations
    assert paad.action_space.shape == (2,)  # a direction over CartPole's 2 action logits
    optimal.close()
    paad.close()


# ------------------------------------------------------------------------- suite and cache


def test_learned_attackers_are_cached_by_victim_attack_eps_and_budget(victim_file, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setenv("PRUNINGRL_CACHE", str(tmp_path / "user-cache"))
    victim = tmp_path / "victim.safetensors"
    victim.write_bytes(victim_file.read_bytes())
    agent = load_agent(victim)
    budget = AttackBudget(sarsa_samples=512, sarsa_sweeps=3, screen_episodes=1,
                          adversary_steps=512)
    states = agent.normalize(np.random.default_rng(0).normal(size=(16, 4)))
    for name in ("rs", "rs+mad", "optimal", "paad"):
        attack = make_attack(name, agent, 0.1, victim_path=victim, budget=budget)
        assert attack.info["budget"] == budget.for_attack(name)
        assert _in_ball((attack(states) - states).numpy(), 0.1, "inf")
    folder = tmp_path / "victim.attackers" / victim_fingerprint(agent)
    files = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert len([n for n in files if n.startswith("sarsa-")]) == 9
    assert {"optimal-eps0.1-inf-n512-s0.safetensors", "paad-eps0.1-inf-n512-s0.safetensors",
            "rs-eps0.1-inf-n512-sw3-screen1-s0.json"} <= set(files)
    for name in ("rs", "optimal"):  # a second use trains nothing
        make_attack(name, agent, 0.1, victim_path=victim, budget=budget)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == files
    magnitude_prune(agent.policy, 0.5)  # another victim, another key
    assert victim_fingerprint(agent) != folder.name


def test_deployed_learned_attacks_stay_in_the_ball(victim_file):
    agent = load_agent(victim_file)
    states = agent.normalize(np.random.default_rng(1).normal(size=(32, 4)))
    adversary = load_agent(victim_file)  # any network with 4 outputs perturbs 4 observations
    adversary.policy.net[-1] = torch.nn.Linear(64, 4)
    for norm in ("inf", "2"):
        attacked = optimal_attack_fn(adversary, 0.3, norm)(states)
        assert _in_ball((attacked - states).numpy(), 0.3, norm)
        attacked = paad_attack_fn(agent, agent, 0.3, norm)(states)  # the victim as director
        assert _in_ball((attacked - states).numpy(), 0.3, norm)


def test_make_attack_refuses_bad_input(victim_file):
    agent = load_agent(victim_file)
    assert ATTACKS[0] == "none" and len(ATTACKS) == 8
    with pytest.raises(ValueError, match="unknown attack"):
        make_attack("gremlin", agent, 0.1)
    with pytest.raises(ValueError):
        make_attack("mad", agent, -0.1)
    with pytest.raises(ValueError):
        make_attack("random", agent, 0.1, norm="3")


def test_a_half_trained_adversary_is_resumed_not_used(victim_file, tmp_path, monkeypatch):
    import pruningrl.attack_suite as suite

    victim = tmp_path / "victim.safetensors"
    victim.write_bytes(victim_file.read_bytes())
    agent = load_agent(victim)
    folder = tmp_path / "victim.attackers" / victim_fingerprint(agent)
    folder.mkdir(parents=True)
    partial = folder / "optimal-eps0.1-inf-n512-s0.safetensors"
    partial.write_bytes(victim.read_bytes())  # a checkpoint saved mid-training ...
    (folder / (partial.name + ".train-state.pt")).write_bytes(b"...")  # ... and its state
    calls = []
    monkeypatch.setattr(suite, "train_adversary", lambda *args, **kw: calls.append(args))
    make_attack("optimal", agent, 0.1, victim_path=victim, budget=AttackBudget(adversary_steps=512))
    assert len(calls) == 1 and calls[0][6] == partial  # trained (resumed) into the same file


def test_an_adversarys_settings_reach_its_ppo_and_its_cache_key(victim_file, tmp_path,
                                                                 monkeypatch):
    import pruningrl.attack_suite as suite

    victim = tmp_path / "victim.safetensors"
    victim.write_bytes(victim_file.read_bytes())
    agent = load_agent(victim)
    calls = []

    def fake_train(name, victim_path, eps, norm, steps, seed, out, progress=False,
                   settings=None):
        calls.append((out.name, settings))
        out.write_bytes(victim.read_bytes())  # any agent stands in for the trained adversary

    monkeypatch.setattr(suite, "train_adversary", fake_train)
    budget = AttackBudget(adversary_steps=512, adversary_lr=1e-4, adversary_ent=0.01)
    attack = make_attack("paad", agent, 0.1, seed=2, victim_path=victim, budget=budget)
    assert calls == [("paad-eps0.1-inf-n512-lr0.0001-ent0.01-s2.safetensors",
                      {"learning_rate": 1e-4, "ent_coef": 0.01})]
    assert attack.info["budget"] == {"adversary_steps": 512, "learning_rate": 1e-4,
                                     "ent_coef": 0.01}
    make_attack("paad", agent, 0.1, seed=2, victim_path=victim,
                budget=AttackBudget(adversary_steps=512))  # PPO's defaults: another adversary
    assert calls[1] == ("paad-eps0.1-inf-n512-s2.safetensors", {})


def test_rs_mad_takes_its_mixing_weight(victim_file, tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNINGRL_CACHE", str(tmp_path / "user-cache"))
    victim = tmp_path / "victim.safetensors"
    victim.write_bytes(victim_file.read_bytes())
    agent = load_agent(victim)
    budget = AttackBudget(sarsa_samples=512, sarsa_sweeps=3, screen_episodes=1)
    states = agent.normalize(np.random.default_rng(0).normal(size=(16, 4)))
    default = make_attack("rs+mad", agent, 0.1, victim_path=victim, budget=budget)
    mostly_mad = make_attack("rs+mad", agent, 0.1, victim_path=victim, budget=budget, ratio=0.9)
    assert default.info["action_ratio"] == 0.5 and mostly_mad.info["action_ratio"] == 0.9
    folder = tmp_path / "victim.attackers" / victim_fingerprint(agent)
    assert (folder / "rs+mad-eps0.1-inf-n512-sw3-screen1-rho0.9-s0.json").is_file()
    assert _in_ball((mostly_mad(states) - states).numpy(), 0.1, "inf")
    for name, ratio in (("rs", 0.5), ("rs+mad", 1.0), ("rs+mad", 0.0), ("mad", 0.5)):
        with pytest.raises(ValueError, match="mixing weight"):
            make_attack(name, agent, 0.1, ratio=ratio)
