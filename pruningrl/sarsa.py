"""Robust Sarsa: the action-value function of a fixed victim, learned for the RS attack.

Sarsa evaluates the victim's own stochastic policy pi from its transitions (s, a, r, s', a'),
a' ~ pi(.|s'). SA-PPO's robust variant (Zhang et al. 2020, appendix) adds a smoothness term in
the action, so that Q has no sharp ridges that an attack on it would chase in vain:

    L(theta) = E[(G^lambda_t - Q(s_t, a_t))^2]
               + kappa E[max_{a^ in B_inf(a, eps_a)} (Q(s, a^) - Q(s, a))^2],

where G^lambda is the Sarsa(lambda) target of the network Qbar frozen at the start of each sweep
over the data (fitted Sarsa; lambda = 0 gives the one-step target r + gamma Qbar(s', a')),

    G_t = r_t + gamma (1 - term_t) [(1 - lambda) Qbar(s_{t+1}, a_{t+1}) + lambda G_{t+1}],

cut back to Qbar(s_{t+1}, a_{t+1}) where an episode ends, and the inner maximum is found by a few
signed-gradient steps. lambda > 0 carries value back many steps per sweep, so a few sweeps
learn a horizon of 1 / (1 - gamma) = 100 steps. Rewards are divided by the root mean
square of the discounted Monte Carlo return, so Q is of order one whatever the task; the
TD error is reported in the task's own reward units.

The RS attack (``pruningrl.attacks.robust_sarsa_attack``) then looks for the state s' in the
ball whose action the learned Q values least at the true state s.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from pruningrl.agent import Agent
from pruningrl.envs import VectorEnv
from pruningrl.policies import build_mlp


@dataclass
class SarsaConfig:
    """The robust Sarsa budget and hyperparameters."""

    samples: int = 100_000  # victim transitions collected (the data budget)
    action_eps: float = 0.05  # radius of the action ball in the smoothness term
    reg: float = 1.0  # kappa, the smoothness weight
    reg_steps: int = 5
    sweeps: int = 30  # target refreshes; each is `epochs_per_sweep` passes over the data
    epochs_per_sweep: int = 1
    sarsa_lambda: float = 0.95
    minibatch: int = 512
    learning_rate: float = 1e-3
    gamma: float = 0.99
    hidden: tuple[int, ...] = (64, 64)
    num_envs: int = 8
    seed: int = 0

    def validate(self) -> SarsaConfig:
        if self.samples < self.num_envs:
            raise ValueError(f"samples must be at least num_envs, got {self.samples}")
        for name in ("sweeps", "epochs_per_sweep", "minibatch", "reg_steps", "num_envs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.action_eps < 0 or self.reg < 0:
            raise ValueError("action_eps and reg must be >= 0")
        if not 0 <= self.sarsa_lambda <= 1:
            raise ValueError(f"sarsa_lambda must lie in [0, 1], got {self.sarsa_lambda}")
        if not 0 <= self.gamma < 1:
            raise ValueError(f"gamma must lie in [0, 1), got {self.gamma}")
        return self


class QNetwork(nn.Module):
    """Q(s, a): an MLP on the concatenated normalized state and action (tanh, 64-64)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden=(64, 64)) -> None:
        super().__init__()
        self.obs_dim, self.act_dim, self.hidden = int(obs_dim), int(act_dim), tuple(hidden)
        self.net = build_mlp(obs_dim + act_dim, 1, hidden, "tanh", output_gain=1.0)

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([states, actions], -1))[..., 0]


def victim_action_input(agent: Agent, states: torch.Tensor) -> torch.Tensor:
    """What Q sees as the victim's action at ``states``: the Gaussian mean, or the categorical
    probabilities (a one-hot action's expectation)."""
    out = agent.policy(states)
    return torch.softmax(out, -1) if agent.discrete else out


@dataclass
class Transitions:
    """Time-major (T, n_envs, ...) transitions of the victim's stochastic policy."""

    states: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor  # scaled by reward_scale
    next_states: torch.Tensor
    next_actions: torch.Tensor
    not_done: torch.Tensor  # 0 at a terminal state (a time limit bootstraps)
    episode_end: torch.Tensor  # 1 where an episode ended (terminal or time limit)
    reward_scale: float
    episodes: list[float]
    wall_time_s: float = 0.0  # collection time

    def __len__(self) -> int:
        return self.rewards.numel()


def _sample_actions(agent: Agent, states: torch.Tensor, generator: torch.Generator):
    """a ~ pi(.|s) as Q's input (a one-hot vector for a categorical policy) and env actions."""
    with torch.no_grad():
        out = agent.policy(states)
        if agent.discrete:
            index = torch.multinomial(torch.softmax(out, -1), 1, generator=generator)[:, 0]
            return nn.functional.one_hot(index, out.shape[-1]).float(), index.numpy()
        sample = out + agent.policy.log_std.exp() * torch.randn(out.shape, generator=generator)
        return sample, sample.numpy()


def collect_transitions(agent: Agent, config: SarsaConfig) -> Transitions:
    """About ``config.samples`` transitions (a multiple of ``num_envs``) of the victim's
    stochastic policy on vectorized envs."""
    torch.set_num_threads(1)  # tiny batches: more threads only contend
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(config.seed)
    n = config.num_envs
    steps = math.ceil(config.samples / n)
    envs = VectorEnv(agent.env_id, n, seed=10_000 + config.seed)
    spec = envs.spec
    states, actions, rewards, next_states, next_actions, not_done, dones = ([] for _ in range(7))
    episodes: list[float] = []
    try:
        obs = agent.normalize(envs.reset(seed=10_000 + config.seed))
        q_action, env_action = _sample_actions(agent, obs, generator)
        for _ in range(steps):
            if not agent.discrete:
                env_action = np.clip(env_action, spec.action_low, spec.action_high)
            res = envs.step(env_action)
            new_obs = agent.normalize(res.obs)
            new_q_action, new_env_action = _sample_actions(agent, new_obs, generator)
            successor, successor_action = new_obs.clone(), new_q_action.clone()
            for i, final in res.final_obs.items():  # the successor of a finished episode
                successor[i] = agent.normalize(final[None])[0]
                successor_action[i] = _sample_actions(agent, successor[i:i + 1], generator)[0][0]
            states.append(obs)
            actions.append(q_action)
            rewards.append(torch.as_tensor(res.rewards, dtype=torch.float32))
            next_states.append(successor)
            next_actions.append(successor_action)
            not_done.append(torch.as_tensor(~res.terminated, dtype=torch.float32))
            dones.append(res.terminated | res.truncated)
            episodes.extend(r for r, _ in res.episodes)
            obs, q_action, env_action = new_obs, new_q_action, new_env_action
    finally:
        envs.close()
    reward = torch.stack(rewards)  # (T, n)
    done = np.stack(dones)
    # discounted Monte Carlo returns (0 beyond the data) give the scale of Q
    returns = torch.zeros_like(reward)
    running = torch.zeros(n)
    for t in range(steps - 1, -1, -1):
        running = reward[t] + config.gamma * running * torch.as_tensor(~done[t],
                                                                       dtype=torch.float32)
        returns[t] = running
    scale = float(returns.pow(2).mean().sqrt().clamp_min(1e-6))

    return Transitions(
        torch.stack(states), torch.stack(actions), reward / scale, torch.stack(next_states),
        torch.stack(next_actions), torch.stack(not_done),
        torch.as_tensor(done, dtype=torch.float32), scale, episodes,
        time.perf_counter() - start,
    )


def _robust_actions(q: QNetwork, states, actions, eps: float, steps: int, generator):
    """argmax_{a^ in B_inf(a, eps)} (Q(s, a^) - Q(s, a))^2 by signed gradient steps."""
    with torch.no_grad():
        reference = q(states, actions)
    perturbed = actions + eps * (2 * torch.rand(actions.shape, generator=generator) - 1)
    for _ in range(steps):
        perturbed.requires_grad_(True)
        gap = (q(states, perturbed) - reference).pow(2).sum()
        (grad,) = torch.autograd.grad(gap, perturbed)
        with torch.no_grad():
            perturbed = actions + (perturbed + 0.5 * eps * grad.sign() - actions).clamp(-eps, eps)
    return perturbed.detach()


@dataclass
class SarsaResult:
    q: QNetwork
    config: SarsaConfig
    reward_scale: float
    td_rmse: float  # root mean squared TD error at the end, in reward units of the task
    td_rmse_relative: float  # the same over the RMS of the targets
    gradient_steps: int
    wall_time_s: float  # training, plus collection if it collected
    samples_per_s: float  # collection throughput (victim transitions per second)
    curve: dict = field(default_factory=dict)

    def report(self) -> dict:
        return {
            "samples": self.config.samples, "gradient_steps": self.gradient_steps,
            "action_eps": self.config.action_eps, "reg": self.config.reg,
            "td_rmse": round(self.td_rmse, 4), "td_rmse_relative": round(self.td_rmse_relative, 4),
            "reward_scale": round(self.reward_scale, 3), "wall_time_s": round(self.wall_time_s, 1),
            "samples_per_s": round(self.samples_per_s, 1), "curve": self.curve,
        }


@torch.no_grad()
def _values(q: QNetwork, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Q over a (T, n, ...) batch, shape (T, n)."""
    shape = states.shape[:2]
    return q(states.reshape(-1, states.shape[-1]), actions.reshape(-1, actions.shape[-1])
             ).reshape(shape)


def _td_errors(q: QNetwork, data: Transitions, gamma: float):
    """One-step TD errors r + gamma Q(s', a') - Q(s, a) and their targets, flat."""
    target = data.rewards + gamma * data.not_done * _values(q, data.next_states,
                                                            data.next_actions)
    return (target - _values(q, data.states, data.actions)).reshape(-1), target.reshape(-1)


def sarsa_lambda_targets(q: QNetwork, data: Transitions, gamma: float, lam: float):
    """The Sarsa(lambda) targets G_t of the module docstring, shape (T, n)."""
    q_next = _values(q, data.next_states, data.next_actions)
    targets = torch.zeros_like(q_next)
    following = q_next[-1]
    for t in range(q_next.shape[0] - 1, -1, -1):
        tail = torch.where(data.episode_end[t] > 0, q_next[t], following)
        targets[t] = data.rewards[t] + gamma * data.not_done[t] * (
            (1 - lam) * q_next[t] + lam * tail)
        following = targets[t]
    return targets


def train_robust_sarsa(
    agent: Agent, config: SarsaConfig | None = None, data: Transitions | None = None,
    progress: bool = False,
) -> SarsaResult:
    """Learn the victim's Q by robust fitted Sarsa; ``data`` reuses collected transitions."""
    config = (config or SarsaConfig()).validate()
    torch.set_num_threads(1)
    start = time.perf_counter()
    if data is None:
        data = collect_transitions(agent, config)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed + 1)
    q = QNetwork(agent.policy.obs_dim, data.actions.shape[-1], config.hidden)
    optimizer = torch.optim.Adam(q.parameters(), lr=config.learning_rate)
    size = len(data)
    states = data.states.reshape(size, -1)
    actions = data.actions.reshape(size, -1)
    steps = 0
    curve: dict[str, list] = {"sweep": [], "td_rmse": []}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.sweeps, unit="sweep", desc="robust sarsa")
    for sweep in range(config.sweeps):
        targets = sarsa_lambda_targets(q, data, config.gamma, config.sarsa_lambda).reshape(-1)
        for _ in range(config.epochs_per_sweep):
            perm = torch.randperm(size, generator=generator)
            for i in range(0, size, config.minibatch):
                idx = perm[i:i + config.minibatch]
                s, a = states[idx], actions[idx]
                pred = q(s, a)
                loss = (pred - targets[idx]).pow(2).mean()
                if config.reg > 0 and config.action_eps > 0:
                    robust = _robust_actions(q, s, a, config.action_eps, config.reg_steps,
                                             generator)
                    loss = loss + config.reg * (q(s, robust) - pred).pow(2).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                steps += 1
        errors, td_targets = _td_errors(q, data, config.gamma)
        curve["sweep"].append(sweep + 1)
        curve["td_rmse"].append(round(float(errors.pow(2).mean().sqrt()) * data.reward_scale, 4))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    rmse = float(errors.pow(2).mean().sqrt())  # after the last sweep
    return SarsaResult(
        q=q.eval(), config=config, reward_scale=data.reward_scale,
        td_rmse=rmse * data.reward_scale,
        td_rmse_relative=rmse / float(td_targets.pow(2).mean().sqrt().clamp_min(1e-12)),
        gradient_steps=steps, wall_time_s=time.perf_counter() - start,
        samples_per_s=len(data) / max(data.wall_time_s, 1e-9), curve=curve,
    )
