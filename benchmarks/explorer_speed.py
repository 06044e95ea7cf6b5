"""Speed of the live explorer (limit: every slider update under 0.3 s for Hopper on one core).

    .venv/bin/python benchmarks/explorer_speed.py [AGENT_ID]

Runs on one CPU core (torch.set_num_threads(1)). Builds a ``SparsityExplorer`` (no notebook
needed: the widgets hold their state without a front end), then moves the slider over every
sparsity of the grid, three passes, and times each update (``explorer.last_update``: the
panels redrawn and the PNG encoded, what the front end receives). Also times a sweep, the
recomputation when the agent, method, scope or eps changes, for each method and scope.
"""

from __future__ import annotations

import pruningrl  # noqa: F401 - first: the process computes in the portable numeric mode

import sys

import numpy as np
import torch

from pruningrl.widgets import SPARSITIES, explore

LIMIT = 0.3


def main(agent_id: str = "Hopper-v5/ppo/seed0") -> int:
    torch.set_num_threads(1)
    explorer = explore(agent_id, sparsity=0.0)
    times = []
    for _ in range(3):
        for s in (*SPARSITIES[1:], *SPARSITIES[::-1]):
            explorer.slider.value = s
            times.append(explorer.last_update)
    times = np.array(times)
    verdict = "OK" if times.max() < LIMIT else "TOO SLOW"
    print(f"{agent_id}: slider update over {len(times)} moves: median "
          f"{np.median(times) * 1000:.1f} ms, p95 {np.percentile(times, 95) * 1000:.1f} ms, "
          f"max {times.max() * 1000:.1f} ms (limit {LIMIT * 1000:.0f} ms): {verdict}")
    for method in ("magnitude", "random"):
        for scope in ("global", "layer"):
            explorer.method.value, explorer.scope.value = method, scope
            explorer.recompute()  # the agent and its visited states are loaded by now
            print(f"sweep ({method}, {scope}; {len(SPARSITIES)} sparsities, certificates, "
                  f"local bound on 256 states, figure): {explorer.last_sweep:.2f} s")
    return 0 if verdict == "OK" else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
