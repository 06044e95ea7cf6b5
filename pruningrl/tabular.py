"""Finite state-adversarial MDPs (SA-MDPs), solved exactly.

An SA-MDP (Zhang et al. 2020) is an MDP (S, A, P, r, gamma) with a threat set B(s) subset S for
every state: a stationary adversary nu picks nu(s) in B(s) and the agent acts with
pi(.|nu(s)) while the environment moves from the true state s. For a fixed policy pi the
adversary faces an ordinary MDP (its actions are the states it may show), so an optimal
adversary is deterministic and found by value iteration on

    V(s) = min_{s' in B(s)} sum_a pi(a|s') [ r(s, a) + gamma sum_t P(t|s, a) V(t) ].

The book's chapter "SA-MDPs and the threat model" uses this module to check the value-loss
bound T0 exactly.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TabularSAMDP:
    """transitions[s, a, t] = P(t|s, a); rewards[s, a]; threat[s, t] = (t in B(s))."""

    transitions: np.ndarray
    rewards: np.ndarray
    threat: np.ndarray
    gamma: float
    initial: np.ndarray

    def __post_init__(self) -> None:
        n_states, n_actions = self.rewards.shape
        if self.transitions.shape != (n_states, n_actions, n_states):
            raise ValueError("transitions must have shape (S, A, S)")
        if not np.allclose(self.transitions.sum(-1), 1.0):
            raise ValueError("every transitions[s, a] must sum to 1")
        if self.threat.shape != (n_states, n_states) or not self.threat.diagonal().all():
            raise ValueError("threat must be (S, S) boolean with s in B(s) for every s")
        if not 0 <= self.gamma < 1:
            raise ValueError(f"gamma must lie in [0, 1), got {self.gamma}")

    @property
    def n_states(self) -> int:
        return self.rewards.shape[0]

    @property
    def reward_range(self) -> tuple[float, float]:
        return float(self.rewards.min()), float(self.rewards.max())


def random_samdp(
    n_states: int = 6, n_actions: int = 3, gamma: float = 0.9, radius: int = 1, seed: int = 0
) -> TabularSAMDP:
    """A random SA-MDP whose states lie on a line; B(s) = {t : |t - s| <= radius}."""
    rng = np.random.default_rng(seed)
    transitions = rng.dirichlet(np.full(n_states, 0.5), size=(n_states, n_actions))
    rewards = rng.uniform(0.0, 1.0, size=(n_states, n_actions))
    index = np.arange(n_states)
    threat = np.abs(index[:, None] - index[None, :]) <= radius
    return TabularSAMDP(transitions, rewards, threat, gamma, np.full(n_states, 1 / n_states))


def attacked(policy: np.ndarray, adversary: np.ndarray) -> np.ndarray:
    """The attacked policy (pi o nu)(a|s) = pi(a|nu(s)), as an (S, A) table."""
    return policy[adversary]


def policy_value(mdp: TabularSAMDP, policy: np.ndarray) -> np.ndarray:
    """V^pi = (I - gamma P_pi)^{-1} r_pi, exactly, shape (S,)."""
    p_pi = np.einsum("sa,sat->st", policy, mdp.transitions)
    r_pi = (policy * mdp.rewards).sum(-1)
    return np.linalg.solve(np.eye(mdp.n_states) - mdp.gamma * p_pi, r_pi)


def _value_iteration(
    mdp: TabularSAMDP,
    reduce: Callable[[np.ndarray], np.ndarray],
    tol: float = 1e-12,
    max_iter: int = 100_000,
) -> np.ndarray:
    """Iterate V <- reduce(r + gamma P V) from V = 0 until the sup-norm change is below tol.

    ``reduce`` maps the (S, A) one-step backup to a value per state (max over actions for the
    agent, min over shown states for the adversary). Returns the final backup, shape (S, A).
    """
    value = np.zeros(mdp.n_states)
    for _ in range(max_iter):
        new = reduce(mdp.rewards + mdp.gamma * mdp.transitions @ value)
        converged = np.max(np.abs(new - value)) < tol
        value = new
        if converged:
            break
    return mdp.rewards + mdp.gamma * mdp.transitions @ value


def optimal_adversary(
    mdp: TabularSAMDP, policy: np.ndarray, tol: float = 1e-12, max_iter: int = 100_000
) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic adversary minimising V^{pi o nu} in every state, and that value.

    Value iteration on the adversary's MDP, then policy evaluation of the greedy adversary.
    ``shown[s, t]`` is the one-step value in true state s when the agent is shown t.
    """

    def shown(backup: np.ndarray) -> np.ndarray:
        return np.where(mdp.threat, backup @ policy.T, np.inf)  # [s, t] = sum_a pi(a|t) b[s, a]

    backup = _value_iteration(mdp, lambda b: shown(b).min(-1), tol, max_iter)
    adversary = shown(backup).argmin(-1)
    return adversary, policy_value(mdp, attacked(policy, adversary))


def all_adversaries(mdp: TabularSAMDP) -> Iterator[np.ndarray]:
    """Every deterministic stationary adversary (the product of the threat sets)."""
    choices = [np.flatnonzero(row) for row in mdp.threat]
    for combo in itertools.product(*choices):
        yield np.array(combo)


def sup_tv(policy: np.ndarray, adversary: np.ndarray) -> float:
    """max_s TV(pi(.|s), pi(.|nu(s)))."""
    return float(0.5 * np.abs(policy - policy[adversary]).sum(-1).max())


def optimal_q(mdp: TabularSAMDP, tol: float = 1e-12, max_iter: int = 100_000) -> np.ndarray:
    """Q* of the underlying (unattacked) MDP by value iteration, shape (S, A)."""
    return _value_iteration(mdp, lambda backup: backup.max(-1), tol, max_iter)
