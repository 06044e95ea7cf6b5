"""Stable-Baselines3 PPO and A2C agents (``MlpPolicy``), read from their zip without SB3.

``model.save("agent.zip")`` writes a zip holding ``policy.pth`` (the policy's state dict, read
here with ``torch.load(weights_only=True)``) and ``data`` (JSON: hyperparameters and spaces;
objects that are not JSON are stored pickled, and are never unpickled here: only the readable
summaries SB3 writes beside them are read). ``MlpPolicy`` is SB3's ``ActorCriticPolicy``:

    actor:  mlp_extractor.policy_net (Linear, act, ...) -> action_net (Linear)
    critic: mlp_extractor.value_net  (Linear, act, ...) -> value_net  (Linear)

with ``log_std`` for a ``Box`` action space (a Gaussian with a state-independent std) and
logits for ``Discrete``. ``predict(obs, deterministic=True)`` returns the mean clipped to the
action space (Box) or the most likely action (Discrete); the converted agent's ``act`` does
the same. The zip does not record the environment id, nor the ``VecNormalize`` statistics,
which SB3 saves separately (``VecNormalize.save``); both come from the caller.
"""

from __future__ import annotations

import hashlib
import os
import re
import zipfile
from pathlib import Path

from pruningrl.agent import Agent
from pruningrl.interop.assemble import Source, assemble_agent
from pruningrl.interop.files import linear_chain, load_tensors, read_json, state_dict
from pruningrl.interop.vecnormalize import read_vecnormalize

_ACTIVATIONS = {"Tanh": "tanh", "ReLU": "relu"}
_POLICY = "mlp_extractor.policy_net."
_VALUE = "mlp_extractor.value_net."


def from_sb3(path: str | os.PathLike, env_id: str,
             vecnormalize: str | os.PathLike | None = None) -> Agent:
    """The ``pruningrl.agent.Agent`` of an SB3 PPO/A2C ``MlpPolicy`` zip, for ``env_id``.

    ``vecnormalize``: the file ``VecNormalize.save`` wrote, if the agent was trained under it;
    without it observations are not normalized (and a warning says so).
    """
    path = Path(path)
    what = str(path)
    try:
        with zipfile.ZipFile(path) as archive:
            data = read_json(archive, "data", what)
            state = state_dict(load_tensors(archive.read("policy.pth"), f"{what}: policy.pth"),
                               f"{what}: policy.pth")
            version = (archive.read("_stable_baselines3_version").decode().strip()
                       if "_stable_baselines3_version" in archive.namelist() else None)
    except (zipfile.BadZipFile, KeyError, OSError) as error:
        raise ValueError(f"{what} is not a readable Stable-Baselines3 zip ({error})") from None
    _check_policy(data, what)
    action_type = _type_name(data.get("action_space"))
    if action_type not in ("Box", "Discrete"):
        raise ValueError(f"{what}: action space {action_type or 'unknown'}; Box and Discrete "
                         "are supported")
    _check_keys(state, action_type == "Box", what)
    notes, stats = [], None
    if vecnormalize is not None:
        stats = read_vecnormalize(vecnormalize)
        if stats is None:
            notes.append(f"{vecnormalize} has norm_obs off: observations are not normalized")
    else:
        notes.append(_no_statistics_note(data, what))
    source = Source(
        kind="gaussian" if action_type == "Box" else "categorical",
        layers=[*linear_chain(state, _POLICY, what), _linear(state, "action_net", what)],
        activation=_activation(data.get("policy_kwargs"), what),
        log_std=state.get("log_std"),
        value_layers=[*linear_chain(state, _VALUE, what), _linear(state, "value_net", what)],
        obs_stats=stats,
        provenance={"format": "stable-baselines3", "algorithm": _algorithm(data),
                    "file": what, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                    "sb3_version": version,
                    "vecnormalize": None if vecnormalize is None else str(vecnormalize)},
        notes=notes,
    )
    return assemble_agent(env_id, source)


def _type_name(entry: object) -> str | None:
    """``Box`` from SB3's readable ``{":type:": "<class 'gymnasium.spaces.box.Box'>"}``."""
    if not isinstance(entry, dict) or not isinstance(entry.get(":type:"), str):
        return None
    match = re.search(r"'([\w.]+)'", entry[":type:"])
    return match[1].rsplit(".", 1)[-1] if match else None


def _check_policy(data: dict, what: str) -> None:
    init = (data.get("policy_class") or {}).get("__init__", "") if isinstance(
        data.get("policy_class"), dict) else ""
    match = re.match(r"<function (\w+)\.__init__", init)
    if match and match[1] != "ActorCriticPolicy":
        raise ValueError(f"{what}: policy {match[1]}; only MlpPolicy (ActorCriticPolicy) agents "
                         "of PPO and A2C are supported")
    if data.get("use_sde"):
        raise ValueError(f"{what}: trained with gSDE (use_sde=True), which is not supported")
    kwargs = _readable(data.get("policy_kwargs"))
    extractor = str(kwargs.get("features_extractor_class", "FlattenExtractor"))
    if "FlattenExtractor" not in extractor:
        raise ValueError(f"{what}: features extractor {extractor}; only MlpPolicy's "
                         "FlattenExtractor is supported")
    if str(kwargs.get("squash_output", False)) == "True":
        raise ValueError(f"{what}: squashed (tanh) actions are not supported")


def _readable(entry: object) -> dict:
    """A JSON dict, or the readable fields SB3 stores beside a pickled one."""
    if not isinstance(entry, dict):
        return {}
    return {k: v for k, v in entry.items() if k not in (":type:", ":serialized:")}


def _activation(kwargs: object, what: str) -> str:
    text = str(_readable(kwargs).get("activation_fn", "Tanh"))  # ActorCriticPolicy's default
    name = re.sub(r"[^\w.].*", "", text.removeprefix("<class '")).rsplit(".", 1)[-1]
    if name not in _ACTIVATIONS:
        raise ValueError(f"{what}: activation {text}; supported: nn.Tanh and nn.ReLU")
    return _ACTIVATIONS[name]


def _check_keys(state: dict, box: bool, what: str) -> None:
    expected = ("mlp_extractor.", "action_net.", "value_net.", "log_std")
    unknown = sorted(k for k in state if not k.startswith(expected))
    if unknown:
        raise ValueError(f"{what}: unexpected weights {unknown[:3]}: not a PPO/A2C MlpPolicy")
    if box != ("log_std" in state):
        raise ValueError(f"{what}: log_std {'missing' if box else 'present'} for a "
                         f"{'Box' if box else 'Discrete'} action space")


def _linear(state: dict, name: str, what: str):
    if f"{name}.weight" not in state or f"{name}.bias" not in state:
        raise ValueError(f"{what}: no {name} layer: not a PPO/A2C MlpPolicy")
    return state[f"{name}.weight"], state[f"{name}.bias"]


def _algorithm(data: dict) -> str:
    if "clip_range" in data:
        return "PPO"
    return "A2C" if "n_steps" in data else "unknown"


def _no_statistics_note(data: dict, what: str) -> str:
    trained_normalized = isinstance(data.get("_last_original_obs"), dict)
    if trained_normalized:
        return (f"{what} was trained under VecNormalize, but no statistics were given: it "
                "would act on raw observations as if they were normalized; pass the file "
                "VecNormalize.save wrote (--vecnormalize FILE); using identity normalization")
    return (f"{what}: no VecNormalize statistics given; using identity normalization "
            "(the agent sees raw observations)")
