"""The shipped agents: ids ``ENV/VARIANT/seedK`` resolved to checkpoints inside the package.

Each agent is ``pruningrl/agents/ENV/VARIANT/seedK.safetensors``, with a ``seedK.json`` beside
it recording how it was made (the exact command, code version, wall time) and its deterministic
evaluation. ``resolve`` and ``load`` also accept a path to an agent file, so a reader's own
agents and pruned checkpoints go wherever a shipped id does: a ``pruningrl`` checkpoint, a
Stable-Baselines3 PPO/A2C zip or a CleanRL PPO state dict, recognised by content
(``pruningrl.interop``).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from pruningrl.agent import Agent
from pruningrl.interop import read_agent

AGENTS_DIR = Path(__file__).resolve().parent / "agents"
_ID = re.compile(r"^(?P<env>[A-Za-z0-9_\-]+)/(?P<variant>[a-z0-9_+\-]+)/seed(?P<seed>\d+)$")


def agent_path(agent_id: str) -> Path:
    """The checkpoint path of a shipped id (it may not exist)."""
    match = _ID.match(agent_id)
    if match is None:
        raise ValueError(f"{agent_id!r} is neither an agent id ENV/VARIANT/seedK nor a file")
    return AGENTS_DIR / match["env"] / match["variant"] / f"seed{match['seed']}.safetensors"


def list_agents() -> list[dict]:
    """Every shipped agent: id, path and the provenance recorded beside it."""
    out = []
    for path in sorted(AGENTS_DIR.glob("*/*/seed*.safetensors")):
        variant_dir = path.parent
        agent_id = f"{variant_dir.parent.name}/{variant_dir.name}/{path.stem}"
        info = {"id": agent_id, "path": str(path), "size_kb": round(path.stat().st_size / 1024, 1)}
        sidecar = path.with_suffix(".json")
        if sidecar.is_file():
            info.update(json.loads(sidecar.read_text()))
        out.append(info)
    return out


def resolve(agent: str | os.PathLike) -> Path:
    """A checkpoint path for a shipped id or a file path; a clear ``ValueError`` otherwise."""
    candidate = Path(agent)
    if candidate.is_file():
        return candidate
    path = agent_path(str(agent))
    if not path.is_file():
        known = ", ".join(a["id"] for a in list_agents()[:6])
        raise ValueError(
            f"no shipped agent {agent!r} (known: {known or 'none yet'}; "
            "`python -m pruningrl agents` lists them all)"
        )
    return path


def load(
    agent: str | os.PathLike,
    env_id: str | None = None,
    vecnormalize: str | os.PathLike | None = None,
) -> Agent:
    """Load a shipped agent by id (``Hopper-v5/ppo/seed0``) or any agent file by path.

    SB3 and CleanRL files need ``env_id`` (they do not record it); ``vecnormalize`` is an SB3
    agent's ``VecNormalize.save`` file. ``ValueError`` for anything unreadable.
    """
    return read_agent(resolve(agent), env_id, vecnormalize)
