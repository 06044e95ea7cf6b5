"""Assembling a ``pruningrl`` agent from another library's weights, checked against its env.

Every reader of a foreign format ends here: it hands over the policy's Linear layers (weight,
bias), the activation, the policy kind, optionally the critic's layers and observation
statistics, and a note of where the weights came from. This module checks the shapes against
the environment, refuses non-finite numbers, copies the weights into a ``GaussianPolicy`` or
``CategoricalPolicy`` (the form ``pruningrl.bounds`` certifies) and says, as a warning, what it
had to assume.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from pruningrl.agent import Agent
from pruningrl.envs import env_spec
from pruningrl.normalization import EPSILON
from pruningrl.policies import ACTIVATIONS, CategoricalPolicy, GaussianPolicy, ValueNetwork

Layers = Sequence[tuple[torch.Tensor, torch.Tensor]]


class InteropWarning(UserWarning):
    """Something a converted agent had to assume (no normalization statistics, no critic)."""


@dataclass(frozen=True)
class ObsStats:
    """Observation normalization: clip((s - mean) / sqrt(var + epsilon), -clip, clip)."""

    mean: np.ndarray
    var: np.ndarray
    clip: float = 10.0
    epsilon: float = EPSILON


@dataclass
class Source:
    """What a reader found: the policy's layers and everything needed to rebuild the agent."""

    kind: str  # "gaussian" or "categorical"
    layers: Layers
    activation: str
    log_std: torch.Tensor | None = None
    value_layers: Layers | None = None
    obs_stats: ObsStats | None = None
    clip_actions: bool = True
    provenance: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def assemble_agent(env_id: str, source: Source) -> Agent:
    """The ``Agent`` for ``source`` on ``env_id``; ``ValueError`` if they do not fit."""
    spec = env_spec(env_id)
    where = source.provenance.get("file", "the agent")
    _check_kind(source, spec.discrete, env_id)
    _check_finite(source, where)
    _check_chain(source.layers, spec.obs_dim, spec.act_dim, "policy", where)
    if source.activation not in ACTIVATIONS:
        raise ValueError(f"{where}: activation {source.activation!r} is not supported "
                         f"(supported: {', '.join(sorted(ACTIVATIONS))})")
    hidden = [w.shape[0] for w, _ in source.layers[:-1]]
    if source.kind == "gaussian":
        policy = GaussianPolicy(spec.obs_dim, spec.act_dim, hidden, source.activation)
        log_std = torch.as_tensor(source.log_std).reshape(-1).expand(spec.act_dim)
        with torch.no_grad():
            policy.log_std.copy_(log_std)
    else:
        policy = CategoricalPolicy(spec.obs_dim, spec.act_dim, hidden, source.activation)
    _copy_layers(policy.net, source.layers)
    notes = list(source.notes)
    value = _value_network(source, spec.obs_dim, where, notes)
    stats = source.obs_stats
    if stats is None:
        mean, var, clip, normalize = np.zeros(spec.obs_dim), np.ones(spec.obs_dim), 10.0, False
    else:
        mean, var, clip, normalize = _normalization(stats, spec.obs_dim, where)
    low = high = None
    if not spec.discrete and source.clip_actions:
        low, high = spec.action_low.copy(), spec.action_high.copy()
    for note in notes:
        warnings.warn(note, InteropWarning, stacklevel=3)
    return Agent(env_id, policy, value, mean, var, clip, normalize,
                 {"source": source.provenance, "notes": notes}, low, high)


def _check_kind(source: Source, discrete: bool, env_id: str) -> None:
    if source.kind not in ("gaussian", "categorical"):
        raise ValueError(f"unknown policy kind {source.kind!r}; use 'gaussian' or 'categorical'")
    if (source.kind == "categorical") != discrete:
        space = "discrete" if discrete else "continuous"
        raise ValueError(f"{env_id} has {space} actions, but the agent's policy is "
                         f"{source.kind}: is this the environment it was trained on?")
    if source.kind == "gaussian" and source.log_std is None:
        raise ValueError("a Gaussian policy needs its log-standard-deviation (log_std)")


def _check_finite(source: Source, where: str) -> None:
    tensors = [t for layer in source.layers for t in layer]
    tensors += [t for layer in (source.value_layers or []) for t in layer]
    if source.log_std is not None:
        tensors.append(torch.as_tensor(source.log_std))
    if source.obs_stats is not None:
        tensors += [torch.as_tensor(source.obs_stats.mean), torch.as_tensor(source.obs_stats.var)]
    if not all(bool(torch.isfinite(t).all()) for t in tensors):
        raise ValueError(f"{where}: its weights or statistics hold NaN or infinite values")


def _check_chain(layers: Layers, in_dim: int, out_dim: int, what: str, where: str) -> None:
    """Linear layers that chain from the env's observation to ``out_dim`` outputs."""
    if not layers:
        raise ValueError(f"{where}: the {what} network has no Linear layer")
    width = in_dim
    for i, (weight, bias) in enumerate(layers):
        if weight.dim() != 2 or weight.shape[1] != width or bias.shape != (weight.shape[0],):
            raise ValueError(
                f"{where}: {what} layer {i} has weight {tuple(weight.shape)} and bias "
                f"{tuple(bias.shape)}, but its input has {width} features (the environment's "
                f"observation has {in_dim}): is this the environment it was trained on?")
        width = weight.shape[0]
    if width != out_dim:
        raise ValueError(f"{where}: the {what} network has {width} outputs, the environment "
                         f"needs {out_dim}: is this the environment it was trained on?")


def _copy_layers(net: nn.Sequential, layers: Layers) -> None:
    linears = [m for m in net if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for linear, (weight, bias) in zip(linears, layers, strict=True):
            linear.weight.copy_(weight)
            linear.bias.copy_(bias)


def _value_network(source: Source, obs_dim: int, where: str, notes: list[str]) -> ValueNetwork:
    if source.value_layers is None:
        notes.append(f"{where} has no critic: the value network is zero, so the 'critic' attack "
                     "has nothing to follow (the other attacks and every bound are unaffected)")
        value = ValueNetwork(obs_dim, (), source.activation)
        with torch.no_grad():
            for parameter in value.parameters():
                parameter.zero_()
        return value
    _check_chain(source.value_layers, obs_dim, 1, "value", where)
    value = ValueNetwork(obs_dim, [w.shape[0] for w, _ in source.value_layers[:-1]],
                         source.activation)
    _copy_layers(value.net, source.value_layers)
    return value


def _normalization(stats: ObsStats, obs_dim: int, where: str):
    mean = np.asarray(stats.mean, dtype=np.float64).reshape(-1)
    var = np.asarray(stats.var, dtype=np.float64).reshape(-1)
    if mean.shape != (obs_dim,) or var.shape != (obs_dim,):
        raise ValueError(f"{where}: normalization statistics of size {mean.size} do not match "
                         f"the observation size {obs_dim}")
    if (var < 0).any() or not np.isfinite(stats.clip) or stats.clip <= 0 or stats.epsilon < 0:
        raise ValueError(f"{where}: normalization statistics are not valid (negative variance, "
                         "epsilon or clip)")
    # sqrt(var + epsilon) with the source's epsilon, in the form sqrt(var' + 1e-8)
    return mean, var + (stats.epsilon - EPSILON), float(stats.clip), True
