"""Pruning an agent and fine-tuning it: the one recipe behind ``prune`` and every sweep job.

A one-shot method ("random", "magnitude") prunes to the target sparsity at once, then PPO
fine-tunes the surviving weights for ``finetune_steps`` steps with the masks held fixed. A
schedule ("gradual": Zhu & Gupta's cubic ramp; "micro": many small steps) prunes *during* the
fine-tuning, reaching the target by 75% of it. Target sparsity 0 is the dense control: the same
fine-tuning with no pruning, so that the fine-tuning itself is controlled for.

Fine-tuning keeps the agent's observation statistics frozen (they define the threat model) and
starts from the agent's own training configuration, seeded by ``seed``.

The other protocol, ``prune_during_training``, is the one of sparse-training studies in deep RL
(Graesser et al. 2022): the agent's whole training run is repeated from scratch (its settings,
its seed) while gradual magnitude pruning ramps the sparsity from 0 at 20% of the run to the
target at 75%; the final mask then trains for the last quarter.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from pruningrl.agent import Agent, clone_policy, save_agent
from pruningrl.numerics import numeric_path
from pruningrl.pruning import METHODS, SCOPES, _check_sparsity, one_shot_prune, schedule

SCHEDULES = ("gradual", "micro")
#: the sweep method name of ``prune_during_training``
IN_TRAINING = "in-training"
#: when gradual pruning during training starts and reaches its target, as fractions of the run
TRAINING_WINDOW = (0.2, 0.75)


@dataclass
class PruneResult:
    """The pruned (and fine-tuned) agent, and what making it cost."""

    agent: Agent
    finetune_s: float = 0.0
    samples_per_s: float | None = None
    interrupted: bool = False


def check_prune_settings(method: str, sparsity: float, scope: str, finetune_steps: int) -> None:
    """Raise a one-line ``ValueError`` for settings ``prune_and_finetune`` cannot honour."""
    if method not in METHODS:
        raise ValueError(f"unknown pruning method {method!r}; choose one of {', '.join(METHODS)}")
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; use 'global' or 'layer'")
    _check_sparsity(sparsity)
    if finetune_steps < 0:
        raise ValueError(f"finetune_steps must be >= 0, got {finetune_steps}")
    if method in SCHEDULES and sparsity > 0 and finetune_steps == 0:
        raise ValueError(f"{method!r} pruning is a schedule: it needs fine-tuning steps")


def _settings_of(agent: Agent) -> dict:
    """PPO settings that keep an agent without a training record (a reader's own, converted
    by ``pruningrl.interop``) as it is: its networks, activation and observation handling."""
    policy_config = agent.policy.config()
    return {"env_id": agent.env_id, "hidden": list(policy_config["hidden"]),
            "activation": policy_config["activation"], "normalize_obs": agent.normalize_obs,
            "clip_obs": agent.clip_obs}


def prune_and_finetune(
    agent: Agent,
    method: str,
    sparsity: float,
    scope: str = "global",
    finetune_steps: int = 0,
    seed: int = 0,
    rate: float = 0.02,
    out: str | os.PathLike | None = None,
    progress: bool = False,
    command: str | None = None,
    learning_rate: float | None = None,
    sa_ramp: float | None = None,
) -> PruneResult:
    """Prune a copy of ``agent`` by ``method`` to ``sparsity`` and fine-tune it.

    ``agent`` is left untouched. With ``out`` the result is saved there (a fine-tuning run also
    checkpoints there as it goes). The pruned agent's metadata records how it was made.
    ``learning_rate`` replaces the agent's own (annealed to 0 over the fine-tuning as in
    training): a converged agent can lose return to a fresh optimizer at its training rate.
    ``sa_ramp`` replaces a robustly trained agent's schedule share (``pruningrl.ppo.sa_schedule``)
    for the fine-tuning: 0 holds its SA-PPO radius and IBP share at their final values.
    """
    check_prune_settings(method, sparsity, scope, finetune_steps)
    from pruningrl.ppo import PPOConfig, train, train_state_path

    record = {"method": method, "scope": scope, "target_sparsity": sparsity, "seed": seed,
              "finetune_steps": finetune_steps,
              "parent_code_version": agent.metadata.get("code_version"),
              "numeric_path": numeric_path()}
    if learning_rate is not None:
        if not learning_rate > 0:
            raise ValueError(f"the fine-tuning learning rate must be positive, got "
                             f"{learning_rate!r}")
        record["learning_rate"] = learning_rate
    if sa_ramp is not None:  # PPOConfig.validate checks its range
        record["sa_ramp"] = sa_ramp
    working = replace(agent, policy=clone_policy(agent.policy), metadata=dict(agent.metadata))
    scheduled = method in SCHEDULES
    if sparsity > 0 and not scheduled:
        one_shot_prune(working.policy, method, sparsity, scope, seed)
    if finetune_steps == 0:
        working.metadata = {**working.metadata, "pruning": record, "command": command}
        if out is not None:
            save_agent(working, out)
        return PruneResult(working)
    settings = dict(agent.metadata.get("config") or _settings_of(agent))
    settings.update(total_steps=finetune_steps, seed=seed, freeze_obs_norm=True, num_workers=0,
                    **({} if learning_rate is None else {"learning_rate": learning_rate}),
                    **({} if sa_ramp is None else {"sa_ramp": sa_ramp}))
    config = PPOConfig.from_dict(settings).validate()
    hooks = [schedule(method, sparsity, scope, rate)] if scheduled and sparsity > 0 else []
    if out is not None:
        train_state_path(out).unlink(missing_ok=True)
    result = train(config, out, hooks=hooks, progress=progress, command=command, init=working,
                   extra_metadata={"pruning": record})
    return PruneResult(result.agent, result.wall_time_s, result.samples_per_s,
                       result.interrupted)


def prune_during_training(
    agent: Agent,
    sparsity: float,
    scope: str = "global",
    window: tuple[float, float] = TRAINING_WINDOW,
    out: str | os.PathLike | None = None,
    progress: bool = False,
    command: str | None = None,
) -> PruneResult:
    """Train ``agent``'s own run again from scratch, pruning by magnitude as it trains.

    The sparsity follows the cubic ramp s(t) = s_f (1 - (1 - (t - t_0) / (t_1 - t_0))^3) for
    (t_0, t_1) = ``window`` (fractions of the run), then stays at s_f = ``sparsity``. The run
    has the agent's training settings and seed, so it differs from the agent only by pruning.
    ``agent`` is only read (its settings); none of its weights are used.
    """
    check_prune_settings("gradual", sparsity, scope, 1)
    settings = agent.metadata.get("config")
    if not settings:
        raise ValueError("pruning during training replays the agent's training run, and this "
                         "agent carries no training settings (it was not trained by pruningrl)")
    from pruningrl.ppo import PPOConfig, train, train_state_path

    config = replace(PPOConfig.from_dict(dict(settings)), num_workers=0).validate()
    record = {"method": IN_TRAINING, "scope": scope, "target_sparsity": sparsity,
              "seed": config.seed, "train_steps": config.total_steps, "window": list(window),
              "parent_code_version": agent.metadata.get("code_version")}
    hooks = [schedule("gradual", sparsity, scope, window=window)] if sparsity > 0 else []
    if out is not None:
        train_state_path(out).unlink(missing_ok=True)
    result = train(config, out, hooks=hooks, progress=progress, command=command,
                   extra_metadata={"pruning": record})
    return PruneResult(result.agent, result.wall_time_s, result.samples_per_s,
                       result.interrupted)
