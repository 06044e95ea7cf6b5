"""Running statistics for observation and reward normalization.

PPO on MuJoCo normalizes observations by running moments and scales rewards by the running
standard deviation of the discounted return (Engstrom et al. 2020, whose code SA-PPO builds on):

    s_norm = clip((s - mean) / sqrt(var + 1e-8), -c, c),        c = 10,
    r_scaled = clip(r / sqrt(Var[R_t] + 1e-8), -c, c),   R_t = gamma R_{t-1} + r_t.

The observation statistics are frozen after training and saved with the agent: the threat model
perturbs *normalized* observations, so the normalizer is part of the policy.
"""

from __future__ import annotations

import numpy as np

EPSILON = 1e-8


class RunningMeanStd:
    """Mean and variance of a stream of vectors, merged batch by batch (Chan et al. 1979)."""

    def __init__(self, shape: tuple[int, ...] = ()) -> None:
        self.mean = np.zeros(shape, dtype=np.float64)
        self.var = np.ones(shape, dtype=np.float64)
        self.count = 1e-4  # a tiny prior count, as in OpenAI baselines: no division by zero

    def update(self, batch: np.ndarray) -> None:
        """Merge a batch of shape ``(n, *shape)`` into the running moments."""
        batch = np.asarray(batch, dtype=np.float64)
        n = batch.shape[0]
        if n == 0:
            return
        batch_mean = batch.mean(axis=0)
        batch_var = batch.var(axis=0)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * (n / total)
        m2 = self.var * self.count + batch_var * n + delta**2 * (self.count * n / total)
        self.var = m2 / total
        self.count = total

    def state_dict(self) -> dict[str, np.ndarray | float]:
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": float(self.count)}

    def load_state_dict(self, state: dict) -> None:
        self.mean = np.asarray(state["mean"], dtype=np.float64).copy()
        self.var = np.asarray(state["var"], dtype=np.float64).copy()
        self.count = float(state["count"])


def normalize_observations(
    obs: np.ndarray, mean: np.ndarray, var: np.ndarray, clip: float
) -> np.ndarray:
    """clip((s - mean) / sqrt(var + 1e-8), -clip, clip) in float64, returned as float32."""
    scaled = (np.asarray(obs, dtype=np.float64) - mean) / np.sqrt(var + EPSILON)
    return np.clip(scaled, -clip, clip).astype(np.float32)


class ObservationNormalizer:
    """s -> clip((s - mean) / sqrt(var + 1e-8), -clip, clip), with optional running updates."""

    def __init__(self, obs_dim: int, clip: float = 10.0, enabled: bool = True) -> None:
        self.rms = RunningMeanStd((obs_dim,))
        self.clip = float(clip)
        self.enabled = enabled

    def update(self, obs: np.ndarray) -> None:
        """Merge a batch of raw observations into the running statistics."""
        if self.enabled:
            obs = np.asarray(obs, dtype=np.float64)
            self.rms.update(obs.reshape(-1, obs.shape[-1]))

    def __call__(self, obs: np.ndarray, update: bool = False) -> np.ndarray:
        """Normalize a batch (``update=True`` first merges it into the statistics)."""
        obs = np.asarray(obs, dtype=np.float64)
        if not self.enabled:
            return obs.astype(np.float32)
        if update:
            self.rms.update(obs.reshape(-1, obs.shape[-1]))
        return normalize_observations(obs, self.rms.mean, self.rms.var, self.clip)


class RewardScaler:
    """r -> clip(r / sqrt(Var[R] + 1e-8), -clip, clip), R the running discounted return per env."""

    def __init__(
        self, num_envs: int, gamma: float, clip: float = 10.0, enabled: bool = True
    ) -> None:
        self.rms = RunningMeanStd(())
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.gamma, self.clip, self.enabled = float(gamma), float(clip), enabled

    def __call__(
        self, rewards: np.ndarray, dones: np.ndarray, envs: slice = slice(None)
    ) -> np.ndarray:
        """Scale one step of rewards of the envs ``envs``; ``dones`` restarts their returns."""
        rewards = np.asarray(rewards, dtype=np.float64)
        if not self.enabled:
            return rewards.astype(np.float32)
        returns = self.returns[envs] * self.gamma + rewards
        self.rms.update(returns)
        returns[np.asarray(dones, dtype=bool)] = 0.0
        self.returns[envs] = returns
        scaled = rewards / np.sqrt(self.rms.var + EPSILON)
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32)
