"""Learned adversaries: the ATLA "optimal" attack and PA-AD, each an MDP that PPO solves.

A fixed victim pi with frozen normalization acts on perturbed normalized states s + delta,
||delta||_p <= eps. An adversary is a policy nu that chooses delta; its reward is the victim's
reward negated, so the best nu minimizes the victim's return (Zhang et al. 2021, "ATLA").

* Optimal attack (ATLA). The adversary observes the victim's normalized state s and outputs
  a in [-1, 1]^n (n = obs dim); delta = eps * a (l_inf), or eps * a / max(1, ||a||_2) (l_2).
  Its action space is as large as the observation space.
* PA-AD (Sun et al. 2022). A *director* observes s and outputs a direction d in the victim's
  action space (the Gaussian mean; the logits of a categorical policy), dimension m <= n. A
  gradient *actor* realizes it: delta = argmax_{||delta|| <= eps} <z(s + delta) - z(s), d/|d|>
  by ``PAAD_STEPS`` steps of projected (signed, for l_inf) gradient ascent. Searching over
  directions of the policy instead of over states is what makes PA-AD efficient.

Both are gymnasium environments (``OptimalAttackEnv``, ``PAADEnv``), registered as
``pruningrl/OptimalAttack-v0`` and ``pruningrl/PAAD-v0``, so ``pruningrl.ppo.train`` learns the
adversary like any other task (``PPOConfig.env_kwargs`` names the victim checkpoint and eps).
The victim's forward pass and the actor's input gradient run in numpy
(``pruningrl.gradients.NumpyMLP``): a few microseconds per step instead of torch's per-call
overhead, and the same code serves training (one state) and deployment (a batch). In training,
``PAADEnv.prepare_steps`` runs the actor for all the envs a trainer steps together in one call
on a stack of single states, shape (k, 1, n). NumPy multiplies each (1, n) slice with the kernel
it uses for one state alone, so the batch changes the speed and not a bit of the result.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from pruningrl.agent import Agent, load_agent
from pruningrl.balls import ascent_direction, assert_in_ball, project_to_ball
from pruningrl.bounds import _check_eps, parse_norm
from pruningrl.envs import check_env_id
from pruningrl.gradients import NumpyMLP

OPTIMAL_ENV_ID = "pruningrl/OptimalAttack-v0"
PAAD_ENV_ID = "pruningrl/PAAD-v0"
#: Gradient steps of PA-AD's actor per perturbation.
PAAD_STEPS = 10


def scale_to_ball(action: np.ndarray, eps: float, norm: str | float = "inf") -> np.ndarray:
    """An adversary's action a -> a perturbation in B_p(0, eps): eps clip(a, -1, 1) for l_inf,
    eps a / max(1, ||a||_2) for l_2."""
    p = parse_norm(norm)
    if p == math.inf:
        return eps * np.clip(action, -1.0, 1.0)
    length = np.linalg.norm(action, axis=-1, keepdims=True)
    return eps * action / np.maximum(length, 1.0)


def paad_actor(
    mlp: NumpyMLP,
    states: np.ndarray,
    directions: np.ndarray,
    eps: float,
    norm: str | float = "inf",
    steps: int = PAAD_STEPS,
) -> np.ndarray:
    """PA-AD's actor: perturbations delta (b, n) that push z(s + delta) along d / |d|.

    Projected gradient ascent on <z(s + delta), d/|d|> from delta = 0, step 2 eps / steps:
    signed steps and clipping for l_inf, normalized steps and rescaling for l_2.
    """
    d = directions / np.maximum(np.linalg.norm(directions, axis=-1, keepdims=True), 1e-12)
    delta = np.zeros_like(states)
    size = 2.0 * eps / steps
    for _ in range(steps):
        grad = mlp.vjp(states + delta, d)
        delta = project_to_ball(delta + size * ascent_direction(grad, norm), eps, norm)
    return delta


def _check_delta(delta: np.ndarray, eps: float, norm: str | float) -> None:
    """``balls.assert_in_ball`` for numpy perturbations."""
    assert_in_ball(torch.from_numpy(delta), eps, norm)


class _VictimEnv(gym.Env):
    """The victim's task seen by an adversary: observations are the victim's normalized states,
    the reward is the victim's reward negated, and the adversary's action perturbs the state."""

    metadata = {"render_modes": []}

    def __init__(self, victim: str, eps: float, norm: str = "inf") -> None:
        self.victim_path = str(victim)
        self.agent: Agent = load_agent(victim)
        self.eps, self.norm = _check_eps(eps), norm
        parse_norm(norm)
        self.env = gym.make(check_env_id(self.agent.env_id), disable_env_checker=True)
        self.mlp = NumpyMLP(self.agent.policy.net)
        n = self.agent.policy.obs_dim
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (n,), np.float32)
        self._state = np.zeros(n)
        self._prepared: tuple[np.ndarray, np.ndarray] | None = None  # (action, z)
        if not self.agent.discrete:
            self._low = self.env.action_space.low
            self._high = self.env.action_space.high

    def _normalize(self, obs: np.ndarray) -> np.ndarray:
        """The victim's normalized state, exactly as it sees it in evaluation."""
        return self.agent.normalize_array(obs[None])[0].astype(np.float64)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._prepared = None
        obs, info = self.env.reset(seed=seed)
        self._state = self._normalize(obs)
        return self._state.astype(np.float32), info

    def _perturbation(self, action: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _perturbed_output(self, action: np.ndarray) -> np.ndarray:
        """z(s + delta) for the adversary's action: prepared by ``prepare_steps``, or now."""
        prepared, self._prepared = self._prepared, None
        if prepared is not None and np.array_equal(prepared[0], action):
            return prepared[1]
        delta = self._perturbation(action)
        _check_delta(delta[None], self.eps, self.norm)
        return self.mlp((self._state + delta)[None])[0]

    def step(self, action: np.ndarray):
        z = self._perturbed_output(np.asarray(action, dtype=np.float64))
        victim_action = int(np.argmax(z)) if self.agent.discrete else np.clip(z, self._low,
                                                                               self._high)
        obs, reward, terminated, truncated, info = self.env.step(victim_action)
        self._state = self._normalize(obs)
        info = {**info, "victim_reward": reward}
        return self._state.astype(np.float32), -float(reward), terminated, truncated, info

    def close(self) -> None:
        self.env.close()


class OptimalAttackEnv(_VictimEnv):
    """ATLA's adversary MDP: action a in [-1, 1]^n, perturbation ``scale_to_ball(a, eps)``."""

    def __init__(self, victim: str, eps: float, norm: str = "inf") -> None:
        super().__init__(victim, eps, norm)
        n = self.agent.policy.obs_dim
        self.action_space = gym.spaces.Box(-1.0, 1.0, (n,), np.float32)

    def _perturbation(self, action: np.ndarray) -> np.ndarray:
        return scale_to_ball(action, self.eps, self.norm)


class PAADEnv(_VictimEnv):
    """PA-AD's director MDP: action d in [-1, 1]^m, a direction for the victim's output z; the
    gradient actor ``paad_actor`` turns it into a perturbation."""

    def __init__(self, victim: str, eps: float, norm: str = "inf", steps: int = PAAD_STEPS):
        super().__init__(victim, eps, norm)
        m = int(self.mlp.weights[-1].shape[0])  # the victim's output size
        self.steps = int(steps)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (m,), np.float32)

    def _perturbation(self, action: np.ndarray) -> np.ndarray:
        return paad_actor(self.mlp, self._state[None], action[None], self.eps, self.norm,
                          self.steps)[0]

    @staticmethod
    def prepare_steps(envs: list[PAADEnv], actions: np.ndarray) -> None:
        """Run the actor, and the victim on its perturbed states, for ``envs`` (which attack
        one victim) and their next ``actions`` (k, m) at once; each env's ``step`` then uses
        its row. Stacked as (k, 1, n), every row is computed as ``step`` alone computes it."""
        first = envs[0]
        if any((e.victim_path, e.eps, e.norm, e.steps)
               != (first.victim_path, first.eps, first.norm, first.steps) for e in envs):
            return  # envs that attack different victims are stepped one by one
        act = np.asarray(actions, dtype=np.float64).reshape(len(envs), 1, -1)
        states = np.stack([e._state for e in envs])[:, None, :]
        delta = paad_actor(first.mlp, states, act, first.eps, first.norm, first.steps)
        _check_delta(delta[:, 0], first.eps, first.norm)
        z = first.mlp(states + delta)
        for i, env in enumerate(envs):
            env._prepared = (act[i, 0], z[i, 0])


for _id, _entry in ((OPTIMAL_ENV_ID, OptimalAttackEnv), (PAAD_ENV_ID, PAADEnv)):
    if _id not in gym.envs.registry:
        gym.register(_id, entry_point=f"{__name__}:{_entry.__name__}")


# --------------------------------------------------------------------------- deployed attacks


def optimal_attack_fn(
    adversary: Agent, eps: float, norm: str | float = "inf"
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The trained adversary as a batched attack: s -> s + scale_to_ball(mean of nu(s))."""
    eps = _check_eps(eps)
    mlp = NumpyMLP(adversary.policy.net)

    def attack(states: torch.Tensor) -> torch.Tensor:
        s = states.double().numpy()
        delta = scale_to_ball(mlp(adversary.normalize(s).double().numpy()), eps, norm)
        _check_delta(delta, eps, norm)
        return torch.from_numpy(s + delta).to(states.dtype)

    return attack


def paad_attack_fn(
    director: Agent, victim: Agent, eps: float, norm: str | float = "inf",
    steps: int = PAAD_STEPS,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The trained director with its gradient actor as a batched attack."""
    eps = _check_eps(eps)
    director_mlp, victim_mlp = NumpyMLP(director.policy.net), NumpyMLP(victim.policy.net)

    def attack(states: torch.Tensor) -> torch.Tensor:
        s = states.double().numpy()
        d = np.clip(director_mlp(director.normalize(s).double().numpy()), -1.0, 1.0)
        delta = paad_actor(victim_mlp, s, d, eps, norm, steps)
        _check_delta(delta, eps, norm)
        return torch.from_numpy(s + delta).to(states.dtype)

    return attack


def adversary_env_kwargs(victim: str | Path, eps: float, norm: str = "inf") -> dict:
    """``PPOConfig.env_kwargs`` for an adversary of the victim checkpoint ``victim``."""
    return {"victim": str(victim), "eps": float(_check_eps(eps)), "norm": str(norm)}
