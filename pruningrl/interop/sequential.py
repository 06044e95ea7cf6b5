"""A plain ``nn.Sequential`` of Linear layers and one elementwise activation, as a policy.

The network alone does not say what its outputs mean, so the caller states the policy kind:
``"categorical"`` (outputs are logits) or ``"gaussian"`` with ``log_std`` (outputs are the mean
of a Gaussian with that state-independent log-standard-deviation). ``from_sequential`` copies
the weights into a ``pruningrl`` agent; ``sequential_from_state_dict`` rebuilds the network
from a saved ``state_dict()`` and its activation (the state dict does not hold it).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from pruningrl.agent import Agent
from pruningrl.bounds import mlp_view
from pruningrl.interop.assemble import ObsStats, Source, assemble_agent
from pruningrl.interop.files import linear_chain, state_dict
from pruningrl.policies import ACTIVATIONS


def from_sequential(
    net: nn.Sequential,
    env_id: str,
    kind: str,
    *,
    log_std: float | torch.Tensor | None = None,
    value: nn.Sequential | None = None,
    obs_mean: np.ndarray | None = None,
    obs_var: np.ndarray | None = None,
    clip_obs: float = 10.0,
    clip_actions: bool = True,
) -> Agent:
    """The ``pruningrl.agent.Agent`` acting with ``net`` on ``env_id``.

    ``value`` is an optional critic of the same form (without one, V = 0). ``obs_mean`` and
    ``obs_var`` normalize observations as the agent saw them in training (default: raw).
    """
    view = mlp_view(net, kind, log_std)  # checks the form, the kind and log_std
    if (obs_mean is None) != (obs_var is None):
        raise ValueError("give both obs_mean and obs_var, or neither")
    stats = None if obs_mean is None else ObsStats(np.asarray(obs_mean), np.asarray(obs_var),
                                                   clip_obs)
    return assemble_agent(env_id, Source(
        kind=kind,
        layers=_layers(net),
        activation=view.activation or "tanh",
        log_std=None if log_std is None else torch.as_tensor(log_std, dtype=torch.float32),
        value_layers=None if value is None else _layers(_critic(value, view.activation)),
        obs_stats=stats,
        clip_actions=clip_actions,
        provenance={"format": "nn.Sequential", "kind": kind},
    ))


def sequential_from_state_dict(
    state: Mapping[str, torch.Tensor], activation: str = "tanh"
) -> nn.Sequential:
    """Rebuild ``Linear, act, Linear, act, ..., Linear`` from its ``state_dict()``."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; use one of {sorted(ACTIVATIONS)}")
    state = state_dict(state, "the state dict")
    layers = linear_chain(state, "", "the state dict")
    unknown = sorted(set(state) - {f"{2 * i}.{p}" for i in range(len(layers))
                                   for p in ("weight", "bias")})
    if unknown:
        raise ValueError(f"the state dict holds {unknown[:3]}, which no Linear layer of a plain "
                         "nn.Sequential would")
    modules: list[nn.Module] = []
    for i, (weight, bias) in enumerate(layers):
        linear = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            linear.weight.copy_(weight)
            linear.bias.copy_(bias)
        modules += [linear] if i == len(layers) - 1 else [linear, ACTIVATIONS[activation]()]
    return nn.Sequential(*modules)


def _critic(net: nn.Sequential, activation: str | None) -> nn.Sequential:
    """The critic, checked to share the actor's activation (the agent's networks share one)."""
    own = mlp_view(net).activation
    if None not in (own, activation) and own != activation:
        raise ValueError(f"the critic uses {own} and the actor {activation}; they must agree")
    return net


def _layers(net: nn.Sequential) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for layer in net:
        if isinstance(layer, nn.Linear):
            weight = layer.weight.detach().to(torch.float32)
            bias = (layer.bias.detach().to(torch.float32) if layer.bias is not None
                    else torch.zeros(weight.shape[0]))
            out.append((weight, bias))
    return out
