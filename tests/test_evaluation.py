"""Tests of the d^pi sampler of pruningrl.evaluation against the exact law on a finite chain."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pruningrl.agent import Agent
from pruningrl.evaluation import discounted_visitation_states, geometric_horizons
from pruningrl.policies import CategoricalPolicy, ValueNetwork

N_STATES, GAMMA = 4, 0.7
# MOVES[a, x, y]: probability of moving from x to y under action a. Entering state 3 ends the
# episode with probability HALT[3] (termination), so the sampler's rejection is exercised too.
MOVES = np.array([
    [[0.2, 0.8, 0.0, 0.0], [0.0, 0.2, 0.8, 0.0], [0.0, 0.0, 0.2, 0.8], [0.8, 0.0, 0.0, 0.2]],
    [[0.1, 0.0, 0.9, 0.0], [0.0, 0.1, 0.0, 0.9], [0.9, 0.0, 0.1, 0.0], [0.0, 0.9, 0.0, 0.1]],
])
HALT = np.array([0.0, 0.0, 0.0, 0.5])
START = np.array([0.5, 0.5, 0.0, 0.0])
ENV_ID = "pruningrl-test/Chain-v0"


class ChainEnv(gym.Env):
    """A 4-state random walk with one-hot observations and a terminating state."""

    observation_space = gym.spaces.Box(0.0, 1.0, (N_STATES,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = int(self.np_random.choice(N_STATES, p=START))
        return np.eye(N_STATES, dtype=np.float32)[self.state], {}

    def step(self, action):
        self.state = int(self.np_random.choice(N_STATES, p=MOVES[int(action), self.state]))
        halted = bool(self.np_random.random() < HALT[self.state])
        return np.eye(N_STATES, dtype=np.float32)[self.state], 0.0, halted, False, {}


if ENV_ID not in gym.envs.registry:
    gym.register(id=ENV_ID, entry_point=ChainEnv)


def chain_agent() -> Agent:
    """A stochastic categorical policy whose action probabilities differ from state to state."""
    policy = CategoricalPolicy(N_STATES, 2, hidden=())
    with torch.no_grad():
        policy.net[0].weight.copy_(torch.tensor([[1.0, -1.0, 0.5, 0.0], [-1.0, 1.0, 0.0, 2.0]]))
        policy.net[0].bias.zero_()
    return Agent(ENV_ID, policy, ValueNetwork(N_STATES, ()), np.zeros(N_STATES),
                 np.ones(N_STATES), normalize_obs=False)


def exact_visitation(agent: Agent) -> np.ndarray:
    """sum_t gamma^t P(s_t = x, alive at t), normalised: rho_0^T (I - gamma Q)^{-1}, where Q is
    the policy's transition matrix among live states."""
    with torch.no_grad():
        probs = torch.softmax(agent.policy(torch.eye(N_STATES)), -1).double().numpy()
    live = np.einsum("xa,axy->xy", probs, MOVES) * (1.0 - HALT)[None, :]
    weights = START @ np.linalg.inv(np.eye(N_STATES) - GAMMA * live)
    return weights / weights.sum()


def test_discounted_visitation_states_follow_the_exact_law():
    agent = chain_agent()
    states = discounted_visitation_states(agent, 4000, GAMMA, seed=0, deterministic=False)
    frequencies = np.bincount(states.argmax(1).numpy(), minlength=N_STATES) / len(states)
    exact = exact_visitation(agent)
    assert states.shape == (4000, N_STATES)
    assert np.abs(frequencies - exact).max() < 0.03, (frequencies, exact)


def test_the_law_is_not_the_undiscounted_visit_frequency():
    """The check above can fail: the on-policy stationary law differs from d^pi here."""
    agent = chain_agent()
    with torch.no_grad():
        probs = torch.softmax(agent.policy(torch.eye(N_STATES)), -1).double().numpy()
    moves = np.einsum("xa,axy->xy", probs, MOVES)
    values, vectors = np.linalg.eig(moves.T)
    stationary = np.real(vectors[:, np.argmin(np.abs(values - 1.0))])
    stationary /= stationary.sum()
    assert np.abs(stationary - exact_visitation(agent)).max() > 0.1


def test_too_few_attempts_raise():
    with pytest.raises(RuntimeError, match="attempts"):
        discounted_visitation_states(chain_agent(), 50, 0.99, seed=0, max_attempts=10)


@settings(max_examples=30, deadline=None)
@given(gamma=st.floats(0.0, 0.95), seed=st.integers(0, 2**31 - 1))
def test_geometric_horizons_have_the_geometric_law(gamma, seed):
    """P(T = t) = (1 - gamma) gamma^t: mean gamma / (1 - gamma), P(T = 0) = 1 - gamma."""
    count = 20_000
    horizons = geometric_horizons(count, gamma, np.random.default_rng(seed))
    assert horizons.min() >= 0 and np.issubdtype(horizons.dtype, np.integer)
    mean, spread = gamma / (1 - gamma), np.sqrt(gamma) / (1 - gamma) / np.sqrt(count)
    assert abs(horizons.mean() - mean) <= 6 * spread + 1e-12
    zero_spread = np.sqrt(gamma * (1 - gamma) / count)
    assert abs((horizons == 0).mean() - (1 - gamma)) <= 6 * zero_spread + 1e-12


def test_geometric_horizons_reject_a_bad_discount():
    with pytest.raises(ValueError, match="gamma"):
        geometric_horizons(3, 1.0, np.random.default_rng(0))
