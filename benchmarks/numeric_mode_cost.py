"""What the portable numeric mode costs: PPO throughput, certificates and an attack, native
against portable, in one run.

    .venv/bin/python benchmarks/numeric_mode_cost.py [--repeats 2] [--json]

The mode is fixed per process before MKL first runs, so every measurement runs in a fresh
process, with ``PRUNINGRL_NUMERICS=native`` or ``=portable``, interleaved (native, portable,
native, ...) so that a drift of the machine's speed hits both. Each workload is timed after a
warm-up, on one thread in both modes (the library trains, evaluates and attacks on one thread
per process). Printed: each workload's rate in both modes (the best of ``--repeats``) and the
ratio portable / native (1.0 = free; 0.8 = the portable mode runs at 80% of the native speed).

Workloads:
* ``ppo``: PPO on Hopper-v5, 8 envs in process, 8,192 samples: samples/s;
* ``sappo``: the same with the SA-PPO regularizer (10 SGLD steps per minibatch): samples/s;
* ``local_bound``: the local certificate of a 64-64 Hopper policy on 10,000 states: states/s;
* ``global_bound``: the global certificate of the same policy: calls/s;
* ``mad``: 10 Hopper episodes of the shipped PPO agent under MAD (eps 0.075): env steps/s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

WORKLOADS = ("ppo", "sappo", "local_bound", "global_bound", "mad")


def measure(workload: str) -> float:
    """The rate of ``workload`` in this process (units in the module docstring)."""
    import torch

    torch.set_num_threads(1)
    if workload in ("ppo", "sappo"):
        from pruningrl.ppo import PPOConfig, train

        sa = {"sa_reg": 0.1, "sa_eps": 0.075, "sa_ramp": 0.0} if workload == "sappo" else {}
        config = PPOConfig(env_id="Hopper-v5", total_steps=8192, num_envs=8, num_workers=0,
                           checkpoint_every=10**9, **sa)
        train(PPOConfig(env_id="Hopper-v5", total_steps=2048, num_envs=8, num_workers=0,
                        checkpoint_every=10**9, **sa), progress=False)  # warm-up
        start = time.perf_counter()
        result = train(config, progress=False)
        return result.steps / (time.perf_counter() - start)
    if workload in ("local_bound", "global_bound"):
        from pruningrl.bounds import certified_tv
        from pruningrl.policies import GaussianPolicy

        torch.manual_seed(0)
        policy, states = GaussianPolicy(11, 3), torch.randn(10_000, 11)
        if workload == "local_bound":
            call, count = (lambda: certified_tv(policy, 0.075, method="local", states=states),
                           10_000)
        else:
            call, count = (lambda: certified_tv(policy, 0.075), 1)
        call()
        best = min(_timed(call) for _ in range(5 if workload == "local_bound" else 200))
        return count / best
    from pruningrl.attack_suite import make_attack
    from pruningrl.evaluation import evaluate
    from pruningrl.zoo import load

    agent = load("Hopper-v5/ppo/seed0")
    attack = make_attack("mad", agent, eps=0.075)
    evaluate(agent, episodes=1, attack=attack, num_envs=1)
    start = time.perf_counter()
    result = evaluate(agent, episodes=10, attack=attack)
    return float(sum(result.lengths)) / (time.perf_counter() - start)


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def in_fresh_process(workload: str, mode: str) -> float:
    """``measure(workload)`` in a new process started in numeric ``mode``."""
    from pruningrl.numerics import PORTABLE_ENVIRONMENT

    env = {k: v for k, v in os.environ.items() if k not in PORTABLE_ENVIRONMENT}
    env["PRUNINGRL_NUMERICS"] = mode  # native: the CPU's own choices; portable: set at import
    code = ("import pruningrl, sys; from pruningrl.numerics import numeric_mode; "
            "sys.path.insert(0, 'benchmarks'); import numeric_mode_cost as b; "
            f"assert numeric_mode() == {mode!r}, numeric_mode(); print(b.measure({workload!r}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(os.path.dirname(__file__)) or ".")
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workloads", nargs="*", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rates: dict[str, dict[str, float]] = {}
    for workload in args.workloads:
        runs = {"native": [], "portable": []}
        for _ in range(args.repeats):
            for mode in ("native", "portable"):
                runs[mode].append(in_fresh_process(workload, mode))
        rates[workload] = {mode: max(values) for mode, values in runs.items()}
        if not args.json:
            native, portable = rates[workload]["native"], rates[workload]["portable"]
            print(f"{workload:13s} native {native:12.1f}/s  portable {portable:12.1f}/s  "
                  f"ratio {portable / native:.2f}", flush=True)
    if args.json:
        print(json.dumps({w: {**r, "ratio": round(r["portable"] / r["native"], 3)}
                          for w, r in rates.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
