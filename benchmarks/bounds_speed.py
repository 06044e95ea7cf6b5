"""Speed of the certificates: the global bound (< 1 ms), the local bound on 10,000 states
(< 1 s), and the output bounds on 1,000 states (CROWN < 0.1 s).

    .venv/bin/python benchmarks/bounds_speed.py

Runs on one CPU core, in the portable numeric mode. The peers measured in the same run: the
forward pass of the same policy on the same states (the global and local bounds' costs are
printed as multiples of it), and IBP, the cheapest output bound (CROWN's and alpha-CROWN's
costs are printed as multiples of it).
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
    output_bounds()


def output_bounds() -> None:
    """IBP, CROWN and alpha-CROWN certificates of 64-64 policies on 1,000 states."""
    print(f"\n{'policy (1,000 states)':30s} {'norm':>4s} {'IBP ms':>8s} {'CROWN ms':>9s} "
          f"{'x IBP':>6s} {'alpha-CROWN s':>14s} {'x IBP':>7s}")
    for name, policy in [("gaussian 11->3 (Hopper)", GaussianPolicy(11, 3)),
                         ("categorical 4->2 (CartPole)", CategoricalPolicy(4, 2))]:
        states = torch.randn(1000, policy.obs_dim)
        for norm in ("inf", "2"):
            times = {method: best_of(lambda m=method, p=policy, n=norm, s=states: certified_tv(
                p, 0.075, n, m, s), 5 if method != "alpha-crown" else 1)
                for method in ("ibp", "crown", "alpha-crown")}
            print(f"{name:30s} {norm:>4s} {1e3 * times['ibp']:8.1f} "
                  f"{1e3 * times['crown']:9.1f} {times['crown'] / times['ibp']:6.1f} "
                  f"{times['alpha-crown']:14.2f} {times['alpha-crown'] / times['ibp']:7.0f}")
    print("target: CROWN on 1,000 states < 0.1 s (one core)")


if __name__ == "__main__":
    main()
