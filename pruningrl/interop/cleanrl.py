"""CleanRL's PPO agents: the ``Agent`` state dicts of ``ppo.py`` and ``ppo_continuous_action.py``.

CleanRL saves ``torch.save(agent.state_dict(), "runs/.../NAME.cleanrl_model")``. Its two PPO
agents are

    ppo.py (discrete):                  actor (Linear, Tanh, Linear, Tanh, Linear) -> logits
                                        critic (same form) -> V(s)
    ppo_continuous_action.py (Box):     actor_mean (same form) -> the Gaussian's mean,
                                        actor_logstd (1, act_dim), critic -> V(s)

with tanh activations (``activation`` overrides it for a modified copy). The continuous script
normalizes observations with gymnasium's ``NormalizeObservation`` (then clips them at 10) and
clips actions with ``ClipAction``; the wrapper's statistics are not in the state dict, so they
are used only when the caller passes them (``obs_mean``, ``obs_var``), and a warning says so
otherwise.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from pruningrl.agent import Agent
from pruningrl.interop.assemble import ObsStats, Source, assemble_agent
from pruningrl.interop.files import linear_chain, load_tensors, state_dict

CONTINUOUS, DISCRETE = "cleanrl-continuous", "cleanrl-discrete"


def cleanrl_kind(state: Mapping[str, torch.Tensor]) -> str | None:
    """CONTINUOUS or DISCRETE if ``state`` is one of CleanRL's PPO agents, else None."""
    keys = set(state)
    if "actor_logstd" in keys and {"actor_mean.0.weight", "critic.0.weight"} <= keys:
        return CONTINUOUS
    if {"actor.0.weight", "critic.0.weight"} <= keys and "actor_logstd" not in keys:
        return DISCRETE
    return None


def from_cleanrl(
    source: str | os.PathLike | Mapping[str, torch.Tensor],
    env_id: str,
    *,
    activation: str = "tanh",
    obs_mean: np.ndarray | None = None,
    obs_var: np.ndarray | None = None,
    clip_obs: float = 10.0,
) -> Agent:
    """The ``pruningrl.agent.Agent`` of a CleanRL PPO agent (a file or its state dict)."""
    what = "the state dict" if isinstance(source, Mapping) else str(source)
    if isinstance(source, Mapping):
        state, digest = state_dict(source, what), None
    else:
        raw = Path(source).read_bytes()
        state = state_dict(load_tensors(raw, what), what)
        digest = hashlib.sha256(raw).hexdigest()
    kind = cleanrl_kind(state)
    if kind is None:
        raise ValueError(f"{what} is not a CleanRL PPO agent (expected actor_mean, actor_logstd "
                         "and critic, or actor and critic)")
    prefix = "actor_mean." if kind == CONTINUOUS else "actor."
    unknown = sorted(k for k in state if not k.startswith((prefix, "critic.", "actor_logstd")))
    if unknown:
        raise ValueError(f"{what}: unexpected weights {unknown[:3]} for CleanRL's PPO agent")
    notes, stats = [], None
    if (obs_mean is None) != (obs_var is None):
        raise ValueError("give both obs_mean and obs_var, or neither")
    if obs_mean is not None:
        stats = ObsStats(np.asarray(obs_mean), np.asarray(obs_var), clip_obs)
    elif kind == CONTINUOUS:
        notes.append(f"{what}: CleanRL's continuous PPO normalizes observations with a wrapper "
                     "whose statistics the state dict does not hold; using identity "
                     "normalization (pass obs_mean and obs_var from the wrapper to fix it)")
    return assemble_agent(env_id, Source(
        kind="gaussian" if kind == CONTINUOUS else "categorical",
        layers=linear_chain(state, prefix, what),
        activation=activation,
        log_std=state.get("actor_logstd"),
        value_layers=linear_chain(state, "critic.", what),
        obs_stats=stats,
        provenance={"format": kind, "file": what, "sha256": digest},
        notes=notes,
    ))
