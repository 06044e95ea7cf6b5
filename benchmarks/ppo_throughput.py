"""PPO training throughput on Hopper-v5: pruningrl against Stable-Baselines3, in one run.

    .venv/bin/pip install stable-baselines3   # the peer (extra "bench")
    .venv/bin/python benchmarks/ppo_throughput.py [--samples 16384] [--json]

Every trainer runs the same PPO: 2048 samples per iteration, 10 epochs, minibatch 64, clip 0.2,
gamma 0.99, lambda 0.95, 64-64 tanh networks, observations and rewards normalized and clipped at
10 (SB3 through VecNormalize), for the same number of samples, one after the other on an
otherwise idle machine. Printed: samples/s of each, the ratios against SB3 with its default single
env and with 8 envs (and of our SA-PPO, which SB3 does not have, against SB3's plain PPO: the
regularizer's cost; and of its convex variant against the SGLD one and plain PPO), and each
trainer's samples/s as a fraction of the environment-only limit
(random actions on raw Hopper-v5 envs, one process per core). Not a timed test: a report.
"""

from __future__ import annotations

import pruningrl  # noqa: F401 - first: the process computes in the portable numeric mode

import argparse
import json
import multiprocessing as mp
import os
import time

import numpy as np
import torch


def env_only_rate(seconds: float, processes: int) -> float:
    """Steps/s of raw Hopper-v5 with random actions, summed over ``processes`` processes."""

    def work(queue):
        import gymnasium as gym

        env = gym.make("Hopper-v5", disable_env_checker=True).unwrapped
        env.reset(seed=0)
        rng = np.random.default_rng(0)
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            _, _, term, _, _ = env.step(rng.uniform(-1, 1, 3))
            steps += 1
            if term:
                env.reset()
        queue.put(steps / (time.perf_counter() - start))

    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=work, args=(queue,)) for _ in range(processes)]
    for p in procs:
        p.start()
    rates = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return float(sum(rates))


def ours(samples: int, num_envs: int, workers: int, sa_reg: float = 0.0,
         sa_method: str = "sgld") -> float:
    from pruningrl.ppo import PPOConfig, train

    sa = ({"sa_reg": sa_reg, "sa_eps": 0.075, "sa_ramp": 0.0, "sa_method": sa_method}
          if sa_reg else {})
    config = PPOConfig(env_id="Hopper-v5", total_steps=samples, num_envs=num_envs,
                       num_workers=workers, checkpoint_every=10**9, **sa)
    start = time.perf_counter()
    result = train(config, progress=False)
    return result.steps / (time.perf_counter() - start)


def sb3(samples: int, num_envs: int) -> float:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    env = VecNormalize(make_vec_env("Hopper-v5", n_envs=num_envs, seed=0), clip_obs=10.0,
                       clip_reward=10.0, gamma=0.99)
    model = PPO("MlpPolicy", env, n_steps=2048 // num_envs, batch_size=64, n_epochs=10,
                gamma=0.99, gae_lambda=0.95, clip_range=0.2, ent_coef=0.0, vf_coef=0.5,
                max_grad_norm=0.5, learning_rate=3e-4, seed=0, device="cpu", verbose=0,
                policy_kwargs={"net_arch": {"pi": [64, 64], "vf": [64, 64]},
                               "activation_fn": torch.nn.Tanh})
    start = time.perf_counter()
    model.learn(samples)
    rate = model.num_timesteps / (time.perf_counter() - start)
    env.close()
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=16384, help="samples per trainer")
    parser.add_argument("--env-seconds", type=float, default=10.0,
                        help="how long to time the environment-only limit")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import gymnasium as gym  # pay the imports (MuJoCo, gymnasium) before any trainer is timed

    gym.make("Hopper-v5").close()
    import stable_baselines3  # noqa: F401
    cores = min(2, os.cpu_count() or 1)
    rows: dict[str, float] = {}
    rows["env_only_2cores"] = env_only_rate(args.env_seconds, cores)
    rows["env_only_1core"] = env_only_rate(args.env_seconds, 1)
    rows["pruningrl_8envs_inprocess"] = ours(args.samples, 8, 0)
    rows["pruningrl_8envs_2workers"] = ours(args.samples, 8, 2)
    rows["pruningrl_1env"] = ours(args.samples, 1, 0)
    # SA-PPO (kappa 0.1, eps 0.075 from the first update, 10 SGLD steps per minibatch)
    rows["pruningrl_sappo_8envs_2workers"] = ours(args.samples, 8, 2, sa_reg=0.1)
    # SA-PPO's convex variant: a CROWN-IBP bound and its backward pass per minibatch
    rows["pruningrl_sappo_convex_8envs_2workers"] = ours(args.samples, 8, 2, sa_reg=0.1,
                                                         sa_method="convex")
    rows["sb3_1env"] = sb3(args.samples, 1)
    rows["sb3_8envs"] = sb3(args.samples, 8)
    best = max(rows["pruningrl_8envs_inprocess"], rows["pruningrl_8envs_2workers"])
    report = {
        "samples": args.samples,
        "samples_per_s": {k: round(v, 1) for k, v in rows.items()},
        "ratio_vs_sb3_1env": round(best / rows["sb3_1env"], 2),
        "ratio_vs_sb3_8envs": round(best / rows["sb3_8envs"], 2),
        "ratio_1env_layout_vs_sb3_1env": round(rows["pruningrl_1env"] / rows["sb3_1env"], 2),
        "ratio_sappo_vs_sb3_1env": round(rows["pruningrl_sappo_8envs_2workers"]
                                         / rows["sb3_1env"], 2),
        "ratio_sappo_convex_vs_sappo_sgld": round(
            rows["pruningrl_sappo_convex_8envs_2workers"]
            / rows["pruningrl_sappo_8envs_2workers"], 2),
        "ratio_sappo_convex_vs_ppo": round(rows["pruningrl_sappo_convex_8envs_2workers"]
                                           / rows["pruningrl_8envs_2workers"], 2),
        "fraction_of_env_only_limit_2cores": round(best / rows["env_only_2cores"], 3),
        "torch": torch.__version__,
    }
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report["samples_per_s"].items():
            print(f"{key:32s} {value:9.1f} samples/s")
        for key in ("ratio_vs_sb3_1env", "ratio_vs_sb3_8envs", "ratio_1env_layout_vs_sb3_1env",
                    "ratio_sappo_vs_sb3_1env", "ratio_sappo_convex_vs_sappo_sgld",
                    "ratio_sappo_convex_vs_ppo", "fraction_of_env_only_limit_2cores"):
            print(f"{key:36s} {report[key]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
