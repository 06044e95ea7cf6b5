"""Readers' own agents as ``pruningrl`` agents: one place that turns them into an ``Agent``.

* Stable-Baselines3 PPO and A2C zips (``MlpPolicy``, tanh or ReLU, any ``net_arch``, ``Box``
  or ``Discrete`` actions), with their ``VecNormalize`` statistics when given: ``from_sb3``.
* CleanRL's PPO agents (``ppo.py``, ``ppo_continuous_action.py``): ``from_cleanrl``.
* A plain ``nn.Sequential`` with a stated policy kind: ``from_sequential``.

``read_agent`` recognises a file by its content (a ``pruningrl`` checkpoint, an SB3 zip, a
CleanRL state dict), so ``pruningrl.zoo.load`` and every ``--agent`` of the command line take
these files as they are. Nothing is unpickled that could run code: SB3's ``policy.pth`` and
torch files load with ``weights_only=True``, SB3's ``data`` is JSON, and ``VecNormalize`` files go
through an unpickler that admits numpy arrays and nothing else that runs. A converted agent acts
exactly as its source (``act`` equals SB3's ``predict(obs, deterministic=True)``); what the
conversion had to assume is said as an ``InteropWarning`` and kept in ``metadata["notes"]``.
"""

from __future__ import annotations

import os
from pathlib import Path

from pruningrl.agent import Agent, load_agent
from pruningrl.interop.assemble import InteropWarning, ObsStats
from pruningrl.interop.cleanrl import cleanrl_kind, from_cleanrl
from pruningrl.interop.files import PRUNINGRL, SB3, TORCH, load_tensors, sniff, state_dict
from pruningrl.interop.sb3 import from_sb3
from pruningrl.interop.sequential import from_sequential, sequential_from_state_dict
from pruningrl.interop.vecnormalize import read_vecnormalize

__all__ = ["PRUNINGRL", "SB3", "TORCH", "InteropWarning", "ObsStats", "cleanrl_kind",
           "from_cleanrl", "from_sb3", "from_sequential", "read_agent", "read_state_dict",
           "read_vecnormalize", "sequential_from_state_dict", "sniff"]

FORMATS = ("a pruningrl checkpoint (.safetensors), a Stable-Baselines3 PPO/A2C zip or a "
           "CleanRL PPO state dict")


def read_state_dict(path: str | os.PathLike) -> dict:
    """The state dict a torch file holds, loaded with ``weights_only=True``."""
    return state_dict(load_tensors(Path(path), str(path)), str(path))


def read_agent(
    path: str | os.PathLike,
    env_id: str | None = None,
    vecnormalize: str | os.PathLike | None = None,
) -> Agent:
    """The agent in the file at ``path``, whatever its format (see the module's docstring).

    ``env_id`` is required for SB3 and CleanRL files (they do not record it) and, for a
    ``pruningrl`` checkpoint, must match the one it records. ``vecnormalize`` is SB3's.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no agent file at {path}")
    kind = sniff(path)
    if vecnormalize is not None and kind != SB3:
        raise ValueError("VecNormalize statistics go with a Stable-Baselines3 agent only")
    if kind == PRUNINGRL:
        agent = load_agent(path)
        if env_id is not None and env_id != agent.env_id:
            raise ValueError(f"{path} is an agent for {agent.env_id}, not {env_id}")
        return agent
    if kind == SB3:
        return from_sb3(path, _needed(env_id, path, "a Stable-Baselines3 agent"), vecnormalize)
    if kind == TORCH:
        state = read_state_dict(path)
        if cleanrl_kind(state) is not None:
            return from_cleanrl(path, _needed(env_id, path, "a CleanRL agent"))
        raise ValueError(
            f"{path} holds a network's weights but not what its outputs mean: convert it with "
            "`python -m pruningrl convert FILE --env ENV --kind gaussian|categorical` (or "
            "pruningrl.interop.from_sequential)")
    raise ValueError(f"{path} is not an agent file pruningrl reads ({FORMATS})")


def _needed(env_id: str | None, path: Path, what: str) -> str:
    if env_id is None:
        raise ValueError(f"{path} is {what}, which does not record its environment: name it "
                         "(--env ENV, or env_id=...)")
    return env_id
