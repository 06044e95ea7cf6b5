"""Proximal policy optimization (Schulman et al. 2017) with GAE, and the SA-PPO regularizer.

The objective, per minibatch of states s, actions a, old log-probabilities and advantages A:

    r(theta)  = pi_theta(a|s) / pi_old(a|s)
    L_clip    = -E[ min(r A, clip(r, 1 - c, 1 + c) A) ]                     (policy)
    L_value   = 1/2 E[ (V_phi(s) - R)^2 ],   R = A + V_old(s)               (critic)
    L_SA      = kappa E[ max_{s' in B(s, eps)} D(pi(.|s), pi(.|s')) ]       (SA-PPO, optional)
    loss      = L_clip + c_v L_value - c_H H[pi] + L_SA

with generalized advantage estimation (Schulman et al. 2016),

    delta_t = r_t + gamma V(s_{t+1}) (1 - done_t) - V(s_t),
    A_t     = delta_t + gamma lambda (1 - done_t) A_{t+1},

where a time-limit truncation is not a terminal state: its reward is bootstrapped,
r_t <- r_t + gamma V(s_final). D is ||Sigma^{-1/2}(mu(s') - mu(s))||^2 for a Gaussian policy
(twice the KL of two Gaussians with the same Sigma) and KL(pi(.|s) || pi(.|s')) for a categorical
one (Zhang et al. 2020). The inner maximum is found by PGD or SGLD on the normalized state, or
bounded from above by a convex relaxation of the network (``sa_method="convex"``, SA-PPO's
convex variant: ``pruningrl.certified_training``), and eps grows linearly from 0 over the first
``sa_ramp`` of training, as in SA-PPO.

The defaults are SA-PPO's MuJoCo settings (Zhang et al. 2020): 2048 samples per iteration,
10 epochs, 32 minibatches, clip 0.2, gamma 0.99, lambda 0.95, 64-64 tanh networks,
observations and rewards normalized and clipped at 10.
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pruningrl.agent import Agent, _atomic_write, _attach_masks, clone_policy, save_agent
from pruningrl.balls import ascent_direction, project_to_ball, random_in_ball
from pruningrl.certified_training import SA_OBJECTIVES, convex_sa_regularizer
from pruningrl.envs import EnvSpec, VectorEnv, check_env_id, check_seed, env_spec
from pruningrl.gradients import NumpyGradients, NumpyMLP, divergence_gradients
from pruningrl.normalization import ObservationNormalizer, RewardScaler
from pruningrl.numerics import numeric_path
from pruningrl.policies import (
    CategoricalPolicy,
    GaussianPolicy,
    Policy,
    ValueNetwork,
    refresh_pruned_weights,
)
from pruningrl.reproducibility import code_version, seed_everything

#: the SA regularizer's inner solvers: ascent from below (PGD, SGLD) or a bound from above
SA_METHODS = ("pgd", "sgld", "convex")


@dataclass
class PPOConfig:
    """Every hyperparameter of a run. Defaults: SA-PPO's MuJoCo settings."""

    env_id: str = "Hopper-v5"
    env_kwargs: dict = field(default_factory=dict)  # for gymnasium.make (learned adversaries)
    total_steps: int = 1_000_000
    seed: int = 0
    # sampling layout: steps_per_iteration = num_envs x (steps per env per iteration)
    steps_per_iteration: int = 2048
    num_envs: int = 8
    num_workers: int = 0  # env processes; 0 steps them inline (2 is faster for one run alone on
    # 2 cores, see benchmarks/ppo_throughput.py; 0 when several runs share the cores)
    # optimisation
    epochs: int = 10
    minibatches: int = 32
    learning_rate: float = 3e-4
    anneal_lr: bool = True
    adam_eps: float = 1e-5
    clip_coef: float = 0.2
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    max_grad_norm: float = 0.5
    normalize_advantages: bool = True
    # returns
    gamma: float = 0.99
    gae_lambda: float = 0.95
    # normalization
    normalize_obs: bool = True
    normalize_reward: bool = True
    clip_obs: float = 10.0
    clip_reward: float = 10.0
    freeze_obs_norm: bool = False  # fine-tuning keeps the agent's statistics (its threat model)
    # networks
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    log_std_init: float = 0.0
    # SA-PPO: kappa * max_{s' in B(s, eps)} D(pi(.|s), pi(.|s'))
    sa_reg: float = 0.0
    sa_eps: float = 0.0
    sa_norm: str = "inf"
    sa_steps: int = 10
    sa_method: str = "sgld"
    sa_ramp: float = 0.75
    # SA-PPO's code lets the regularizer's gradient reach the standard deviation
    # (robust_ppo_detach_stdev false); True holds Sigma fixed inside the regularizer
    sa_detach_std: bool = True
    # the convex bound is (1 - w) CROWN-IBP + w IBP, w growing with eps from 0 to this share over
    # the ramp: SA-PPO's schedule ends at pure IBP (1.0), whose looseness the policy must absorb
    sa_ibp_weight: float = 1.0
    # what the convex bound bounds: SA-PPO's divergence, or (categorical) the worst-case loss of
    # the clean greedy action, which trains a certified action (certified_training's "margin")
    sa_objective: str = "divergence"
    # the loss's closed-form gradient (pruningrl.gradients) instead of autograd, where it applies
    analytic_gradients: bool = True
    # bookkeeping
    checkpoint_every: int = 5

    @property
    def steps_per_env(self) -> int:
        return self.steps_per_iteration // self.num_envs

    @property
    def minibatch_size(self) -> int:
        return self.steps_per_iteration // self.minibatches

    @property
    def iterations(self) -> int:
        return max(1, math.ceil(self.total_steps / self.steps_per_iteration))

    @property
    def variant(self) -> str:
        if self.sa_reg == 0:
            return "ppo"
        if self.sa_method != "convex":
            return "sappo"
        return "sappo-margin" if self.sa_objective == "margin" else "sappo-convex"

    def validate(self) -> PPOConfig:
        """Raise a one-line ``ValueError`` for an impossible configuration."""
        check_env_id(self.env_id)
        if self.total_steps <= 0:
            raise ValueError(f"total_steps must be positive, got {self.total_steps}")
        check_seed(self.seed)
        for name in ("steps_per_iteration", "num_envs", "epochs", "minibatches", "sa_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.steps_per_iteration % self.num_envs:
            raise ValueError("steps_per_iteration must be a multiple of num_envs")
        if self.steps_per_iteration % self.minibatches:
            raise ValueError("steps_per_iteration must be a multiple of minibatches")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.sa_reg < 0 or self.sa_eps < 0:
            raise ValueError(f"sa_reg and sa_eps must be >= 0, got {self.sa_reg}, {self.sa_eps}")
        if self.sa_reg > 0 and self.sa_eps == 0:
            raise ValueError("the SA regularizer (sa_reg > 0) needs a positive sa_eps")
        if self.sa_method not in SA_METHODS:
            raise ValueError(f"unknown sa_method {self.sa_method!r}; use one of "
                             f"{', '.join(SA_METHODS)}")
        if not 0 <= self.sa_ramp <= 1:
            raise ValueError(f"sa_ramp must lie in [0, 1], got {self.sa_ramp}")
        if not 0 <= self.sa_ibp_weight <= 1:
            raise ValueError(f"sa_ibp_weight must lie in [0, 1], got {self.sa_ibp_weight}")
        if self.sa_objective not in SA_OBJECTIVES:
            raise ValueError(f"unknown sa_objective {self.sa_objective!r}; use one of "
                             f"{', '.join(SA_OBJECTIVES)}")
        if self.sa_objective == "margin" and self.sa_method != "convex":
            raise ValueError("the margin objective is a convex bound: it needs "
                             "sa_method='convex'")
        return self

    def to_dict(self) -> dict:
        out = asdict(self)
        out["hidden"] = list(self.hidden)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> PPOConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown PPO settings {unknown}")
        data = dict(data)
        if "hidden" in data:
            data["hidden"] = tuple(data["hidden"])
        return cls(**data)


# ----------------------------------------------------------------------------- the losses


def log_prob_and_entropy(
    policy: Policy, obs: torch.Tensor, actions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi(a|s) per row, and the mean entropy H[pi(.|s)], without distribution objects.

    Gaussian: log N(a; mu, sigma^2) = -sum_j [ (a_j - mu_j)^2 / (2 sigma_j^2) + log sigma_j ]
    - (d/2) log 2 pi, entropy sum_j log sigma_j + (d/2)(1 + log 2 pi).
    Categorical: log softmax(z)_a, entropy -sum_k p_k log p_k.
    """
    out = policy.net(obs)
    if isinstance(policy, GaussianPolicy):
        log_std = policy.log_std
        z = (actions - out) * torch.exp(-log_std)
        d = out.shape[-1]
        log_prob = -0.5 * z.pow(2).sum(-1) - log_std.sum() - 0.5 * d * math.log(2 * math.pi)
        entropy = log_std.sum() + 0.5 * d * (1.0 + math.log(2 * math.pi))
        return log_prob, entropy
    log_p = torch.log_softmax(out, dim=-1)
    log_prob = log_p.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    entropy = -(log_p.exp() * log_p).sum(-1).mean()
    return log_prob, entropy


def clipped_surrogate(
    log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor, clip: float
) -> torch.Tensor:
    """L_clip = -mean(min(r A, clip(r, 1 - c, 1 + c) A)), r = exp(log_prob - old_log_prob)."""
    ratio = torch.exp(log_prob - old_log_prob)
    return -torch.min(ratio * advantages, ratio.clamp(1 - clip, 1 + clip) * advantages).mean()


def policy_divergence(policy: Policy, clean_out: torch.Tensor, attacked_out: torch.Tensor,
                      detach_std: bool = True):
    """D per row: ||Sigma^{-1/2}(mu' - mu)||^2 (Gaussian; Sigma held fixed unless
    ``detach_std`` is False) or KL(p || p')."""
    if isinstance(policy, GaussianPolicy):
        log_std = policy.log_std.detach() if detach_std else policy.log_std
        inv_var = torch.exp(-2 * log_std)
        return ((attacked_out - clean_out).pow(2) * inv_var).sum(-1)
    log_p = torch.log_softmax(clean_out, -1)
    log_q = torch.log_softmax(attacked_out, -1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def worst_case_states(
    policy: Policy,
    states: torch.Tensor,
    eps: float,
    norm: str = "inf",
    steps: int = 10,
    method: str = "sgld",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Approximately argmax_{s' in B(s, eps)} D(pi(.|s), pi(.|s')) per row (no parameter grads).

    PGD: a uniform start in the ball and ``steps`` signed-gradient (inf) or normalized-gradient
    (2) steps of size 2.5 eps / steps (Madry et al. 2018), each projected back into the ball.
    SGLD: the same ascent plus Gaussian noise of scale sqrt(2 eta) T (T = 1e-3 eps) at each step,
    as the SA-PPO code's stochastic gradient Langevin variant.
    """
    if eps <= 0:
        return states
    # the loop runs in numpy on a snapshot of the network (pruningrl.gradients.NumpyMLP): ten
    # small steps per minibatch cost less there than torch's per-call overhead
    mlp = NumpyMLP(policy.net, np.float32)
    s = states.detach().numpy().astype(np.float32, copy=False)
    clean = mlp(s)
    # a random start: at s' = s the divergence has its minimum and a zero gradient
    delta = random_in_ball(tuple(states.shape), eps, norm, generator=generator).numpy()
    if method == "sgld":
        noise = torch.randn((steps, *states.shape), generator=generator).numpy()
    step = 2.5 * eps / steps
    for k in range(steps):
        hs = mlp.hidden(s + delta)
        _, grad_out, _ = divergence_gradients(policy, clean, mlp.output(hs))
        delta += step * ascent_direction(mlp.vjp(hs[0], grad_out, hs), norm)
        if method == "sgld":
            delta += (math.sqrt(2 * step) * 1e-3 * eps) * noise[k]
        delta = project_to_ball(delta, eps, norm)
    return states.detach() + torch.from_numpy(delta)


def sa_regularizer(
    policy: Policy,
    states: torch.Tensor,
    eps: float,
    norm: str = "inf",
    steps: int = 10,
    method: str = "sgld",
    generator: torch.Generator | None = None,
    detach_std: bool = True,
) -> torch.Tensor:
    """mean_s max_{s' in B(s, eps)} D(pi(.|s), pi(.|s')), differentiable in the policy's weights
    (and in its log-standard-deviation unless ``detach_std``)."""
    attacked = worst_case_states(policy, states, eps, norm, steps, method, generator)
    return policy_divergence(policy, policy.net(states), policy.net(attacked),
                             detach_std).mean()


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    last_values: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """Generalized advantage estimates for a (T, N) rollout; ``dones`` ends bootstrapping."""
    advantages = torch.zeros_like(rewards)
    next_adv = torch.zeros_like(last_values)
    next_values = last_values
    for t in range(rewards.shape[0] - 1, -1, -1):
        live = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_values * live - values[t]
        next_adv = delta + gamma * lam * live * next_adv
        advantages[t] = next_adv
        next_values = values[t]
    return advantages


# ----------------------------------------------------------------------------- training

#: Called between updates as ``hook(policy, global_step, total_steps)``; pruning schedules use it.
UpdateHook = Callable[[nn.Module, int, int], None]


def make_policy(config: PPOConfig, obs_dim: int, act_dim: int, discrete: bool) -> Policy:
    if discrete:
        return CategoricalPolicy(obs_dim, act_dim, config.hidden, config.activation)
    return GaussianPolicy(obs_dim, act_dim, config.hidden, config.activation, config.log_std_init)


def _adam(params: list[torch.Tensor], config: PPOConfig) -> torch.optim.Adam:
    try:  # one fused kernel for all parameters where this torch supports it on CPU
        return torch.optim.Adam(params, lr=config.learning_rate, eps=config.adam_eps, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=config.learning_rate, eps=config.adam_eps)


def train_state_path(out: str | os.PathLike) -> Path:
    """Where ``train`` keeps what a resumed run needs beside the agent file."""
    out = Path(out)
    return out.with_name(out.name + ".train-state.pt")


@dataclass
class TrainResult:
    agent: Agent
    steps: int
    wall_time_s: float
    samples_per_s: float
    interrupted: bool = False


@dataclass
class _Run:
    """One training run: its settings, its networks and everything a checkpoint saves."""

    config: PPOConfig
    spec: EnvSpec
    policy: Policy
    value: ValueNetwork
    params: list[torch.Tensor]
    optimizer: torch.optim.Adam
    obs_norm: ObservationNormalizer
    reward_scaler: RewardScaler
    generator: torch.Generator
    init: Agent | None = None
    command: str | None = None
    extra_metadata: dict | None = None
    iteration: int = 0
    global_step: int = 0
    wall_before: float = 0.0  # seconds spent before a resume
    curve: dict[str, list] = field(default_factory=lambda: {
        "steps": [], "return": [], "length": [], "samples_per_s": [], "rollout_s": [],
        "update_s": [],
    })


def _setup_run(
    config: PPOConfig, init: Agent | None, command: str | None, extra_metadata: dict | None
) -> _Run:
    """Seed everything; build (or clone from ``init``) the networks, Adam and the normalizers."""
    config.validate()
    torch.set_num_threads(1)
    seed_everything(config.seed, deterministic=False)
    spec = env_spec(config.env_id, config.env_kwargs)
    if init is not None:
        if init.env_id != config.env_id:
            raise ValueError(f"the initial agent is for {init.env_id}, not {config.env_id}")
        policy, value = clone_policy(init.policy), copy.deepcopy(init.value)
    else:
        policy = make_policy(config, spec.obs_dim, spec.act_dim, spec.discrete)
        value = ValueNetwork(spec.obs_dim, config.hidden, config.activation)
    params = [p for p in (*policy.parameters(), *value.parameters())]
    optimizer = _adam(params, config)
    obs_norm = ObservationNormalizer(spec.obs_dim, config.clip_obs, config.normalize_obs)
    if init is not None:
        obs_norm.rms.mean, obs_norm.rms.var = init.obs_mean.copy(), init.obs_var.copy()
        obs_norm.rms.count = float(init.metadata.get("steps", 0)) or 1e4
    reward_scaler = RewardScaler(
        config.num_envs, config.gamma, config.clip_reward, config.normalize_reward
    )
    generator = torch.Generator().manual_seed(config.seed)
    return _Run(config=config, spec=spec, policy=policy, value=value, params=params,
                optimizer=optimizer, obs_norm=obs_norm, reward_scaler=reward_scaler,
                generator=generator, init=init, command=command, extra_metadata=extra_metadata)


def _numpy_state(state: dict) -> dict:
    """A saved running-statistics state with its tensors back as numpy arrays."""
    return {k: v.numpy() if torch.is_tensor(v) else v for k, v in state.items()}


def _load_train_state(run: _Run, out: str | os.PathLike | None) -> None:
    """Restore ``run`` from the training state beside ``out`` (the settings must match)."""
    if out is None or not train_state_path(out).is_file():
        raise ValueError(f"nothing to resume: no training state beside {out}")
    try:
        state = torch.load(train_state_path(out), weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the same bad input
        raise ValueError(
            f"unreadable training state {train_state_path(out)} ({type(error).__name__})"
        ) from None
    saved = PPOConfig.from_dict(json.loads(state["config"]))
    if {**saved.to_dict(), "total_steps": 0} != {**run.config.to_dict(), "total_steps": 0}:
        raise ValueError("the resumed run's settings differ from the saved ones")
    policy_state = dict(state["policy"])
    _attach_masks(run.policy, policy_state, train_state_path(out))  # a pruned run's masks
    run.policy.load_state_dict(policy_state)
    refresh_pruned_weights(run.policy)
    run.value.load_state_dict(state["value"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.obs_norm.rms.load_state_dict(_numpy_state(state["obs_rms"]))
    run.reward_scaler.rms.load_state_dict(_numpy_state(state["reward_rms"]))
    run.generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    run.iteration, run.global_step = int(state["iteration"]), int(state["global_step"])
    run.wall_before = float(state["wall_time_s"])
    run.curve = json.loads(state["curve"])


def _snapshot(run: _Run, wall: float) -> Agent:
    """The agent as it stands (sharing the run's networks), its metadata and curve included."""
    config, init = run.config, run.init
    return Agent(
        env_id=config.env_id,
        policy=run.policy,
        value=run.value,
        obs_mean=run.obs_norm.rms.mean.copy(),
        obs_var=run.obs_norm.rms.var.copy(),
        clip_obs=config.clip_obs,
        normalize_obs=config.normalize_obs,
        action_low=None if init is None else init.action_low,
        action_high=None if init is None else init.action_high,
        metadata={
            "algorithm": config.variant,
            "config": config.to_dict(),
            "seed": config.seed,
            "steps": run.global_step,
            "iterations": run.iteration,
            "wall_time_s": round(wall, 1),
            "samples_per_s": round(run.global_step / max(wall, 1e-9), 1),
            "code_version": code_version(),
            "numeric_path": numeric_path(),
            "command": run.command,
            **(run.extra_metadata or {}),
            "curve": run.curve,
        },
    )


def _save_train_state(run: _Run, out: str | os.PathLike, wall: float) -> None:
    """Write what ``_load_train_state`` restores to ``train_state_path(out)``, atomically."""
    state = {
        "config": json.dumps(run.config.to_dict()),
        "policy": run.policy.state_dict(),
        "value": run.value.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "obs_rms": {k: torch.as_tensor(v) for k, v in run.obs_norm.rms.state_dict().items()},
        "reward_rms": {
            k: torch.as_tensor(v) for k, v in run.reward_scaler.rms.state_dict().items()
        },
        "generator": run.generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "iteration": run.iteration,
        "global_step": run.global_step,
        "wall_time_s": wall,
        "curve": json.dumps(run.curve),
    }
    _atomic_write(train_state_path(out), lambda tmp: torch.save(state, tmp))


def _save(run: _Run, out: str | os.PathLike | None, wall: float) -> None:
    """Checkpoint: the agent to ``out`` and the training state beside it (nothing if no ``out``)."""
    if out is None:
        return
    save_agent(_snapshot(run, wall), out)
    _save_train_state(run, out, wall)


@dataclass
class _Rollout:
    """One iteration's (T, N) rollout buffers, and the envs' current raw observations."""

    obs: torch.Tensor  # normalized observations s_t
    act: torch.Tensor
    logp: torch.Tensor  # log pi_old(a_t|s_t)
    rew: torch.Tensor  # scaled rewards, plus gamma V(s_final) at a truncation
    done: torch.Tensor
    val: torch.Tensor  # V_old(s_t)
    raw_rewards: np.ndarray
    bootstrap: np.ndarray  # gamma V(s_final) where an episode was truncated, else 0
    raw_obs: np.ndarray | None = None
    episodes: list[tuple[float, int]] = field(default_factory=list)  # (return, length) ended

    @classmethod
    def allocate(cls, config: PPOConfig, spec: EnvSpec) -> _Rollout:
        """Zeroed buffers for T = steps_per_env steps of N = num_envs envs."""
        T, N = config.steps_per_env, config.num_envs
        obs = torch.zeros(T, N, spec.obs_dim)
        act = torch.zeros(T, N) if spec.discrete else torch.zeros(T, N, spec.act_dim)
        logp, rew, done, val = (torch.zeros(T, N) for _ in range(4))
        return cls(obs, act, logp, rew, done, val, np.zeros((T, N)), np.zeros((T, N)))


def _set_learning_rate(run: _Run) -> None:
    """lr_k = lr (1 - k / K) at iteration k of K, when annealing."""
    config = run.config
    if config.anneal_lr:
        for group in run.optimizer.param_groups:
            group["lr"] = config.learning_rate * (1.0 - run.iteration / config.iterations)


def _act(run: _Run, envs: VectorEnv, buf: _Rollout, t: int, noise: torch.Tensor) -> None:
    """Sample a_t ~ pi(.|s_t) for every env from the pre-drawn ``noise[t]`` and send it."""
    spec = run.spec
    obs = torch.from_numpy(run.obs_norm(buf.raw_obs))
    with torch.no_grad():
        out = run.policy.net(obs)
        if spec.discrete:  # inverse-CDF sampling with a pre-drawn uniform
            log_p = torch.log_softmax(out, -1)
            cdf = log_p.exp().cumsum(-1)
            action = torch.searchsorted(cdf, noise[t]).clamp_max(out.shape[-1] - 1)
            logp = log_p.gather(-1, action)[:, 0]
            action = action[:, 0]
        else:  # a = mu + sigma xi, log pi(a|s) = -|xi|^2/2 - sum log sigma - d/2 log 2 pi
            log_std = run.policy.log_std
            action = out + log_std.exp() * noise[t]
            logp = (-0.5 * noise[t].pow(2).sum(-1) - log_std.sum()
                    - 0.5 * out.shape[-1] * math.log(2 * math.pi))
        buf.val[t] = run.value(obs)
    buf.obs[t], buf.act[t], buf.logp[t] = obs, action, logp
    a = action.numpy()
    for gi, g in enumerate(envs.groups):  # the workers step their slices in parallel
        envs.step_group(gi, a[g] if spec.discrete
                        else np.clip(a[g], spec.action_low, spec.action_high))


def _observe(run: _Run, envs: VectorEnv, buf: _Rollout, t: int) -> None:
    """Receive r_t and s_{t+1}; a truncated episode's reward gains gamma V(s_final)."""
    for gi, g in enumerate(envs.groups):
        res = envs.recv_group(gi)
        buf.raw_rewards[t, g] = res.rewards
        buf.done[t, g] = torch.from_numpy((res.terminated | res.truncated).astype(np.float32))
        for i, final in res.final_obs.items():
            if res.truncated[i - g.start]:  # a time limit is not terminal: bootstrap
                with torch.no_grad():
                    v = run.value(torch.from_numpy(run.obs_norm(final[None])))
                buf.bootstrap[t, i] = run.config.gamma * float(v[0])
        buf.raw_obs[g] = res.obs
        buf.episodes.extend(res.episodes)
    rewards = run.reward_scaler(buf.raw_rewards[t], buf.done[t].numpy().astype(bool))
    buf.rew[t] = torch.from_numpy(rewards + buf.bootstrap[t])


def _collect_rollout(
    run: _Run, envs: VectorEnv, buf: _Rollout
) -> tuple[torch.Tensor, torch.Tensor]:
    """T steps of all N envs into ``buf``; the GAE advantages A and returns R = A + V_old.

    One batched inference for all envs per step (so a run does not depend on how envs map to
    workers); everything random is drawn per iteration from the run's generator.
    """
    config, spec = run.config, run.spec
    T, N = config.steps_per_env, config.num_envs
    buf.episodes.clear()
    buf.bootstrap[:] = 0.0
    act_dim = 1 if spec.discrete else spec.act_dim
    noise = (torch.rand((T, N, 1), generator=run.generator) if spec.discrete
             else torch.randn((T, N, act_dim), generator=run.generator))
    for t in range(T):
        _act(run, envs, buf, t, noise)
        if not config.freeze_obs_norm:
            run.obs_norm.update(buf.raw_obs)  # every observation is merged once, after use
        _observe(run, envs, buf, t)
    with torch.no_grad():
        last_values = run.value(torch.from_numpy(run.obs_norm(buf.raw_obs)))
        advantages = gae(buf.rew, buf.val, buf.done, last_values,
                         config.gamma, config.gae_lambda)
        returns = advantages + buf.val
    return advantages, returns


def sa_schedule(config: PPOConfig, iteration: int) -> tuple[float, float]:
    """(eps_k, w_k) at iteration k of K: the SA-PPO radius eps_k = eps r(k) and the convex
    bound's IBP share w_k = w r(k), where r(k) = min(1, (k / K) / ramp) grows linearly over the
    first ``sa_ramp`` of training (SA-PPO's and CROWN-IBP's schedule)."""
    progress = iteration / config.iterations
    reached = min(1.0, progress / config.sa_ramp) if config.sa_ramp > 0 else 1.0
    return config.sa_eps * reached, config.sa_ibp_weight * reached


def _convex_regularizer(run: _Run, obs: torch.Tensor, sa_eps: float) -> torch.Tensor:
    """kappa times the convex bound at radius eps_k, its IBP share w_k (``sa_schedule``)."""
    config = run.config
    weight = sa_schedule(config, run.iteration)[1]
    return config.sa_reg * convex_sa_regularizer(run.policy, obs, sa_eps, config.sa_norm,
                                                 config.sa_detach_std, weight,
                                                 config.sa_objective)


def _analytic_minibatch(
    run: _Run, fast: NumpyGradients, batch: Sequence[np.ndarray], rows: np.ndarray,
    sa_eps: float,
) -> None:
    """Closed-form gradients of the loss on the minibatch ``rows``, clipped, into ``.grad``."""
    config = run.config
    n_obs, n_act, n_logp, n_adv, n_ret = batch
    obs, adv = n_obs[rows], n_adv[rows]
    if config.normalize_advantages:
        adv = (adv - adv.mean()) / (adv.std(ddof=1) + 1e-8)
    fast.zero()
    fast.add_ppo(obs, n_act[rows], n_logp[rows], adv, n_ret[rows],
                 config.clip_coef, config.vf_coef, config.ent_coef)
    if config.sa_reg > 0 and sa_eps > 0 and config.sa_method == "convex":
        # the bound has no closed-form gradient here: its backward pass, by autograd
        fast.add_autograd(_convex_regularizer(run, torch.from_numpy(obs), sa_eps))
    elif config.sa_reg > 0 and sa_eps > 0:
        attacked = worst_case_states(
            run.policy, torch.from_numpy(obs), sa_eps, config.sa_norm,
            config.sa_steps, config.sa_method, run.generator)
        fast.add_sa(obs, attacked.numpy(), config.sa_reg, config.sa_detach_std)
    if config.max_grad_norm > 0:
        fast.clip(config.max_grad_norm)


def _autograd_minibatch(
    run: _Run, batch: Sequence[torch.Tensor], idx: torch.Tensor, sa_eps: float
) -> None:
    """loss = L_clip + c_v L_value - c_H H + L_SA on the minibatch ``idx``, backpropagated."""
    config, policy = run.config, run.policy
    b_obs, b_act, b_logp, b_adv, b_ret = batch
    obs = b_obs[idx]
    adv = b_adv[idx]
    if config.normalize_advantages:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    log_prob, entropy = log_prob_and_entropy(policy, obs, b_act[idx])
    loss = clipped_surrogate(log_prob, b_logp[idx], adv, config.clip_coef)
    loss = loss + config.vf_coef * 0.5 * (run.value(obs) - b_ret[idx]).pow(2).mean()
    if config.ent_coef:
        loss = loss - config.ent_coef * entropy
    if config.sa_reg > 0 and sa_eps > 0 and config.sa_method == "convex":
        loss = loss + _convex_regularizer(run, obs, sa_eps)
    elif config.sa_reg > 0 and sa_eps > 0:
        loss = loss + config.sa_reg * sa_regularizer(
            policy, obs, sa_eps, config.sa_norm, config.sa_steps,
            config.sa_method, run.generator, config.sa_detach_std)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.max_grad_norm > 0:
        nn.utils.clip_grad_norm_(run.params, config.max_grad_norm)


def _update(run: _Run, buf: _Rollout, advantages: torch.Tensor, returns: torch.Tensor) -> None:
    """Epochs x minibatches of Adam steps on the clipped objective over the flattened rollout."""
    config, spec = run.config, run.spec
    b_obs = buf.obs.reshape(-1, spec.obs_dim)
    b_act = buf.act.reshape(-1) if spec.discrete else buf.act.reshape(-1, spec.act_dim)
    batch = (b_obs, b_act, buf.logp.reshape(-1), advantages.reshape(-1), returns.reshape(-1))
    sa_eps = sa_schedule(config, run.iteration)[0]
    size = config.minibatch_size
    analytic = config.analytic_gradients
    if analytic:  # numpy views of this iteration's parameters and masks
        fast = NumpyGradients(run.policy, run.value)
        fast.attach()
        n_batch = tuple(x.numpy() for x in batch)
    for _ in range(config.epochs):
        perm = torch.randperm(config.steps_per_iteration, generator=run.generator)
        for k in range(config.minibatches):
            idx = perm[k * size:(k + 1) * size]
            if analytic:
                _analytic_minibatch(run, fast, n_batch, idx.numpy(), sa_eps)
            else:
                _autograd_minibatch(run, batch, idx, sa_eps)
            run.optimizer.step()
    refresh_pruned_weights(run.policy)  # keep layer.weight in step with W_orig * M


def _record_iteration(
    run: _Run, episodes: list[tuple[float, int]], rollout_s: float, iteration_s: float
) -> None:
    """Append the iteration to the curve: mean return and length of the episodes it ended."""
    curve = run.curve
    curve["steps"].append(run.global_step)
    curve["return"].append(
        round(float(np.mean([r for r, _ in episodes])), 2) if episodes else None)
    curve["length"].append(
        round(float(np.mean([n for _, n in episodes])), 1) if episodes else None)
    curve["samples_per_s"].append(round(run.config.steps_per_iteration / iteration_s, 1))
    curve["rollout_s"].append(round(rollout_s, 4))
    curve["update_s"].append(round(iteration_s - rollout_s, 4))


def _progress_bar(run: _Run):
    """A tqdm bar over the run's steps, starting where a resumed run left off."""
    from tqdm.auto import tqdm

    config = run.config
    return tqdm(total=config.iterations * config.steps_per_iteration, initial=run.global_step,
                unit="step", desc=f"{config.variant} {config.env_id} seed {config.seed}",
                dynamic_ncols=True, file=sys.stderr)


def _advance_bar(bar, run: _Run, episodes: list, recent: list[float], wall: float) -> None:
    """One iteration on; shows the mean of the last 20 episode returns and samples per second."""
    recent[:] = ([r for r, _ in episodes] or recent)[-20:]
    bar.update(run.config.steps_per_iteration)
    bar.set_postfix(ret=f"{np.mean(recent):.1f}" if recent else "-",
                    sps=f"{run.global_step / max(wall, 1e-9):.0f}", refresh=False)


def train(
    config: PPOConfig,
    out: str | os.PathLike | None = None,
    hooks: Sequence[UpdateHook] = (),
    resume: bool = False,
    progress: bool = True,
    command: str | None = None,
    init: Agent | None = None,
    extra_metadata: dict | None = None,
) -> TrainResult:
    """Train a PPO (or SA-PPO) agent; save it to ``out`` every few iterations and at the end.

    ``init`` starts from an existing agent (fine-tuning: its networks, pruning masks included,
    and its observation statistics, which stay frozen if ``config.freeze_obs_norm``).
    ``extra_metadata`` is stored with the agent (for example how it was pruned).

    With ``resume=True`` the run continues from ``out``'s training state (optimizer, normalizers,
    random state, curve); its environments start fresh episodes. Ctrl-C stops cleanly: the last
    saved checkpoint stays intact and ``TrainResult.interrupted`` is set.
    """
    run = _setup_run(config, init, command, extra_metadata)
    if resume:
        _load_train_state(run, out)
    buf = _Rollout.allocate(config, run.spec)
    env_seed = config.seed + 7919 * run.iteration
    envs = VectorEnv(config.env_id, config.num_envs, seed=env_seed,
                     num_workers=config.num_workers, env_kwargs=config.env_kwargs)
    bar, recent, interrupted = None, [], False
    start = time.perf_counter()
    try:
        buf.raw_obs = envs.reset(seed=env_seed)
        if progress:
            bar = _progress_bar(run)
        while run.iteration < config.iterations:
            iter_start = time.perf_counter()
            _set_learning_rate(run)
            advantages, returns = _collect_rollout(run, envs, buf)
            rollout_s = time.perf_counter() - iter_start
            _update(run, buf, advantages, returns)
            run.iteration += 1
            run.global_step += config.steps_per_iteration
            for hook in hooks:
                hook(run.policy, run.global_step, config.iterations * config.steps_per_iteration)
            _record_iteration(run, buf.episodes, rollout_s, time.perf_counter() - iter_start)
            wall = run.wall_before + time.perf_counter() - start
            if run.iteration % config.checkpoint_every == 0 or run.iteration == config.iterations:
                _save(run, out, wall)
            if bar is not None:
                _advance_bar(bar, run, buf.episodes, recent, wall)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        envs.close()
        if bar is not None:
            bar.close()
    wall = run.wall_before + time.perf_counter() - start
    if out is not None and not interrupted:
        train_state_path(out).unlink(missing_ok=True)
    return TrainResult(_snapshot(run, wall), run.global_step, wall,
                       run.global_step / max(wall, 1e-9), interrupted)
