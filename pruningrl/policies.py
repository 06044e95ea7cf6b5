"""Actor networks: Gaussian and categorical MLP policies, and a separate value network.

A policy module holds the actor alone. Its network ``policy.net`` is an ``nn.Sequential`` of
``nn.Linear`` layers separated by an elementwise activation (tanh or ReLU), the form that
``pruningrl.bounds`` certifies:

    z(s) = W_L sigma(W_{L-1} ... sigma(W_1 s + b_1) ... + b_{L-1}) + b_L.

* ``GaussianPolicy``: pi(.|s) = N(mu(s), diag(sigma^2)) with mu = z and a state-independent
  log-standard-deviation ``log_std`` (a parameter, never pruned).
* ``CategoricalPolicy``: pi(.|s) = softmax(z(s)).

Weights use orthogonal initialisation (gain sqrt 2 for hidden layers, 0.01 for the policy
output, 1 for the value output), as in PPO implementations since Schulman et al. (2017).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, Normal

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}


def build_mlp(
    in_dim: int,
    out_dim: int,
    hidden: Sequence[int] = (64, 64),
    activation: str = "tanh",
    output_gain: float = 1.0,
) -> nn.Sequential:
    """An MLP ``Linear -> act -> ... -> Linear`` with orthogonal weights and zero biases."""
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}"
        )
    if in_dim < 1 or out_dim < 1 or any(h < 1 for h in hidden):
        raise ValueError(f"layer sizes must be positive, got {in_dim}, {tuple(hidden)}, {out_dim}")
    sizes = [in_dim, *hidden, out_dim]
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        linear = nn.Linear(fan_in, fan_out)
        last = i == len(sizes) - 2
        nn.init.orthogonal_(linear.weight, gain=output_gain if last else math.sqrt(2.0))
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if not last:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def effective_weight(layer: nn.Linear) -> torch.Tensor:
    """The weight a layer computes with: W_orig * M if ``torch.nn.utils.prune`` masks it.

    Pruning stores ``weight_orig`` and ``weight_mask`` and recomputes ``layer.weight`` in a
    forward pre-hook, so between an optimizer step (or a state-dict load) and the next forward
    call ``layer.weight`` is stale. This is never stale.
    """
    mask, orig = getattr(layer, "weight_mask", None), getattr(layer, "weight_orig", None)
    if mask is not None and orig is not None:
        return orig * mask
    return layer.weight


def refresh_pruned_weights(module: nn.Module) -> nn.Module:
    """Recompute ``weight = weight_orig * weight_mask`` on every pruned Linear. Returns module."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear) and hasattr(layer, "weight_mask"):
            layer.weight = effective_weight(layer)
    return module


class GaussianPolicy(nn.Module):
    """pi(a|s) = N(mu_theta(s), diag(exp(2 log_std))), with a state-independent log-std."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (64, 64),
        activation: str = "tanh",
        log_std_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.hidden, self.activation = tuple(int(h) for h in hidden), activation
        self.net = build_mlp(obs_dim, act_dim, hidden, activation, output_gain=0.01)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std_init)))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """The mean action mu_theta(s)."""
        return self.net(obs)

    def distribution(self, obs: torch.Tensor) -> Distribution:
        """The action distribution for a batch of observations (independent over action dims)."""
        mean = self.net(obs)
        return Independent(Normal(mean, self.log_std.exp().expand_as(mean)), 1)

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """The mean action if deterministic, else a sample."""
        return self.net(obs) if deterministic else self.distribution(obs).sample()

    def config(self) -> dict:
        """Constructor arguments, to rebuild the module from a checkpoint."""
        return {
            "kind": "gaussian",
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "hidden": list(self.hidden),
            "activation": self.activation,
        }


class CategoricalPolicy(nn.Module):
    """pi(a|s) = softmax(z_theta(s))_a over ``n_actions`` discrete actions."""

    def __init__(
        self,
        obs_dim: int,
        n_actions: int,
        hidden: Sequence[int] = (64, 64),
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        self.obs_dim, self.n_actions = int(obs_dim), int(n_actions)
        self.hidden, self.activation = tuple(int(h) for h in hidden), activation
        self.net = build_mlp(obs_dim, n_actions, hidden, activation, output_gain=0.01)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """The logits z_theta(s)."""
        return self.net(obs)

    def distribution(self, obs: torch.Tensor) -> Distribution:
        """The action distribution for a batch of observations."""
        return Categorical(logits=self.net(obs))

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """The most likely action if deterministic, else a sample."""
        logits = self.net(obs)
        return logits.argmax(-1) if deterministic else Categorical(logits=logits).sample()

    def config(self) -> dict:
        """Constructor arguments, to rebuild the module from a checkpoint."""
        return {
            "kind": "categorical",
            "obs_dim": self.obs_dim,
            "n_actions": self.n_actions,
            "hidden": list(self.hidden),
            "activation": self.activation,
        }


class ValueNetwork(nn.Module):
    """The critic V_phi(s), a separate MLP with its own parameters."""

    def __init__(
        self, obs_dim: int, hidden: Sequence[int] = (64, 64), activation: str = "tanh"
    ) -> None:
        super().__init__()
        self.net = build_mlp(obs_dim, 1, hidden, activation, output_gain=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """V_phi(s) for a batch of observations, shape (batch,)."""
        return self.net(obs).squeeze(-1)


Policy = GaussianPolicy | CategoricalPolicy


def policy_from_config(config: dict) -> Policy:
    """Rebuild an (untrained) policy from ``policy.config()``."""
    kind = config.get("kind")
    if kind == "gaussian":
        return GaussianPolicy(
            config["obs_dim"], config["act_dim"], config["hidden"], config["activation"]
        )
    if kind == "categorical":
        return CategoricalPolicy(
            config["obs_dim"], config["n_actions"], config["hidden"], config["activation"]
        )
    raise ValueError(f"unknown policy kind {kind!r}; expected 'gaussian' or 'categorical'")
