"""The sweep driver: plan a grid's missing work, run it on an executor, write the records.

A job is *cached* when its record is done and holds every attack the grid asks of it (and the
second attempt of any learned adversary that came out weak, see ``retries``); it is *run*
otherwise (new, failed with ``retry_failed``, or missing some attacks). A failed job keeps
its record (status "failed", the one-line error) and the sweep goes on; the summary lists the
failures. Jobs run whole: a job killed halfway leaves no record and runs again from its
beginning next time, so an interrupted sweep ends with the numbers of an uninterrupted one.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from pruningrl.attack_suite import AttackBudget
from pruningrl.experiments.executors import run_tasks
from pruningrl.experiments.grid import Grid
from pruningrl.experiments.jobs import (
    CERTIFICATES,
    POLICY_ADVERSARIES,
    SARSA_ATTACKS,
    AttackUnit,
    Job,
    expand,
    run_job,
)
from pruningrl.experiments.replay import numeric_paths
from pruningrl.experiments.store import RecordStore
from pruningrl.numerics import MODE_VARIABLE, PORTABLE, numeric_mode, numeric_path, same_path
from pruningrl.reproducibility import provenance

JobFunction = Callable[[dict, list, bytes | None, str | None], dict]
#: a learned adversary that takes less than this fraction of the clean return is retried
WEAK_ATTACK = 0.10


def is_weak(clean: float, attacked: float) -> bool:
    """An attack that took less than ``WEAK_ATTACK`` of the clean return, or raised it:
    R_attacked >= R_clean - 0.1 |R_clean|."""
    return attacked >= clean - WEAK_ATTACK * abs(clean)


@dataclass
class PlannedJob:
    """A job and the attack units it still needs ([] when cached)."""

    job: Job
    todo: list[AttackUnit]
    status: str  # "new", "cached", "partial", "failed"
    record: dict | None = None  # its record as planned (None for a new job)


@dataclass
class SweepSummary:
    grid: str
    out: str
    jobs_total: int
    jobs_run: int = 0
    jobs_cached: int = 0
    jobs_failed: int = 0
    jobs_without_agent: int = 0
    wall_time_s: float = 0.0
    failures: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def plan(grid: Grid, store: RecordStore, retry_failed: bool = False,
         jobs: list[Job] | None = None, only: tuple[str, ...] | None = None
         ) -> list[PlannedJob]:
    """What each job of the grid still needs, from the records in ``store`` (``jobs``: the
    grid's jobs if already expanded; ``only``: just the units of these names, for example the
    certificate unit over a finished grid)."""
    planned = _plan(grid, store, retry_failed, jobs)
    if only is None:
        return planned
    unknown = set(only) - {u.name for p in planned for u in p.job.attacks} - {CERTIFICATES}
    if unknown:
        raise ValueError(f"--only names units this grid does not have: {sorted(unknown)}")
    for p in planned:
        p.todo = [u for u in p.todo if u.name in only]
        if p.status == "partial" and not p.todo:
            p.status = "cached"
    return planned


def _plan(grid: Grid, store: RecordStore, retry_failed: bool, jobs: list[Job] | None
          ) -> list[PlannedJob]:
    planned = []
    for job in expand(grid) if jobs is None else jobs:
        record = store.read(job.id)
        if record is None:
            planned.append(PlannedJob(job, list(job.attacks), "new"))
        elif record["status"] == "failed":
            planned.append(PlannedJob(job, list(job.attacks) if retry_failed else [], "failed",
                                      record))
        else:
            todo = owed_units(job, record)
            if todo and not replayable(record, store):
                planned.append(PlannedJob(job, [], UNREPLAYABLE, record))
                continue
            planned.append(PlannedJob(job, todo, "partial" if todo else "cached", record))
    return planned


def owed_units(job: Job, record: dict) -> list[AttackUnit]:
    """The units a done job's record still lacks: the grid's attacks and certificates, and the
    retries of its weak learned attempts (``retries``). A pure function of the grid and the
    record, whatever machine asks."""
    have = record["result"].get("attacks", {})
    measured = {*have, *([CERTIFICATES] if CERTIFICATES in record["result"] else [])}
    return [u for u in (*job.attacks, *retries(job, have)) if u.label not in measured]


def owed_attacks(grid: Grid, store: RecordStore) -> dict[str, set[str]]:
    """Job id -> the names of the attacks its done record still owes (a retry included), for
    every done job of ``grid`` in ``store``. A score may take an attack at a point only once
    the point owes it nothing: a weak first attempt stands for the attack only until its
    retry has run."""
    out = {}
    for job in expand(grid):
        record = store.read(job.id)
        if record is not None and record["status"] == "done":
            out[job.id] = {u.name for u in owed_units(job, record)}
    return out


#: the status of a done job that needs units but whose agent can be neither read nor remade
UNREPLAYABLE = "no-agent"


def replayable(record: dict, store: RecordStore) -> bool:
    """Whether new units can run on the agent ``record`` measured: its checkpoint is saved, or
    every run that made the record computed on this process's numeric path, so that pruning
    and fine-tuning again remake the same agent bit for bit. Otherwise a re-made agent would
    be another agent (another path's fine-tuning), and its numbers would not belong in this
    record."""
    if record["config"].get("kind") != "prune" or store.checkpoint_path(record["id"]).is_file():
        return True
    current = numeric_path()
    return all(same_path(path, current) for path in numeric_paths(record))


def retries(job: Job, measured: dict) -> list[AttackUnit]:
    """Second attempts of learned policy adversaries that came out weak.

    A learned adversary (optimal attack, PA-AD) that is weak (``is_weak``: it took less than a
    tenth of the clean return, or raised it) may have failed to learn, not met a robust victim:
    it is trained again with the next seed and twice the budget, and the stronger attempt is
    the one reported. There is one retry, not a search.
    """
    clean = measured.get("none")
    out = []
    for unit in job.attacks:
        entry = measured.get(unit.label)
        if unit.name not in POLICY_ADVERSARIES or entry is None or clean is None:
            continue
        if is_weak(clean["mean_return"], entry["mean_return"]):
            budget = 2 * (unit.budget or AttackBudget().adversary_steps)
            out.append(replace(unit, budget=budget, seed=unit.seed + 1))
    return out


#: the order in which a sweep measures: the cheap attacks over the whole grid first, then
#: robust Sarsa, then the learned policy adversaries (and their retries)
STAGES = ("cheap", "rs", "learned")


def stage_of(unit: AttackUnit) -> str:
    """The stage an attack unit runs in."""
    if unit.name in POLICY_ADVERSARIES:
        return "learned"
    return "rs" if unit.name in SARSA_ATTACKS else "cheap"


def run_sweep(
    grid: Grid,
    out: str | Path,
    executor: str = "local",
    jobs: int | None = None,
    address: str | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    job_function: JobFunction = run_job,
    only: tuple[str, ...] | None = None,
) -> SweepSummary:
    """Run every job of ``grid`` that is not done yet; records go to ``out/records``.

    The work runs in ``STAGES``: each stage is planned afresh from the records the previous one
    wrote, so a job's expensive attacks run on its saved checkpoint, after every job's cheap
    ones. The learned stage goes series by series (``series_of``), and plans each series twice,
    the second time for the retries of its weak attacks, so that a series is complete, and can
    be judged, as soon as its turn ends rather than when the whole grid's has.
    Records are made in the portable numeric mode only (``numerics``), so that a record's
    numbers are the numbers anyone re-running its job gets, on any CPU.
    """
    if numeric_mode() != PORTABLE:
        raise ValueError("sweeps record in the portable numeric mode, which is not in force "
                         f"here (unset {MODE_VARIABLE}, and import pruningrl before any "
                         "torch computation)")
    start = time.perf_counter()
    store = RecordStore(out)
    planned = plan(grid, store, retry_failed, only=only)
    grid_jobs = [p.job for p in planned]  # the stages below re-plan these, not a new expansion
    summary = SweepSummary(grid.name, str(out), len(planned))
    summary.jobs_cached = sum(p.status == "cached" for p in planned)
    summary.jobs_without_agent = sum(p.status == UNREPLAYABLE for p in planned)
    bar = _bar(sum(len({stage_of(u) for u in p.todo}) for p in planned), grid.name, progress)
    ran: set[str] = set()
    for stage in STAGES:
        if stage != STAGES[0]:
            planned = plan(grid, store, jobs=grid_jobs, only=only)  # what is still lacking
        for group in (series_of(planned) if stage == "learned" else [planned]):
            for attempt in range(2 if stage == "learned" else 1):
                if attempt:  # the series' retries, planned from its attempts' records
                    group = plan(grid, store, jobs=[p.job for p in group], only=only)
                work = [(p, [u for u in p.todo if stage_of(u) == stage]) for p in group]
                _run_stage([w for w in work if w[1]], store, summary, executor, jobs, address,
                           job_function, bar)
                ran.update(p.job.id for p, units in work if units)
    if bar is not None:
        bar.close()
    summary.jobs_run = len(ran)
    failed_before = [p for p in plan(grid, store, jobs=grid_jobs) if p.status == "failed"
                     and p.job.id not in ran]
    for p in failed_before:
        summary.jobs_failed += 1
        summary.failures.append({"id": p.job.id, "job": _describe(p.job.settings),
                                 "error": p.record.get("error"), "not_retried": True})
    summary.wall_time_s = round(time.perf_counter() - start, 1)
    return summary


def series_of(planned: list[PlannedJob]) -> list[list[PlannedJob]]:
    """``planned`` (in the grid's order, ``jobs.expand``) cut into its series: a new series
    starts where a pruned job's task, variant, method, scope, radius or fine-tuning budget
    changes. Dense controls and random-policy jobs stay in the series they were expanded in,
    the first that needs them."""
    groups: list[list[PlannedJob]] = [[]]
    current = None
    for p in planned:
        config = p.job.settings
        if config.get("kind") == "prune" and config["method"] != "dense":
            key = tuple(config.get(k) for k in ("env_id", "variant", "method", "scope", "eps",
                                                "finetune_steps"))
            if current is not None and key != current:
                groups.append([])
            current = key
        groups[-1].append(p)
    return [g for g in groups if g]


def _run_stage(work: list[tuple[PlannedJob, list[AttackUnit]]], store: RecordStore,
               summary: SweepSummary, executor: str, jobs: int | None, address: str | None,
               job_function: JobFunction, bar) -> None:
    """Run each job's ``units`` of one stage, and write each job's record as it finishes."""
    if not work:
        return
    by_id = {p.job.id: p for p, _ in work}
    tasks = []
    for p, units in work:
        reuse = p.record is not None and p.record["status"] == "done"
        checkpoint = store.checkpoint(p.job.id) if reuse else None
        tasks.append((p.job.id, job_function,
                      (p.job.settings, [u.to_dict() for u in units], checkpoint, None)))
    for job_id, ok, value in run_tasks(tasks, executor, jobs, address):
        p = by_id[job_id]
        record = _merge(p.record, p.job, ok, value, executor)
        store.write(record, value.get("checkpoint") if ok else None)
        if not ok:
            summary.jobs_failed += 1
            summary.failures.append({"id": job_id, "job": _describe(p.job.settings),
                                     "error": value})
        if bar is not None:
            bar.update(1)


def _merge(old: dict | None, job: Job, ok: bool, value, executor: str) -> dict:
    """The job's new record: the old one's attacks kept, this run's added."""
    base = old if old is not None and old["status"] == "done" else None
    run_info = {**provenance(), "executor": executor}
    record = {"id": job.id, "config": job.settings,
              "provenance": [*(base["provenance"] if base else []), run_info]}
    if not ok:
        if base is not None:  # new attacks failed on a done job: keep what it had
            record.update(status="done", result=base["result"], phases=base["phases"],
                          error=value)
            return record
        record.update(status="failed", error=value, result={}, phases={})
        return record
    run_info["numeric_path"] = value.get("numeric_path", run_info["numeric_path"])
    run_info["units"] = sorted([*value["result"].get("attacks", {}),
                                *([CERTIFICATES] if CERTIFICATES in value["result"] else [])])
    result = dict(base["result"]) if base else {}
    attacks = dict(result.get("attacks", {}))
    attacks.update(value["result"].pop("attacks", {}))
    result.update(value["result"])
    result["attacks"] = attacks
    phases = {**(base["phases"] if base else {}), **value["phases"]}
    run_info["wall_time_s"] = round(sum(value["phases"].values()), 3)
    record.update(status="done", error=None, result=result, phases=phases)
    return record


def _describe(config: dict) -> str:
    if config["kind"] == "random_policy":
        return f"random policy on {config['env_id']}"
    pruning = ("dense control" if config["method"] == "dense" else
               f"{config['method']} ({config['scope']}) to {config['target_sparsity']:g}")
    return f"{config['agent']}, {pruning}, fine-tuned {config['finetune_steps']} steps"


def _bar(total: int, name: str, progress: bool):
    if not progress or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="job", desc=f"sweep {name}", file=sys.stderr,
                dynamic_ncols=True)


# ----------------------------------------------------------------------------- dry run


def estimate(planned: list[PlannedJob], stores: list[RecordStore]) -> dict:
    """Estimated seconds for the planned work, from per-phase costs measured in ``stores``.

    Costs are rates from done records: fine-tuning (and training) seconds per step, evaluation
    seconds per episode (per task and attack), certification and attacker training seconds per
    job. A phase never measured for a task is counted in ``unknown_phases`` instead of guessed.
    """
    rates = _measured_rates(stores)
    total, unknown = 0.0, 0
    for p in planned:
        if not p.todo:
            continue
        config = p.job.settings
        env = config["env_id"]
        keys: list[tuple[str, float]] = []
        if config["kind"] == "prune" and p.status != "partial":
            keys += [("finetune", config["finetune_steps"]), ("certify", 1.0),
                     ("train", config.get("train_steps", 0))]
            if config["target_sparsity"] == 0.0:
                keys.append(("evaluate:none", config["episodes"]))
        for unit in p.todo:
            if unit.name == CERTIFICATES:
                keys.append((f"certify:{CERTIFICATES}", 1.0))
                continue
            keys.append((f"evaluate:{unit.name}", config["episodes"]))
            if unit.name in (*SARSA_ATTACKS, *POLICY_ADVERSARIES):
                keys.append((f"attacker:{unit.name}", 1.0))
        for key, amount in keys:
            if amount == 0:
                continue
            rate = rates.get((env, key))
            if rate is None:
                unknown += 1
            else:
                total += rate * amount
    return {"estimated_s": round(total, 1), "unknown_phases": unknown}


def _measured_rates(stores: list[RecordStore]) -> dict[tuple[str, str], float]:
    sums: dict[tuple[str, str], list[float]] = {}
    for store in stores:
        for record in store.records():
            if record.get("status") != "done":
                continue
            config = record["config"]
            for key, seconds in record.get("phases", {}).items():
                kind = key.split(":")[0]
                name = key.split(":")[1] if ":" in key else ""
                name = name.split(":")[0]
                if kind == "finetune":
                    amount = config.get("finetune_steps") or 0
                elif kind == "train":
                    amount = config.get("train_steps") or 0
                elif kind in ("evaluate", "base"):
                    kind, amount = "evaluate", config["episodes"]
                else:
                    amount = 1.0
                if amount:
                    label = f"{kind}:{name}" if name else kind
                    sums.setdefault((config["env_id"], label), []).append(seconds / amount)
    return {key: sum(v) / len(v) for key, v in sums.items()}
