"""A certified lower bound on the return under any eps-bounded observation attack.

For a deterministic policy (the most likely action of a categorical policy) in a deterministic
environment (a fixed reset seed), an attacker who perturbs each observation within
B_p(s, eps) can change the trajectory only at a state where it can change the action. Play the
clean episode and find its first state s_t whose action is not certified (CROWN's lower bound
on z_a - z_j over the ball is not positive for some j). Up to t the attacked episode *is* the
clean one, so it collects the same rewards r_0, ..., r_{t-1}; from t on, each of the at most
T - t remaining steps to the time limit T adds at least r_min, and an episode may also end
early, which adds 0. Hence

    certified return = r_0 + ... + r_{t-1} + min(0, r_min) (T - t)  <=  attacked return,

for every attack within the ball, and it equals the clean return when every state of the
episode is certified. The bound is deterministic: no sampling, no smoothing (CROP
{Wu et al. 2022} certifies returns of smoothed policies instead).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from pruningrl.agent import Agent
from pruningrl.bounds import certified_action
from pruningrl.envs import check_seed, make_env

#: the smallest reward one step can give, per task with discrete actions
REWARD_MIN: dict[str, float] = {"CartPole-v1": 1.0, "Acrobot-v1": -1.0}
#: certified only if the logit margin's lower bound exceeds this (float32 rounding room)
MARGIN = 1e-4


@dataclass
class CertifiedReturn:
    """Per episode: the clean return, the certified lower bound and where certification broke
    (None: every state certified)."""

    env_id: str
    eps: float
    norm: str
    method: str
    clean: list[float]
    certified: list[float]
    first_uncertified: list[int | None]
    lengths: list[int]

    @property
    def mean_certified(self) -> float:
        return float(np.mean(self.certified))

    @property
    def fully_certified(self) -> float:
        """The share of episodes certified at every state."""
        return float(np.mean([t is None for t in self.first_uncertified]))

    def to_dict(self) -> dict:
        return {**asdict(self), "mean_clean": float(np.mean(self.clean)),
                "mean_certified": self.mean_certified, "fully_certified": self.fully_certified}


def certified_return(agent: Agent, eps: float, episodes: int = 50, seed: int = 0,
                     norm: str = "inf", method: str = "crown") -> CertifiedReturn:
    """The certified return of episodes with reset seeds ``seed``, ..., ``seed + episodes - 1``
    (the seeds of ``pruningrl.evaluation.evaluate``), deterministic actions."""
    if not agent.discrete:
        raise ValueError("the certified return is for discrete actions: a continuous action "
                         "can always be moved a little, so no state's action is certified")
    if agent.env_id not in REWARD_MIN:
        raise ValueError(f"no reward lower bound for {agent.env_id}; known: "
                         f"{', '.join(REWARD_MIN)}")
    if episodes < 1:
        raise ValueError(f"episodes must be positive, got {episodes}")
    check_seed(seed)
    floor = min(0.0, REWARD_MIN[agent.env_id])
    env = make_env(agent.env_id, disable_env_checker=True)
    limit = env.spec.max_episode_steps
    out = CertifiedReturn(agent.env_id, float(eps), str(norm), method, [], [], [], [])
    try:
        for k in range(episodes):
            clean, rewards, first = _episode(agent, env, seed + k, eps, norm, method)
            certified = clean if first is None else sum(rewards[:first]) + floor * (limit - first)
            out.clean.append(clean)
            out.certified.append(float(certified))
            out.first_uncertified.append(first)
            out.lengths.append(len(rewards))
    finally:
        env.close()
    return out


def _episode(agent: Agent, env, reset_seed: int, eps: float, norm: str,
             method: str) -> tuple[float, list[float], int | None]:
    """One clean episode: its return, its rewards and its first uncertified step."""
    obs, rewards, states, done = env.reset(seed=reset_seed)[0], [], [], False
    torch.set_num_threads(1)
    while not done:
        with torch.no_grad():
            state = agent.normalize(obs[None])
            action = agent.policy.act(state, deterministic=True).numpy()[0]
        states.append(state)
        obs, reward, term, trunc, _ = env.step(action)
        rewards.append(float(reward))
        done = term or trunc
    certified = certified_action(agent.policy, eps, norm, torch.cat(states), method,
                                 margin=MARGIN)
    broken = torch.nonzero(~certified)
    return float(sum(rewards)), rewards, int(broken[0, 0]) if len(broken) else None
