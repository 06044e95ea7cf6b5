"""Speed of the certificates (issue: global bound < 1 ms, local bound on 10,000 states < 1 s).

    .venv/bin/python benchmarks/bounds_speed.py

Runs on one CPU core (torch.set_num_threads(1)). The peer measured in the same run is the
forward pass of the same policy on the same states: the local bound's cost is printed as a
multiple of it, and the global bound as a multiple of one forward pass on a single state.
"""

from __future__ import annotations

import pruningrl  # noqa: F401 - first: the process computes in the portable numeric mode

import time

import torch

from pruningrl.bounds import certified_tv
from pruningrl.policies import CategoricalPolicy, GaussianPolicy


def best_of(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cases = [("gaussian 11->3 (Hopper)", GaussianPolicy(11, 3)),
             ("gaussian 105->8 (Ant)", GaussianPolicy(105, 8)),
             ("categorical 4->2 (CartPole)", CategoricalPolicy(4, 2))]
    print(f"{'policy':30s} {'norm':>4s} {'global ms':>10s} {'x fwd(1)':>9s} "
          f"{'local 10k s':>12s} {'x fwd(10k)':>10s}")
    for name, policy in cases:
        one = torch.randn(1, policy.obs_dim)
        states = torch.randn(10_000, policy.obs_dim)
        with torch.no_grad():
            forward_one = best_of(lambda: policy(one), 200)  # noqa: B023
            forward_many = best_of(lambda: policy(states), 20)  # noqa: B023
        for norm in ("inf", "2"):
            glob = best_of(lambda: certified_tv(policy, 0.075, norm), 200)  # noqa: B023
            local = best_of(
                lambda: certified_tv(policy, 0.075, norm, "local", states), 5  # noqa: B023
            )
            print(f"{name:30s} {norm:>4s} {1e3 * glob:10.3f} {glob / forward_one:9.1f} "
                  f"{local:12.3f} {local / forward_many:10.1f}")
    print("targets: global < 1 ms; local on 10,000 states < 1 s (one core)")


if __name__ == "__main__":
    main()
