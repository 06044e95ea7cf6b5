"""Adversaries on normalised observations inside an l_p ball B_p(s, eps), p in {2, inf}.

Every perturbation is projected into the ball, and the projection is asserted.

* ``project_to_ball`` / ``random_in_ball``: the geometry.
* ``maximize_tv``: projected gradient ascent with random restarts on TV(pi(.|s), pi(.|s')),
  the strongest per-state attack on the certified quantity. Its value is a lower bound on
  sup_{s'} TV, the left end of the sandwich attack <= true <= local bound <= global bound.
* Attacks on an agent's observations during an episode (SA-PPO's evaluation suite, Zhang et
  al. 2020), each a batched function of normalized states and, through ``AttackWrapper``, a
  gymnasium observation wrapper:
  - ``random_attack``: uniform noise in the ball;
  - ``critic_attack``: PGD that minimizes the agent's own value V(s') (Pattanaik et al. 2018);
  - ``mad_attack``: PGD/SGLD that maximizes KL(pi(.|s) || pi(.|s')), the "maximal action
    difference" attack;
  - ``robust_sarsa_attack``: PGD that minimizes a learned Q(s, pi(s')) (RS), optionally mixed
    with MAD's action change (RS+MAD).
  The learned adversaries (ATLA's optimal attack, PA-AD) live in ``pruningrl.adversaries``, and
  ``pruningrl.attack_suite.make_attack(name, agent, eps)`` builds any attack by name.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from pruningrl.balls import (
    BALL_TOLERANCE,
    ascent_direction,
    assert_in_ball,
    project_to_ball,
    random_in_ball,
)
from pruningrl.bounds import _check_eps, parse_norm
from pruningrl.policies import CategoricalPolicy, GaussianPolicy

__all__ = [
    "BALL_TOLERANCE",
    "AttackWrapper",
    "assert_in_ball",
    "critic_attack",
    "mad_attack",
    "maximize_tv",
    "project_to_ball",
    "random_attack",
    "random_in_ball",
    "robust_sarsa_attack",
]

def _tv_objective(policy: nn.Module, clean_out: torch.Tensor, attacked: torch.Tensor):
    """Per-state (surrogate to ascend, exact TV) for the attacked observations."""
    out = policy(attacked)
    if isinstance(policy, GaussianPolicy):
        shift = (out - clean_out) * torch.exp(-policy.log_std)
        delta = shift.norm(dim=-1)
        return shift.pow(2).sum(-1), torch.erf(delta / (2 * math.sqrt(2)))
    if isinstance(policy, CategoricalPolicy):
        tv = 0.5 * (torch.softmax(out, -1) - torch.softmax(clean_out, -1)).abs().sum(-1)
        return tv, tv
    raise ValueError(f"maximize_tv needs a GaussianPolicy or CategoricalPolicy, got {type(policy)}")


def maximize_tv(
    policy: nn.Module,
    states: torch.Tensor,
    eps: float,
    norm: str | float = "inf",
    steps: int = 50,
    restarts: int = 5,
    step_size: float | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PGD with random restarts on TV(pi(.|s), pi(.|s + delta)), ||delta||_p <= eps.

    l_inf: signed-gradient steps; l_2: normalised-gradient steps. The step size decays
    linearly from ``step_size`` (default eps / 4) to a tenth of it. Returns the best attacked
    states found, shape like ``states``, and their exact TV (float64), shape (batch,).
    """
    eps, p = _check_eps(eps), parse_norm(norm)
    states = torch.as_tensor(states, dtype=torch.float32)
    if states.dim() != 2:
        raise ValueError(f"states must have shape (batch, obs_dim), got {tuple(states.shape)}")
    generator = torch.Generator().manual_seed(seed)
    base_step = eps / 4 if step_size is None else step_size
    with torch.no_grad():
        clean_out = policy(states)
    best_states = states.clone()
    best_tv = torch.zeros(states.shape[0], dtype=torch.float64)
    if eps == 0:
        return best_states, best_tv
    requires_grad = [q.requires_grad for q in policy.parameters()]
    for q in policy.parameters():
        q.requires_grad_(False)
    try:
        for restart in range(restarts):
            delta = random_in_ball(states.shape, eps, norm, generator) if restart else (
                torch.zeros_like(states) + 1e-3 * eps * torch.randn(states.shape,
                                                                     generator=generator))
            for step in range(steps + 1):
                delta.requires_grad_(True)
                surrogate, tv = _tv_objective(policy, clean_out, states + delta)
                improved = tv.detach().to(torch.float64) > best_tv
                best_tv = torch.where(improved, tv.detach().to(torch.float64), best_tv)
                best_states[improved] = (states + delta.detach())[improved]
                if step == steps:
                    break
                (grad,) = torch.autograd.grad(surrogate.sum(), delta)
                size = base_step * (1 - 0.9 * step / max(steps - 1, 1))
                with torch.no_grad():
                    if p == math.inf:
                        delta = delta + size * grad.sign()
                    else:
                        delta = delta + size * grad / grad.norm(dim=-1, keepdim=True).clamp_min(
                            1e-12)
                    delta = project_to_ball(delta, eps, norm)
    finally:
        for q, flag in zip(policy.parameters(), requires_grad, strict=True):
            q.requires_grad_(flag)
    assert_in_ball(best_states - states, eps, norm)
    return best_states, best_tv


# ---------------------------------------------------------------------------------------------
# Attacks on an agent's observations
# ---------------------------------------------------------------------------------------------

def random_attack(
    states: torch.Tensor, eps: float, norm: str = "inf", generator: torch.Generator | None = None
) -> torch.Tensor:
    """s' = s + u, u uniform in B_p(0, eps)."""
    eps = _check_eps(eps)
    attacked = states + random_in_ball(tuple(states.shape), eps, norm, generator=generator)
    assert_in_ball(attacked - states, eps, norm)
    return attacked


def _pgd_descent(
    objective, states: torch.Tensor, eps: float, norm: str, steps: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """argmin_{s' in B(s, eps)} sum objective(s') by PGD from a uniform start in the ball:
    ``steps`` signed (l_inf) or normalized (l_2) steps of 2.5 eps / steps, each projected."""
    eps = _check_eps(eps)
    if eps == 0:
        return states
    delta = random_in_ball(tuple(states.shape), eps, norm, generator=generator)
    step = 2.5 * eps / steps
    for _ in range(steps):
        delta.requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(objective(states + delta).sum(), delta)
        with torch.no_grad():
            delta = project_to_ball(delta - step * ascent_direction(grad, norm), eps, norm)
    attacked = (states + delta).detach()
    assert_in_ball(attacked - states, eps, norm)
    return attacked


def critic_attack(
    value: nn.Module,
    states: torch.Tensor,
    eps: float,
    norm: str = "inf",
    steps: int = 10,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """s' = argmin_{s' in B(s, eps)} V(s') by ``steps`` of PGD from a random start.

    The agent then acts as if it were in the state its own critic values least. For a
    ``ValueNetwork`` the loop runs in numpy (``pruningrl.gradients.NumpyMLP``: dV/ds' is its
    input gradient), where ten small steps per state cost a fraction of torch's call overhead;
    any other module goes through autograd. Both take the same steps from the same start.
    """
    from pruningrl.policies import ValueNetwork

    if not isinstance(value, ValueNetwork) or _check_eps(eps) == 0:
        return _pgd_descent(lambda attacked: value(attacked), states, eps, norm, steps,
                            generator)
    from pruningrl.gradients import NumpyMLP

    mlp = NumpyMLP(value.net, np.float32)
    s = states.detach().numpy().astype(np.float32, copy=False)
    delta = random_in_ball(tuple(states.shape), eps, norm, generator=generator).numpy()
    ones = np.ones((s.shape[0], 1), dtype=np.float32)
    step = 2.5 * eps / steps
    for _ in range(steps):
        grad = mlp.vjp(s + delta, ones)
        delta = project_to_ball(delta - step * ascent_direction(grad, norm), eps, norm)
    attacked = states.detach() + torch.from_numpy(delta)
    assert_in_ball(attacked - states, eps, norm)
    return attacked


def mad_attack(
    policy: nn.Module,
    states: torch.Tensor,
    eps: float,
    norm: str = "inf",
    steps: int = 10,
    method: str = "sgld",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """s' = argmax_{s' in B(s, eps)} KL(pi(.|s) || pi(.|s')) (Gaussian: the squared
    Mahalanobis distance of the means), by PGD or SGLD: the SA-PPO inner maximization."""
    from pruningrl.ppo import worst_case_states

    eps = _check_eps(eps)
    attacked = worst_case_states(policy, states, eps, norm, steps, method, generator)
    assert_in_ball(attacked - states, eps, norm)
    return attacked


def robust_sarsa_attack(
    policy: nn.Module,
    q: nn.Module,
    states: torch.Tensor,
    eps: float,
    norm: str = "inf",
    steps: int = 10,
    action_ratio: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The Robust Sarsa attack (RS), and RS+MAD for ``action_ratio`` > 0 (Zhang et al. 2020):

        s' = argmin_{s' in B(s, eps)} (1 - rho) Q(s, a(s')) - rho mean_j ((mu_j(s') - mu_j(s))
                                                                         / sigma^_j)^2,

    with Q the victim's learned action value (``pruningrl.sarsa``), a(s') the victim's action
    input at s' (Gaussian mean; categorical probabilities), rho = ``action_ratio`` and sigma^
    the policy's standard deviations over their mean (1 for a categorical policy, whose
    logits take mu's place). PGD from a random start, ``steps`` signed (l_inf) or normalized
    (l_2) steps of 2.5 eps / steps.
    """
    if not 0.0 <= action_ratio <= 1.0:
        raise ValueError(f"action_ratio must lie in [0, 1], got {action_ratio}")
    discrete = isinstance(policy, CategoricalPolicy)
    with torch.no_grad():
        clean_out = policy(states)
        if discrete:
            scale = torch.ones(clean_out.shape[-1])
        else:
            sigma = policy.log_std.exp()
            scale = sigma / sigma.mean()

    def objective(attacked: torch.Tensor) -> torch.Tensor:
        out = policy(attacked)
        value = (1.0 - action_ratio) * q(states, torch.softmax(out, -1) if discrete else out)
        if action_ratio == 0:
            return value
        return value - action_ratio * ((out - clean_out) / scale).pow(2).mean(-1)

    return _pgd_descent(objective, states, eps, norm, steps, generator)


class AttackWrapper(gym.ObservationWrapper):
    """A gymnasium observation wrapper that perturbs an agent's observations.

    ``observation(o)`` normalizes o with the agent's frozen statistics, applies ``attack``
    inside the ball, and maps the result back to raw coordinates, so the agent, normalizing
    again, sees exactly the attacked state (away from the clip at +-10).
    """

    def __init__(self, env: gym.Env, agent, attack) -> None:
        super().__init__(env)
        self.agent, self.attack = agent, attack

    def observation(self, observation: np.ndarray) -> np.ndarray:
        state = self.agent.normalize(observation[None])
        with torch.no_grad():
            attacked = self.attack(state)[0].double().numpy()
        if not self.agent.normalize_obs:
            return attacked.astype(observation.dtype)
        std = np.sqrt(self.agent.obs_var + 1e-8)
        return (attacked * std + self.agent.obs_mean).astype(observation.dtype)
