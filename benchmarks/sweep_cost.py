"""Sweep cost: one Hopper point's phases on one core, and Ray's overhead on the smoke grid.

    .venv/bin/python benchmarks/sweep_cost.py [--sparsity 0.5] [--finetune-steps 50000] [--json]

1. One sweep job as the engine runs it (``pruningrl.experiments.run_job``, one thread):
   Hopper-v5/ppo/seed0 pruned by global magnitude, fine-tuned ``--finetune-steps`` PPO steps,
   certified, then 50 deterministic episodes each clean and under random, critic and MAD at the
   task's eps. Beside it, the limit: the raw Hopper environment alone (random actions) for as
   many steps as the point needs (fine-tuning steps + 4 x 50 episodes of at most 1,000 steps),
   timed in the same run. Target: the point in under 40 s on one core.
2. One robust-Sarsa Q-function (the default 100,000 victim transitions); the RS attack trains
   ``len(SARSA_GRID)`` of them and screens each on 5 episodes.
3. The smoke grid under the local executor and under Ray (2 workers each): Ray's overhead as a
   ratio of wall times.
"""

from __future__ import annotations

import pruningrl  # noqa: F401 - first: the process computes in the portable numeric mode

import argparse
import json
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import torch

from pruningrl.attack_suite import SARSA_GRID
from pruningrl.envs import task_eps
from pruningrl.experiments import expand, load_grid, run_job, run_sweep
from pruningrl.experiments.jobs import file_sha256
from pruningrl.sarsa import SarsaConfig, collect_transitions, train_robust_sarsa
from pruningrl.zoo import agent_path, load

AGENT = "Hopper-v5/ppo/seed0"


def env_only_seconds(env_id: str, steps: int) -> float:
    env = gym.make(env_id, disable_env_checker=True)
    env.reset(seed=0)
    env.action_space.seed(0)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    env.close()
    return time.perf_counter() - start


def point(sparsity: float, finetune_steps: int) -> dict:
    config = {"kind": "prune", "agent": AGENT, "env_id": "Hopper-v5", "variant": "ppo",
              "seed": 0, "agent_sha256": file_sha256(agent_path(AGENT)),
              "finetune_steps": finetune_steps, "eps": task_eps("Hopper-v5"), "norm": "inf",
              "episodes": 50, "local_states": 1000, "method": "magnitude", "scope": "global",
              "target_sparsity": sparsity}
    attacks = [{"name": n, "budget": None, "seed": 0} for n in ("none", "random", "critic",
                                                                 "mad")]
    start = time.perf_counter()
    out = run_job(config, attacks)
    total = time.perf_counter() - start
    steps = finetune_steps + sum(sum(a["lengths"]) for a in out["result"]["attacks"].values())
    return {"phases_s": out["phases"], "total_s": round(total, 1), "env_steps": steps,
            "returns": {k: round(v["mean_return"], 1)
                        for k, v in out["result"]["attacks"].items()}}


def sarsa_q_function() -> dict:
    agent = load(AGENT)
    config = SarsaConfig(action_eps=SARSA_GRID[0][0], reg=SARSA_GRID[0][1])
    start = time.perf_counter()
    data = collect_transitions(agent, config)
    collected = time.perf_counter() - start
    train_robust_sarsa(agent, config, data=data)
    return {"samples": config.samples, "collect_s": round(collected, 1),
            "train_s": round(time.perf_counter() - start - collected, 1),
            "grid": len(SARSA_GRID)}


def ray_overhead() -> dict:
    grid = load_grid("smoke")
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for executor in ("local", "ray"):
            summary = run_sweep(grid, Path(tmp) / executor, executor, jobs=2, progress=False)
            times[executor] = summary.wall_time_s
    return {"jobs": len(expand(grid)), "local_s": times["local"], "ray_s": times["ray"],
            "ratio": round(times["ray"] / times["local"], 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--finetune-steps", type=int, default=50_000)
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    measured = point(args.sparsity, args.finetune_steps)
    limit = env_only_seconds("Hopper-v5", measured["env_steps"])
    report = {"point": measured, "env_only_s": round(limit, 1),
              "point_over_env_only": round(measured["total_s"] / limit, 2),
              "rs_q_function": sarsa_q_function()}
    if not args.skip_ray:
        report["ray"] = ray_overhead()
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"one Hopper point (sparsity {args.sparsity}, {args.finetune_steps} fine-tuning steps, "
          "4 x 50 episodes), one core:")
    for phase, seconds in measured["phases_s"].items():
        print(f"  {phase:18s} {seconds:8.1f} s")
    print(f"  {'total':18s} {measured['total_s']:8.1f} s   (target < 40 s)")
    print(f"  raw Hopper env alone, same {measured['env_steps']} steps: {limit:.1f} s  -> "
          f"the point costs {report['point_over_env_only']:.2f}x the environment's limit")
    rs = report["rs_q_function"]
    print(f"one robust-Sarsa Q-function ({rs['samples']} samples): collect {rs['collect_s']} s, "
          f"train {rs['train_s']} s; the RS attack trains {rs['grid']} and screens each")
    if "ray" in report:
        ray = report["ray"]
        print(f"smoke grid ({ray['jobs']} jobs, 2 workers): local {ray['local_s']} s, "
              f"Ray {ray['ray_s']} s -> Ray/local {ray['ratio']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
