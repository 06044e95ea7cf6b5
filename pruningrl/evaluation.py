"""Evaluation of an agent, clean or under an observation attack, on vectorized environments.

Episode k (k = 0, ..., episodes - 1) starts from ``env.reset(seed=seed + k)``, whatever the number
of parallel envs, so a result depends on the agent, the seed and the attack only. Every env runs
its own share of the episodes to the end (no early-finisher bias toward short episodes). Actions
are deterministic (the Gaussian mean, the most likely category) unless asked otherwise, as in
SA-PPO's evaluation.

An attack is any callable mapping a batch of *normalized* states (a float32 tensor of shape
``(n, obs_dim)``) to perturbed normalized states; ``pruningrl.attacks`` supplies them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import gymnasium as gym
import numpy as np
import torch

from pruningrl.agent import Agent
from pruningrl.envs import check_env_id, check_seed, make_env

Attack = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class EvalResult:
    """Per-episode returns and lengths, with their summary."""

    env_id: str
    returns: list[float]
    lengths: list[int]
    seed: int
    deterministic: bool

    @property
    def episodes(self) -> int:
        return len(self.returns)

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std_return(self) -> float:
        return float(np.std(self.returns))

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(episodes=self.episodes, mean_return=self.mean_return,
                   std_return=self.std_return, mean_length=float(np.mean(self.lengths)))
        return out


def evaluate(
    agent: Agent,
    episodes: int = 50,
    seed: int = 0,
    deterministic: bool = True,
    attack: Attack | None = None,
    num_envs: int = 10,
    progress: bool = False,
) -> EvalResult:
    """Run ``episodes`` episodes of ``agent``, clean or with ``attack`` on its normalized states."""
    if episodes < 1:
        raise ValueError(f"episodes must be positive, got {episodes}")
    check_seed(seed)
    check_env_id(agent.env_id)
    torch.set_num_threads(1)
    num_envs = max(1, min(num_envs, episodes))
    envs = [make_env(agent.env_id, disable_env_checker=True) for _ in range(num_envs)]
    generator = torch.Generator().manual_seed(seed)
    discrete = agent.discrete
    if not discrete:
        low, high = envs[0].action_space.low, envs[0].action_space.high
    queue = list(range(episodes))  # episode k -> reset seed + k
    returns = [0.0] * episodes
    lengths = [0] * episodes
    current: list[int | None] = [None] * num_envs
    obs = np.zeros((num_envs, agent.policy.obs_dim))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=episodes, unit="episode", desc=f"evaluate {agent.env_id}")
    try:
        for i, env in enumerate(envs):
            if queue:
                current[i] = queue.pop(0)
                obs[i] = env.reset(seed=seed + current[i])[0]
        while any(k is not None for k in current):
            live = [i for i, k in enumerate(current) if k is not None]
            with torch.no_grad():
                states = agent.normalize(obs[live])
                if attack is not None:
                    states = attack(states)
                if deterministic:
                    actions = agent.policy.act(states, deterministic=True)
                else:
                    actions = _sample(agent.policy.distribution(states), generator)
            actions = actions.numpy()
            for j, i in enumerate(live):
                a = actions[j] if discrete else np.clip(actions[j], low, high)
                o, r, term, trunc, _ = envs[i].step(a)
                k = current[i]
                returns[k] += float(r)
                lengths[k] += 1
                obs[i] = o
                if term or trunc:
                    if bar is not None:
                        bar.update(1)
                    current[i] = queue.pop(0) if queue else None
                    if current[i] is not None:
                        obs[i] = envs[i].reset(seed=seed + current[i])[0]
    finally:
        for env in envs:
            env.close()
        if bar is not None:
            bar.close()
    return EvalResult(agent.env_id, returns, lengths, seed, deterministic)


def _sample(dist: torch.distributions.Distribution, generator: torch.Generator) -> torch.Tensor:
    """A sample drawn from ``generator`` (reproducible stochastic evaluation)."""
    if isinstance(dist, torch.distributions.Categorical):
        return torch.multinomial(dist.probs, 1, generator=generator)[:, 0]
    base = dist.base_dist
    return base.loc + base.scale * torch.randn(base.loc.shape, generator=generator)


def visited_states(
    agent: Agent, count: int = 1000, seed: int = 0, max_episodes: int = 100
) -> torch.Tensor:
    """``count`` normalized states visited by the agent's deterministic policy, (count, obs_dim).

    Episodes k = 0, 1, ... (reset seed ``seed + k``) are played until ``count`` states are
    collected, every state of an episode in order. The states are correlated, and their law is
    the undiscounted visit frequency of the first ``count`` steps, not the discounted d^pi of
    T5: a mean over them estimates an average over this sample of trajectories. For i.i.d.
    draws from d^pi use ``discounted_visitation_states``.
    """
    if count < 1:
        raise ValueError(f"count must be positive, got {count}")
    check_seed(seed)
    torch.set_num_threads(1)
    env = make_env(agent.env_id, disable_env_checker=True)
    states: list[torch.Tensor] = []
    collected = 0
    try:
        for k in range(max_episodes):
            obs, _ = env.reset(seed=seed + k)
            done = False
            while not done and collected < count:
                state = agent.normalize(obs[None])
                states.append(state)
                collected += 1
                with torch.no_grad():
                    action = agent.policy.act(state, deterministic=True)[0].numpy()
                if not agent.discrete:
                    action = np.clip(action, env.action_space.low, env.action_space.high)
                obs, _, term, trunc, _ = env.step(action)
                done = term or trunc
            if collected >= count:
                break
    finally:
        env.close()
    return torch.cat(states)


def geometric_horizons(count: int, gamma: float, rng: np.random.Generator) -> np.ndarray:
    """``count`` i.i.d. stopping times T with P(T = t) = (1 - gamma) gamma^t, t = 0, 1, 2, ...

    If s_0 ~ rho_0 and the policy plays T steps, then P(s_T = x) = sum_t (1 - gamma) gamma^t
    P(s_t = x) = d^pi(x): the state at a geometric time is a draw from d^pi.
    """
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma must lie in [0, 1), got {gamma}")
    return rng.geometric(1.0 - gamma, size=count) - 1


def discounted_visitation_states(
    agent: Agent,
    count: int,
    gamma: float,
    seed: int = 0,
    deterministic: bool = True,
    max_attempts: int | None = None,
) -> torch.Tensor:
    """``count`` i.i.d. normalized states drawn from d^pi, shape (count, obs_dim).

    Attempt k (k = 0, 1, ...) resets with seed ``seed + k``, draws a ``geometric_horizons``
    time T and plays T steps; s_T is a draw from d^pi(x) = (1 - gamma) sum_t gamma^t
    P(s_t = x). An attempt whose episode ends (termination or time limit) at or before step T
    is rejected, so the law is d^pi over live states (the episode still runs at step t),
    renormalised: sum_t gamma^t P(s_t = x, alive at t) / sum_t gamma^t P(alive at t). The
    draws are independent, so the mean of a bounded function over them is an unbiased,
    consistent estimate of its expectation under d^pi (T5). Actions as in ``evaluate``: the
    mean or most likely action if ``deterministic``, else samples from pi; d^pi is that of the
    acting policy.
    """
    if count < 1:
        raise ValueError(f"count must be positive, got {count}")
    max_attempts = 100 * count if max_attempts is None else max_attempts
    torch.set_num_threads(1)
    horizons = geometric_horizons(max_attempts, gamma, np.random.default_rng(seed))
    generator = torch.Generator().manual_seed(seed)
    env = make_env(agent.env_id, disable_env_checker=True)
    states: list[torch.Tensor] = []
    try:
        for k, horizon in enumerate(horizons):
            state = _state_at(agent, env, seed + k, int(horizon), deterministic, generator)
            if state is not None:
                states.append(state)
            if len(states) == count:
                return torch.cat(states)
    finally:
        env.close()
    raise RuntimeError(
        f"only {len(states)} of {count} draws in {max_attempts} attempts: episodes end before "
        "the geometric time too often; raise max_attempts"
    )


def _state_at(
    agent: Agent,
    env: gym.Env,
    reset_seed: int,
    horizon: int,
    deterministic: bool,
    generator: torch.Generator,
) -> torch.Tensor | None:
    """The normalized state after ``horizon`` steps from ``reset(seed=reset_seed)``, shape
    (1, obs_dim), or None if the episode ends first."""
    obs, _ = env.reset(seed=reset_seed)
    for _ in range(horizon):
        state = agent.normalize(obs[None])
        with torch.no_grad():
            if deterministic:
                action = agent.policy.act(state, deterministic=True)
            else:
                action = _sample(agent.policy.distribution(state), generator)
        action = action[0].numpy()
        if not agent.discrete:
            action = np.clip(action, env.action_space.low, env.action_space.high)
        obs, _, term, trunc, _ = env.step(action)
        if term or trunc:
            return None
    return agent.normalize(obs[None])


def evaluate_random_policy(env_id: str, episodes: int = 50, seed: int = 0) -> EvalResult:
    """The uniformly random policy's returns: episode k resets with seed ``seed + k`` and draws
    its actions from the action space seeded with the same number (R_rand of the book)."""
    if episodes < 1:
        raise ValueError(f"episodes must be positive, got {episodes}")
    check_seed(seed)
    env = make_env(env_id, disable_env_checker=True)
    returns, lengths = [], []
    try:
        for k in range(episodes):
            env.reset(seed=seed + k)
            env.action_space.seed(seed + k)
            total, steps, done = 0.0, 0, False
            while not done:
                _, reward, term, trunc, _ = env.step(env.action_space.sample())
                total += float(reward)
                steps += 1
                done = term or trunc
            returns.append(total)
            lengths.append(steps)
    finally:
        env.close()
    return EvalResult(env_id, returns, lengths, seed, deterministic=False)


@dataclass
class Divergence:
    """Two deterministic episodes from one reset, apart only by one last bit (see
    ``last_bit_divergence``): their distance and returns, step by step."""

    distance: np.ndarray
    returns: tuple[float, float]
    lengths: tuple[int, int]
    flipped_step: int

    def parting_step(self, threshold: float = 1e-2) -> int | None:
        """The first step at which the two states are more than ``threshold`` apart."""
        apart = np.flatnonzero(self.distance > threshold)
        return int(apart[0]) if apart.size else None


def last_bit_divergence(agent: Agent, seed: int = 0) -> Divergence:
    """Run ``agent``'s deterministic episode from ``env.reset(seed=seed)`` twice; the second
    time, the first action entry that lies strictly inside the action bounds (a clipped one
    would absorb the change) moves to the next float32 up: one last bit of the policy's final
    matrix product, the size of the difference another CPU's BLAS kernel makes. Both runs
    then go on unchanged. ``distance[t]`` is max_i |s_t - s'_t| over the raw observations
    after step t, for the steps both episodes reach."""
    if agent.discrete:
        raise ValueError("a last-bit change moves a continuous action; this agent is discrete")
    envs = [make_env(agent.env_id, disable_env_checker=True) for _ in range(2)]
    observations = [env.reset(seed=seed)[0] for env in envs]
    returns, lengths, running = [0.0, 0.0], [0, 0], [True, True]
    distance, flipped = [], -1
    low, high = envs[0].action_space.low, envs[0].action_space.high
    while any(running):
        actions = [agent.act(observation[None])[0] for observation in observations]
        inside = np.flatnonzero((actions[1] > low) & (actions[1] < high))
        if flipped < 0 and inside.size:
            flipped, entry = lengths[1], inside[0]
            actions[1] = actions[1].copy()
            actions[1][entry] = np.nextafter(actions[1][entry], np.float32(np.inf))
        for k, env in enumerate(envs):
            if running[k]:
                observations[k], reward, terminated, truncated, _ = env.step(actions[k])
                returns[k] += float(reward)
                lengths[k] += 1
                running[k] = not (terminated or truncated)
        if lengths[0] == lengths[1]:
            distance.append(float(np.max(np.abs(observations[0] - observations[1]))))
    for env in envs:
        env.close()
    return Divergence(np.array(distance), (returns[0], returns[1]), (lengths[0], lengths[1]),
                      flipped)
