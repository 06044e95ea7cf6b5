"""A trained agent (actor, critic, frozen observation normalizer) and its checkpoint file.

An agent acts on raw observations s by normalizing them with the statistics frozen at the end of
training, s_norm = clip((s - mean) / sqrt(var + 1e-8), -c, c), and feeding s_norm to the policy.
The threat model perturbs s_norm, so every attack and certificate works on normalized states.

Checkpoints are single ``.safetensors`` files: tensors only (no pickled code), so loading one
cannot execute anything. The tensors are the policy's and critic's state dicts (with their
pruning masks, if any) and the normalizer's moments; the header's metadata holds, as JSON, the
policy config, env id, seed, training config, code version and training curve. A 64-64 Hopper
agent takes about 45 KB. Loading refuses non-finite weights and statistics: a checkpoint with a
NaN in it would act, evaluate and certify as NaN.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from pruningrl.normalization import normalize_observations
from pruningrl.policies import Policy, ValueNetwork, policy_from_config, refresh_pruned_weights
from pruningrl.pruning import apply_masks, prunable_layers

FORMAT = "pruningrl.agent"
FORMAT_VERSION = 1


@dataclass
class Agent:
    """A policy with its critic and frozen observation normalization, for one environment."""

    env_id: str
    policy: Policy
    value: ValueNetwork
    obs_mean: np.ndarray
    obs_var: np.ndarray
    clip_obs: float = 10.0
    normalize_obs: bool = True
    metadata: dict[str, Any] = field(default_factory=dict)
    #: Bounds ``act`` clips continuous actions to, for agents whose source clips (SB3's
    #: ``predict``, CleanRL's ``ClipAction``); None: ``act`` returns the raw mean. The
    #: environment loops clip to the action space either way.
    action_low: np.ndarray | None = None
    action_high: np.ndarray | None = None

    @property
    def discrete(self) -> bool:
        return self.policy.config()["kind"] == "categorical"

    def normalize_array(self, obs: np.ndarray | torch.Tensor) -> np.ndarray:
        """Raw observations -> the normalized states the policy sees (float32 numpy)."""
        if not self.normalize_obs:
            return np.asarray(obs, dtype=np.float64).astype(np.float32)
        return normalize_observations(obs, self.obs_mean, self.obs_var, self.clip_obs)

    def normalize(self, obs: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Raw observations -> the normalized states the policy sees (float32 tensor)."""
        return torch.from_numpy(self.normalize_array(obs))

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Actions for a batch of raw observations (mean / argmax if deterministic).

        Continuous actions are clipped to ``action_low``/``action_high`` when the agent has them.
        """
        actions = self.policy.act(self.normalize(obs), deterministic=deterministic).numpy()
        if self.action_low is not None and self.action_high is not None and not self.discrete:
            actions = np.clip(actions, self.action_low, self.action_high)
        return actions


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename: never a half file.

    The file ends with mode 0666 less the umask, as ``open`` would create any other file
    (``tempfile.mkstemp``, and writers that use it, make it 0600, private to its owner).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, mode)  # the writer may have replaced the file with a private one
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_agent(agent: Agent, path: str | os.PathLike) -> Path:
    """Write ``agent`` to ``path`` (a ``.safetensors`` file) atomically. Returns the path."""
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    for prefix, module in (("policy", agent.policy), ("value", agent.value)):
        for name, tensor in module.state_dict().items():
            tensors[f"{prefix}.{name}"] = tensor.detach().contiguous().clone()
    tensors["obs_norm.mean"] = torch.as_tensor(agent.obs_mean, dtype=torch.float64)
    tensors["obs_norm.var"] = torch.as_tensor(agent.obs_var, dtype=torch.float64)
    if agent.action_low is not None and agent.action_high is not None:
        tensors["action.low"] = torch.as_tensor(np.asarray(agent.action_low))
        tensors["action.high"] = torch.as_tensor(np.asarray(agent.action_high))
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "env_id": agent.env_id,
        "policy_config": agent.policy.config(),
        "value_hidden": [m.out_features for m in agent.value.net if isinstance(m, nn.Linear)][:-1],
        "clip_obs": agent.clip_obs,
        "normalize_obs": agent.normalize_obs,
        "metadata": agent.metadata,
    }
    metadata = {"pruningrl": json.dumps(header, separators=(",", ":"))}
    _atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    return path


def _read_header(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if "pruningrl" not in metadata:
        raise ValueError(f"{path} is a safetensors file but not a pruningrl agent checkpoint")
    header = json.loads(metadata["pruningrl"])
    if header.get("format") != FORMAT:
        raise ValueError(f"{path} is not a pruningrl agent checkpoint")
    if int(header.get("format_version", -1)) > FORMAT_VERSION:
        raise ValueError(
            f"{path} was written by a newer pruningrl (format {header['format_version']})"
        )
    return header


def load_agent(path: str | os.PathLike) -> Agent:
    """Read an agent checkpoint; a missing, corrupt or foreign file raises ``ValueError``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no agent checkpoint at {path}")
    try:
        header = _read_header(path)
        tensors = load_file(str(path))
    except (SafetensorError, json.JSONDecodeError, OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a readable agent checkpoint ({error})") from None
    check_finite(tensors, path)
    try:
        policy = policy_from_config(header["policy_config"])
        value = ValueNetwork(
            header["policy_config"]["obs_dim"],
            header.get("value_hidden", header["policy_config"]["hidden"]),
            header["policy_config"]["activation"],
        )
        policy_state = {k[7:]: v for k, v in tensors.items() if k.startswith("policy.")}
        value_state = {k[6:]: v for k, v in tensors.items() if k.startswith("value.")}
        _attach_masks(policy, policy_state, path)
        policy.load_state_dict(policy_state)
        refresh_pruned_weights(policy)
        value.load_state_dict(value_state)
        obs_mean = tensors["obs_norm.mean"].numpy()
        obs_var = tensors["obs_norm.var"].numpy()
    except (KeyError, RuntimeError, TypeError) as error:
        message = str(error).splitlines()[0]
        raise ValueError(
            f"{path}: checkpoint does not match its architecture ({message})"
        ) from None
    if obs_mean.shape != (policy.obs_dim,) or obs_var.shape != (policy.obs_dim,):
        raise ValueError(f"{path}: normalization statistics do not match the observation size")
    if (obs_var < 0).any():
        raise ValueError(f"{path}: negative variance in the normalization statistics")
    low, high = tensors.get("action.low"), tensors.get("action.high")
    return Agent(
        env_id=header["env_id"],
        policy=policy,
        value=value,
        obs_mean=obs_mean,
        obs_var=obs_var,
        clip_obs=float(header.get("clip_obs", 10.0)),
        normalize_obs=bool(header.get("normalize_obs", True)),
        metadata=header.get("metadata", {}),
        action_low=None if low is None else low.numpy(),
        action_high=None if high is None else high.numpy(),
    )


def check_finite(tensors: dict[str, torch.Tensor], source: Path | str) -> None:
    """Raise ``ValueError`` naming the first tensor holding NaN or infinity.

    Action bounds may be infinite (an unbounded action space), never NaN.
    """
    for name, tensor in tensors.items():
        if not torch.is_floating_point(tensor):
            continue
        bad = torch.isnan(tensor) if name.startswith("action.") else ~torch.isfinite(tensor)
        if bool(bad.any()):
            raise ValueError(
                f"{source}: {name} holds NaN or infinite values; a damaged or diverged agent "
                "cannot be evaluated or certified"
            )


def clone_policy(policy: Policy) -> Policy:
    """An independent copy of a (possibly pruned) policy, masks included.

    ``copy.deepcopy`` fails on a module pruned by ``torch.nn.utils.prune`` (its ``weight`` is a
    computed tensor); this rebuilds the module from its config and state dict instead.
    """
    clone = policy_from_config(policy.config())
    state = {k: v.detach().clone() for k, v in policy.state_dict().items()}
    _attach_masks(clone, state, "the policy")
    clone.load_state_dict(state)
    return refresh_pruned_weights(clone)


def _attach_masks(policy: nn.Module, state: dict[str, torch.Tensor], path: Path | str) -> None:
    """Re-create the ``torch.nn.utils.prune`` masks a pruned checkpoint carries."""
    names = [n for n, m in policy.named_modules() if m in set(prunable_layers(policy))]
    masks = [state.get(f"{name}.weight_mask") for name in names]
    if all(mask is None for mask in masks):
        return
    full = []
    for name, layer, mask in zip(names, prunable_layers(policy), masks, strict=True):
        if mask is None:  # an unpruned layer of a pruned policy: an all-ones mask
            mask = torch.ones_like(layer.weight)
            if f"{name}.weight" in state:
                state[f"{name}.weight_orig"] = state.pop(f"{name}.weight")
            state[f"{name}.weight_mask"] = mask
        if mask.shape != layer.weight.shape:
            raise ValueError(
                f"{path}: mask of {name} has shape {tuple(mask.shape)}, "
                f"the layer's weight {tuple(layer.weight.shape)}"
            )
        if not torch.all((mask == 0) | (mask == 1)):
            raise ValueError(f"{path}: mask of {name} is not 0/1")
        full.append(mask)
    apply_masks(policy, full)
