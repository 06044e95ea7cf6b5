"""Jobs: one pruned agent, evaluated clean and under attack, with its certificates.

A job's config names a shipped base agent (and the sha256 of its file, so a retrained agent
makes new jobs), the pruning method and scope, the target sparsity, the fine-tuning budget and
the evaluation settings. Its id is a hash of that config. Attacks are the job's *units*: a job
first run with the cheap attacks can later be given RS or a learned adversary, and only the new
units run (on the job's saved checkpoint, or on a bit-identical re-fine-tuned agent).

Target sparsity 0 is the dense control and does not depend on the method: every method of a
grid shares it. A second kind of job, ``random_policy``, measures the uniformly random policy's
return on a task (R_rand of the normalized return), with the same episode seeds.

Everything a job computes is seeded: fine-tuning by the base agent's seed, evaluation episode k
by reset seed k, attacks by the grid's ``attack_seed``. So a job re-run from its config gives the
same numbers, in any process, under any executor.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from itertools import product
from pathlib import Path

from pruningrl.experiments.grid import Grid, GridPart
from pruningrl.finetune import IN_TRAINING

#: learned attacks whose adversary is itself a policy (trained with PPO): run at a few points,
#: reported beside the score on MuJoCo tasks, not inside it
POLICY_ADVERSARIES = ("optimal", "paad")
#: attacks that first train robust-Sarsa Q-functions of the victim
SARSA_ATTACKS = ("rs", "rs+mad")
#: the certified radius is the largest eps whose global certified TV stays <= this
RADIUS_TV = 0.5
#: the certificate unit: output-bound certificates of the job's agent, run like an attack on
#: its saved checkpoint and recorded under ``result["crown"]``
CERTIFICATES = "crown"
#: the eps sweep of the certificate unit: this many radii, geometric from EPS_SWEEP_LOW to
#: twice the job's eps
EPS_SWEEP_POINTS, EPS_SWEEP_LOW = 8, 0.001


@dataclass(frozen=True)
class AttackUnit:
    """One attack of a job: its name, budget (learned attacks), seed, and for one attempt of a
    learned attack its settings: the adversary PPO's learning rate ``lr`` and entropy
    coefficient ``ent`` (optimal, PA-AD), or RS+MAD's mixing weight ``ratio``."""

    name: str
    budget: int | None = None
    seed: int = 0
    lr: float | None = None
    ent: float | None = None
    ratio: float | None = None

    @property
    def label(self) -> str:
        """The key of its result in the record: ``rs``, ``rs:n=200000``, ``optimal:s=1``,
        ``paad:s=2:lr=0.0001:ent=0.01``, ``rs+mad:rho=0.25``."""
        settings = (("lr", self.lr), ("ent", self.ent), ("rho", self.ratio))
        return (self.name + ("" if self.budget is None else f":n={self.budget}")
                + ("" if self.seed == 0 else f":s={self.seed}")
                + "".join(f":{key}={value:g}" for key, value in settings if value is not None))

    def to_dict(self) -> dict:
        out = {"name": self.name, "budget": self.budget, "seed": self.seed}
        out.update({k: v for k, v in (("lr", self.lr), ("ent", self.ent), ("ratio", self.ratio))
                    if v is not None})
        return out


@dataclass(frozen=True)
class Job:
    """A job's config (hashed into its id) and the attacks the grid asks of it."""

    config: tuple[tuple[str, object], ...]
    attacks: tuple[AttackUnit, ...]

    @property
    def settings(self) -> dict:
        return dict(self.config)

    @property
    def id(self) -> str:
        return config_id(self.settings)


def config_id(config: dict) -> str:
    """sha256 of the canonical JSON of ``config``, 16 hex digits."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def expand(grid: Grid) -> list[Job]:
    """Every job of the grid, each once, in a stable order (random-policy references first)."""
    from pruningrl.envs import task_eps
    from pruningrl.zoo import agent_path

    jobs: dict[str, Job] = {}

    def add(config: dict, attacks: tuple[AttackUnit, ...]) -> None:
        job = Job(tuple(sorted(config.items())), attacks)
        if job.id in jobs:  # a shared dense control: the union of the attacks asked of it
            merged = jobs[job.id].attacks + tuple(
                a for a in attacks if a not in jobs[job.id].attacks)
            job = Job(job.config, merged)
        jobs[job.id] = job

    for part in grid.parts:
        units = (*_attack_units(part), AttackUnit(CERTIFICATES))
        for env in part.envs:
            add({"kind": "random_policy", "env_id": env, "episodes": part.episodes},
                (AttackUnit("none"),))
        # a whole series (every seed and sparsity of one task, variant, method and scope)
        # finishes before the next starts, so a sweep stopped early still yields verdicts
        for env, variant, method, scope in product(part.envs, part.variants, part.methods,
                                                   part.scopes):
            eps = part.eps if part.eps is not None else task_eps(env)
            for seed, target, tune in product(part.seeds, part.sparsities,
                                              part.finetune_seeds or (None,)):
                agent_id = f"{env}/{variant}/seed{seed}"
                add({"kind": "prune", "agent": agent_id, "env_id": env, "variant": variant,
                     "seed": seed, "agent_sha256": file_sha256(agent_path(agent_id)),
                     "finetune_steps": part.finetune_steps, "eps": eps, "norm": part.norm,
                     "episodes": part.episodes, "local_states": part.local_states,
                     **_pruning(method, scope, target, part, agent_id),
                     **({} if part.finetune_lr is None else
                        {"finetune_lr": part.finetune_lr}),
                     **({} if part.finetune_sa_ramp is None else
                        {"finetune_sa_ramp": part.finetune_sa_ramp}),
                     **({} if tune is None else {"finetune_seed": tune})}, units)
    return list(jobs.values())


def _pruning(method: str, scope: str, target: float, part: GridPart, agent_id: str) -> dict:
    """The pruning keys of a job's config. Pruning during training fine-tunes nothing, so its
    dense control is the untouched base agent (``finetune_steps`` 0), trained the same way."""
    steps = {"finetune_steps": 0} if method == IN_TRAINING else {}
    if target == 0.0:
        return {"method": "dense", "scope": None, "target_sparsity": 0.0, **steps}
    out = {"method": method, "scope": scope, "target_sparsity": target, **steps}
    if method == "micro":
        out["rate"] = part.rate
    if method == IN_TRAINING:
        from pruningrl.agent import load_agent
        from pruningrl.zoo import agent_path

        config = load_agent(agent_path(agent_id)).metadata["config"]
        out.update(train_steps=int(config["total_steps"]), prune_window=list(part.prune_window))
    return out


def _attack_units(part: GridPart) -> tuple[AttackUnit, ...]:
    """One unit per attack, or one per listed attempt of a learned attack (``attempts``)."""
    units = []
    for name in part.attacks:
        seed = part.attack_seed if name != "none" else 0
        for attempt in part.attempts.get(name, ({},)):
            units.append(AttackUnit(name, part.budgets.get(name), attempt.get("seed", seed),
                                    attempt.get("lr"), attempt.get("ent"),
                                    attempt.get("ratio")))
    return tuple(units)


# --------------------------------------------------------------------------------- running


def run_job(config: dict, attacks: list[dict], checkpoint: bytes | None = None,
            cache_dir: str | None = None) -> dict:
    """Run a job's missing attack units; returns its result, phase times and checkpoint bytes.

    ``config``: the job's settings; ``attacks``: ``AttackUnit.to_dict()`` of the units to run;
    ``checkpoint``: the job's saved agent (skips pruning and fine-tuning); ``cache_dir``: where
    learned attackers of a pruned agent are cached (None: a temporary folder, dropped after).
    Plain values in and out, so a Ray worker without the sweep's disk can run it. The outcome
    also names the numeric path of the process that computed it (``numerics.numeric_path``).
    """
    import torch

    from pruningrl.numerics import numeric_path

    torch.set_num_threads(1)
    units = [AttackUnit(**a) for a in attacks]
    if config["kind"] == "random_policy":
        return {**_run_random_policy(config), "numeric_path": numeric_path()}
    remove_orphaned_scratch()
    with tempfile.TemporaryDirectory(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-") as tmp:
        folder = Path(cache_dir) if cache_dir is not None else Path(tmp)
        return {**_run_prune(config, units, checkpoint, folder), "numeric_path": numeric_path()}


#: a job's scratch folder in the temporary directory: ``pruningrl-job-PID-XXXXXXXX``
SCRATCH_PREFIX = "pruningrl-job-"


def remove_orphaned_scratch() -> list[Path]:
    """Delete the scratch folders of jobs whose process has died; returns what it deleted.

    A job's folder goes when the job ends, but not when its process is killed outright (the
    driver's death takes its workers with it, by SIGKILL). Its name carries the process id, so
    the next job on the machine can tell an orphan from a folder still in use.
    """
    removed = []
    for folder in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*-*"):
        pid = folder.name[len(SCRATCH_PREFIX):].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _run_random_policy(config: dict) -> dict:
    from pruningrl.evaluation import evaluate_random_policy

    start = time.perf_counter()
    result = evaluate_random_policy(config["env_id"], config["episodes"], seed=0)
    evaluation = {"returns": result.returns, "lengths": result.lengths,
                  "mean_return": result.mean_return, "std_return": result.std_return}
    return {"result": {"attacks": {"none": evaluation}},
            "phases": {"evaluate:none": round(time.perf_counter() - start, 3)},
            "checkpoint": None}


def _run_prune(config: dict, units: list[AttackUnit], checkpoint: bytes | None,
               folder: Path) -> dict:
    from pruningrl.agent import load_agent
    from pruningrl.zoo import load, resolve

    phases: dict[str, float] = {}
    result: dict = {}
    base_path = resolve(config["agent"])
    path = folder / f"{config_id(config)}.safetensors"
    if checkpoint is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(checkpoint)
        agent = load_agent(path)
    else:
        base = load(config["agent"])
        if file_sha256(base_path) != config["agent_sha256"]:
            raise ValueError(f"the shipped agent {config['agent']} changed since this job was "
                             "planned; re-expand the grid")
        agent = _make_agent(config, base, path, phases)
        if config["target_sparsity"] == 0.0:  # the control also keeps the untouched return
            result["base_clean"] = _evaluate(base, config, AttackUnit("none"), base_path,
                                             phases, "base")
        result.update(_certificates(agent, config, phases))
    victim = base_path if config["finetune_steps"] == 0 and config["target_sparsity"] == 0 \
        else path
    result["attacks"] = {u.label: _evaluate(agent, config, u, victim, phases) for u in units
                         if u.name != CERTIFICATES}
    if any(u.name == CERTIFICATES for u in units):
        result[CERTIFICATES] = crown_certificates(agent, config, phases)
    return {"result": result, "phases": phases,
            "checkpoint": path.read_bytes() if path.is_file() else None}


def _make_agent(config: dict, base, path: Path, phases: dict):
    from pruningrl.agent import save_agent
    from pruningrl.finetune import prune_and_finetune, prune_during_training

    start = time.perf_counter()
    method = "magnitude" if config["method"] == "dense" else config["method"]
    if method == IN_TRAINING:
        made = prune_during_training(base, config["target_sparsity"], config["scope"],
                                     tuple(config["prune_window"]))
    else:
        made = prune_and_finetune(base, method, config["target_sparsity"],
                                  config["scope"] or "global", config["finetune_steps"],
                                  config.get("finetune_seed", config["seed"]),
                                  config.get("rate", 0.02),
                                  learning_rate=config.get("finetune_lr"),
                                  sa_ramp=config.get("finetune_sa_ramp"))
    if made.interrupted:
        raise KeyboardInterrupt
    made.agent.metadata = {**made.agent.metadata, "job": config}
    save_agent(made.agent, path)
    phases["train" if method == IN_TRAINING else "finetune"] = round(
        time.perf_counter() - start, 3)
    return made.agent


def _evaluate(agent, config: dict, unit: AttackUnit, victim: Path, phases: dict,
              prefix: str = "evaluate") -> dict:
    from pruningrl.attack_suite import AttackBudget, make_attack
    from pruningrl.evaluation import evaluate

    attack, info = None, None
    if unit.name != "none":
        start = time.perf_counter()
        budget = AttackBudget(adversary_lr=unit.lr, adversary_ent=unit.ent)
        if unit.budget is not None:
            field = "sarsa_samples" if unit.name in SARSA_ATTACKS else "adversary_steps"
            budget = replace(budget, **{field: unit.budget})
        attack = make_attack(unit.name, agent, config["eps"], config["norm"], seed=unit.seed,
                             victim_path=victim, budget=budget, ratio=unit.ratio)
        info = attack.info
        if unit.name in (*SARSA_ATTACKS, *POLICY_ADVERSARIES):
            phases[f"attacker:{unit.label}"] = round(time.perf_counter() - start, 3)
    start = time.perf_counter()
    result = evaluate(agent, episodes=config["episodes"], seed=0, attack=attack)
    phases[f"{prefix}:{unit.label}"] = round(time.perf_counter() - start, 3)
    out = {"returns": result.returns, "lengths": result.lengths,
           "mean_return": result.mean_return, "std_return": result.std_return}
    if info:
        out["attacker"] = _portable(info)
    return out


def _portable(info: dict) -> dict:
    """An attacker's report without machine-specific paths and timings (kept in phases)."""
    drop = {"adversary", "training_wall_time_s", "samples_per_s", "wall_time_s"}
    out = {}
    for key, value in info.items():
        if key in drop:
            continue
        out[key] = _portable(value) if isinstance(value, dict) else value
    return out


def _certificates(agent, config: dict, phases: dict) -> dict:
    from pruningrl.bounds import certified_tv, lipschitz_abs_product, lipschitz_spectral_product
    from pruningrl.evaluation import visited_states
    from pruningrl.pruning import layer_sparsity, sparsity

    start = time.perf_counter()
    policy, eps, norm = agent.policy, config["eps"], config["norm"]
    states = visited_states(agent, config["local_states"], seed=0)
    local = certified_tv(policy, eps, norm, "local", states)
    lipschitz = lipschitz_abs_product(policy, norm)
    out = {
        "discrete": agent.discrete,
        "sparsity": sparsity(policy),
        "layer_sparsity": layer_sparsity(policy),
        "constant_policy": lipschitz == 0.0,
        "certified_tv": certified_tv(policy, eps, norm),
        "lipschitz": lipschitz,
        "spectral_product": lipschitz_spectral_product(policy, norm),
        "local_tv": float(local.mean()),
        "local_tv_max": float(local.max()),
        "local_states": int(states.shape[0]),
        "certified_radius": certified_radius(policy, norm),
    }
    phases["certify"] = round(time.perf_counter() - start, 3)
    return out


def crown_certificates(agent, config: dict, phases: dict | None = None) -> dict:
    """The certificate unit: CROWN certificates of the job's agent on the visited states of
    its local certificate (``local_states`` steps of reset seed 0 on).

    Recorded: at the job's eps, the mean CROWN TV and the fraction of states at TV <= 1/2,
    the mean action's certified deviation (Gaussian) or the fraction of states whose most
    likely action is certified (categorical), and the log-std that every Gaussian TV
    certificate divides by (Gaussian) or the certified return of the evaluated episodes
    (categorical); an eps sweep of the same (``EPS_SWEEP_POINTS`` radii); the per-state
    certified radius (TV <= 1/2, and the certified action for a categorical) by bisection on
    [0, 2 eps], as median and quartiles (a state certified at 2 eps counts 2 eps).
    """
    import numpy as np
    import torch

    from pruningrl.bounds import certified_radii, certify_states
    from pruningrl.evaluation import visited_states

    start = time.perf_counter()
    policy, eps, norm = agent.policy, config["eps"], config["norm"]
    states = visited_states(agent, config["local_states"], seed=0).to(torch.float64)
    radii = np.geomspace(EPS_SWEEP_LOW, 2 * eps, EPS_SWEEP_POINTS).tolist()

    def at(radius: float) -> dict:
        certified = certify_states(policy, radius, norm, states, "crown")
        out = {"tv_mean": float(certified.tv.mean()),
               "certified_fraction": float((certified.tv <= RADIUS_TV).double().mean())}
        if agent.discrete:
            out["certified_action_fraction"] = float(certified.certified_action.double().mean())
        else:
            out["action_deviation"] = float(certified.action_deviation.mean())
        return out

    sweep = [at(r) for r in radii]
    record = {"method": "crown", "eps": eps, "norm": norm, "states": int(states.shape[0]),
              **at(eps), "eps_sweep": {"eps": radii, **{key: [point[key] for point in sweep]
                                                         for key in sweep[0]}}}
    criteria = ("tv", "action") if agent.discrete else ("tv",)
    for criterion in criteria:
        radius = certified_radii(policy, states, norm, "crown", criterion, eps_max=2 * eps,
                                 iterations=12).numpy()
        record[f"radius_{criterion}"] = {"median": float(np.median(radius)),
                                         "q25": float(np.quantile(radius, 0.25)),
                                         "q75": float(np.quantile(radius, 0.75)),
                                         "eps_max": 2 * eps}
    if agent.discrete:
        record["certified_return"] = _certified_return(agent, config)
    else:
        record["log_std"] = [float(x) for x in agent.policy.log_std.detach()]
    if phases is not None:
        phases[f"certify:{CERTIFICATES}"] = round(time.perf_counter() - start, 3)
    return record


def _certified_return(agent, config: dict) -> dict:
    """The certified return (``pruningrl.certified_return``) of the evaluation's own episodes
    (reset seeds 0, 1, ...): per episode a lower bound on the return under any attack within the
    job's ball, so the record can be checked against every attack it ran."""
    from pruningrl.certified_return import certified_return

    bound = certified_return(agent, config["eps"], config["episodes"], seed=0,
                             norm=config["norm"])
    return {key: value for key, value in bound.to_dict().items()
            if key not in ("env_id", "eps", "norm")}


def certified_radius(policy, norm: str = "inf", tv: float = RADIUS_TV) -> float | None:
    """The largest eps whose global certified TV is <= ``tv`` (bisection; None: every eps).

    The global certificate is nondecreasing in eps, so bisection finds the threshold; under
    pruning the abs-product bound cannot grow, so the radius cannot shrink.
    """
    from pruningrl.bounds import certified_tv

    if certified_tv(policy, 1e6, norm) <= tv:
        return None  # a constant (dead) policy: no eps moves it
    low, high = 0.0, 1.0
    while certified_tv(policy, high, norm) <= tv:
        low, high = high, high * 2
    for _ in range(60):
        mid = 0.5 * (low + high)
        if certified_tv(policy, mid, norm) <= tv:
            low = mid
        else:
            high = mid
    return low
