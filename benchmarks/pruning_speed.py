"""Pruning and certification speed, and the cost of fine-tuning a pruned agent.

    .venv/bin/python benchmarks/pruning_speed.py [--agent Hopper-v5/ppo/seed0] [--json]

1. Prune a shipped 64-64 agent by global magnitude at 10 sparsities (0, 0.1, ..., 0.9), each
   from a fresh copy, and certify each (global certificate at the task's eps): total wall time.
   Target: well under a second.
2. Fine-tune for the same number of PPO samples from the dense agent and from its 80%-pruned
   copy (masks from ``torch.nn.utils.prune``, analytic gradients): samples/s of each and their
   ratio. Not a timed test: a report.
"""

from __future__ import annotations

import pruningrl  # noqa: F401 - first: the process computes in the portable numeric mode

import argparse
import json
import time

import torch

from pruningrl.agent import clone_policy
from pruningrl.bounds import certified_tv
from pruningrl.envs import task_eps
from pruningrl.ppo import PPOConfig, train
from pruningrl.pruning import magnitude_prune
from pruningrl.zoo import load


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", default="Hopper-v5/ppo/seed0")
    parser.add_argument("--finetune-samples", type=int, default=16384)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    agent = load(args.agent)
    eps = task_eps(agent.env_id) or 0.05
    levels = [i / 10 for i in range(10)]

    start = time.perf_counter()
    certificates = []
    for level in levels:
        policy = clone_policy(agent.policy)
        magnitude_prune(policy, level)
        certificates.append(certified_tv(policy, eps))
    prune_certify_s = time.perf_counter() - start
    assert all(b <= a for a, b in zip(certificates[:-1], certificates[1:], strict=True))

    rates = {}
    config = PPOConfig.from_dict({**agent.metadata["config"],
                                  "total_steps": args.finetune_samples, "freeze_obs_norm": True})
    for name, level in (("dense", 0.0), ("pruned_0.8", 0.8)):
        start_agent = load(args.agent)
        if level:
            magnitude_prune(start_agent.policy, level, scope="layer")
        result = train(config, init=start_agent, progress=False)
        rates[name] = result.samples_per_s

    report = {
        "agent": args.agent,
        "prune_and_certify_10_sparsities_s": round(prune_certify_s, 4),
        "certified_tv": [round(c, 6) for c in certificates],
        "finetune_samples_per_s": {k: round(v, 1) for k, v in rates.items()},
        "pruned_vs_dense_finetune_ratio": round(rates["pruned_0.8"] / rates["dense"], 3),
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(f"prune + certify at 10 sparsities: {prune_certify_s * 1e3:.1f} ms")
        print(f"certified TV (eps {eps}): {report['certified_tv']}")
        for name, rate in report["finetune_samples_per_s"].items():
            print(f"fine-tune samples/s, {name:10s}: {rate:.0f}")
        print(f"pruned / dense fine-tuning speed: {report['pruned_vs_dense_finetune_ratio']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
