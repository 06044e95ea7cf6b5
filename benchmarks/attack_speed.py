"""Attack speed: MAD over 50 Hopper episodes, robust Sarsa, and the learned adversaries' MDPs.

    .venv/bin/python benchmarks/attack_speed.py [--agent Hopper-v5/ppo/seed0] [--json]
        [--sections mad sarsa mdp batching]

1. Evaluate 50 deterministic episodes clean and under MAD (10 SGLD steps per state, batched
   over the 10 vectorized envs): wall times, and MAD's cost as a ratio to the clean run.
   Target: MAD well under 2 minutes on 2 cores.
2. Robust Sarsa: collect ``--sarsa-samples`` victim transitions and fit one Q-function
   (collection samples/s; training wall time; TD error).
3. The adversary MDPs of the optimal attack and PA-AD: env steps/s with a zero adversary, as a
   ratio to the raw MuJoCo env in the same run, then a short PPO run on each (samples/s).
4. PA-AD's actor batched over the trainer's envs (``PAADEnv.prepare_steps``) against the same
   PPO run with each env running its own actor: samples/s of both, their ratio, and whether
   the two directors are the same bits (they must be).
The learned attackers' full training budgets and wall times are in
``pruningrl/results/attacks/``.
"""

from __future__ import annotations

import pruningrl  # noqa: F401 - first: the process computes in the portable numeric mode

import argparse
import json
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from pruningrl.adversaries import (
    OPTIMAL_ENV_ID,
    PAAD_ENV_ID,
    OptimalAttackEnv,
    PAADEnv,
    adversary_env_kwargs,
)
from pruningrl.attack_suite import make_attack
from pruningrl.envs import task_eps
from pruningrl.agent import load_agent
from pruningrl.evaluation import evaluate
from pruningrl.ppo import PPOConfig, train
from pruningrl.sarsa import SarsaConfig, train_robust_sarsa
from pruningrl.zoo import load, resolve


def env_rate(env: gym.Env, action, steps: int) -> float:
    env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def paad_batching(path: Path, eps: float, samples: int) -> dict:
    """PPO on PA-AD's MDP with the batched actor and without it, in one process."""
    rates, weights = {}, {}
    prepare = PAADEnv.__dict__["prepare_steps"]  # the staticmethod itself
    with tempfile.TemporaryDirectory() as folder:
        for mode in ("batched", "alone"):
            if mode == "alone":
                del PAADEnv.prepare_steps
            try:
                config = PPOConfig(env_id=PAAD_ENV_ID, env_kwargs=adversary_env_kwargs(path, eps),
                                   total_steps=samples)
                out = Path(folder) / f"{mode}.safetensors"
                rates[mode] = train(config, out, progress=False).samples_per_s
            finally:
                PAADEnv.prepare_steps = prepare
            weights[mode] = [w.detach().clone() for w in load_agent(out).policy.parameters()]
    same = all(torch.equal(a, b) for a, b in zip(weights["batched"], weights["alone"],
                                                  strict=True))
    return {"batched_samples_per_s": round(rates["batched"]),
            "alone_samples_per_s": round(rates["alone"]),
            "batched_over_alone": round(rates["batched"] / rates["alone"], 2),
            "same_bits": same}


def mad_speed(agent, eps: float, episodes: int) -> dict:
    """Clean and MAD evaluation wall times, and MAD's cost as a ratio to the clean run."""
    start = time.perf_counter()
    clean = evaluate(agent, episodes=episodes)
    clean_s = time.perf_counter() - start
    start = time.perf_counter()
    mad = evaluate(agent, episodes=episodes, attack=make_attack("mad", agent, eps))
    mad_s = time.perf_counter() - start
    return {"clean_s": round(clean_s, 1), "mad_s": round(mad_s, 1),
            "mad_over_clean": round(mad_s / clean_s, 2),
            "clean_return": round(clean.mean_return, 1), "mad_return": round(mad.mean_return, 1)}


def adversary_mdps(agent, path: Path, eps: float, samples: int) -> dict:
    """Each adversary MDP's env steps/s against the raw env's, and PPO's samples/s on it."""
    raw = gym.make(agent.env_id, disable_env_checker=True).unwrapped
    raw_rate = env_rate(raw, np.zeros(raw.action_space.shape), 5000)
    raw.close()
    report: dict = {"raw_env_steps_per_s": round(raw_rate)}
    for name, cls, env_id in (("optimal", OptimalAttackEnv, OPTIMAL_ENV_ID),
                              ("paad", PAADEnv, PAAD_ENV_ID)):
        env = cls(str(path), eps)
        rate = env_rate(env, np.zeros(env.action_space.shape), 5000)
        env.close()
        with tempfile.TemporaryDirectory() as folder:
            config = PPOConfig(env_id=env_id, env_kwargs=adversary_env_kwargs(path, eps),
                               total_steps=samples)
            trained = train(config, Path(folder) / "adversary.safetensors", progress=False)
        report[name] = {"env_steps_per_s": round(rate), "env_over_raw": round(rate / raw_rate, 2),
                        "ppo_samples_per_s": round(trained.samples_per_s)}
    return report


def print_report(report: dict) -> None:
    print(f"{report['agent']}, eps {report['eps']}")
    if "mad" in report:
        r = report["mad"]
        print(f"  clean {r['clean_s']} s (return {r['clean_return']}); MAD {r['mad_s']} s "
              f"(return {r['mad_return']}): {r['mad_over_clean']}x clean; target < 120 s")
    if "sarsa" in report:
        s = report["sarsa"]
        print(f"  robust Sarsa: {s['samples']} samples at {s['samples_per_s']:.0f}/s, "
              f"{s['gradient_steps']} gradient steps, {s['wall_time_s']} s in all, TD RMSE "
              f"{s['td_rmse']} ({s['td_rmse_relative']:.1%} of the targets' RMS)")
    if "mdp" in report:
        m = report["mdp"]
        for name in ("optimal", "paad"):
            r = m[name]
            print(f"  {name} MDP: {r['env_steps_per_s']} steps/s = {r['env_over_raw']}x the raw "
                  f"env ({m['raw_env_steps_per_s']}/s); PPO on it "
                  f"{r['ppo_samples_per_s']} samples/s")
    if "batching" in report:
        b = report["batching"]
        print(f"  PA-AD's actor batched over the envs: {b['batched_samples_per_s']} samples/s "
              f"against {b['alone_samples_per_s']} env by env = {b['batched_over_alone']}x; "
              f"same director bits: {b['same_bits']}")


SECTIONS = ("mad", "sarsa", "mdp", "batching")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", default="Hopper-v5/ppo/seed0")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--sarsa-samples", type=int, default=100_000)
    parser.add_argument("--ppo-samples", type=int, default=20_480)
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                        help="which measurements to run (default: all, in the order above)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    agent, path = load(args.agent), resolve(args.agent)
    eps = task_eps(agent.env_id) or 0.1
    report: dict = {"agent": args.agent, "eps": eps}
    if "mad" in args.sections:
        report["mad"] = mad_speed(agent, eps, args.episodes)
    if "sarsa" in args.sections:
        result = train_robust_sarsa(agent, SarsaConfig(samples=args.sarsa_samples))
        report["sarsa"] = {k: v for k, v in result.report().items() if k != "curve"}
    if "mdp" in args.sections:
        report["mdp"] = adversary_mdps(agent, path, eps, args.ppo_samples)
    if "batching" in args.sections:
        report["batching"] = paad_batching(path, eps, args.ppo_samples)
    if args.json:
        print(json.dumps(report))
    else:
        print_report(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
