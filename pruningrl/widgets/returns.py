"""The returns the sweet-spot sweep measured: clean and attacked, per sparsity, over seeds.

Read from the shipped records (``pruningrl.experiments.load_results("sweet-spot")``); nothing is
evaluated here. Those agents were pruned and then fine-tuned (the sweep's budget), so they are
not the one-shot masks the explorer draws; a point the sweep has not measured is simply absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from pruningrl.experiments.results import load_results, score_attacks

SOURCE = "sweet-spot"


@dataclass(frozen=True)
class ReturnSeries:
    """Median and seed range of the clean and attacked mean returns, per measured sparsity."""

    env_id: str
    variant: str
    method: str
    scope: str
    attacks: tuple[str, ...]           # the attacked return is the worst of these
    sparsities: tuple[float, ...]
    seeds: tuple[int, ...]
    clean: dict[float, tuple[float, float, float]]     # s -> (median, min, max) over seeds
    attacked: dict[float, tuple[float, float, float]]

    def at(self, s: float) -> tuple[tuple[float, float, float] | None, ...]:
        """(clean, attacked) at sparsity ``s``; None where the sweep has no measurement."""
        key = next((x for x in self.sparsities if abs(x - s) < 1e-9), None)
        if key is None:
            return None, None
        return self.clean.get(key), self.attacked.get(key)


@lru_cache(maxsize=1)
def _rows() -> tuple[dict, ...]:
    return tuple(load_results(SOURCE)["rows"])


def _summary(values: dict[tuple[float, int], float]) -> dict[float, tuple[float, float, float]]:
    out: dict[float, list[float]] = {}
    for (s, _), v in values.items():
        out.setdefault(s, []).append(v)
    return {s: (float(np.median(v)), float(min(v)), float(max(v))) for s, v in out.items()}


def shipped_returns(env_id: str, variant: str, method: str, scope: str) -> ReturnSeries | None:
    """The measured series of one task, variant, method and scope (None: none measured).

    The sparsity-0 point is the series' dense control (fine-tuned, unpruned): the one with the
    series' fine-tuning budget and eps.
    """
    pruned = [r for r in _rows() if (r["env_id"], r["variant"], r["method"], r["scope"])
              == (env_id, variant, method, scope)]
    if not pruned:
        return None
    budget, eps, lr = (pruned[0][k] for k in ("finetune_steps", "certified_eps", "finetune_lr"))
    members = pruned + [r for r in _rows() if r["env_id"] == env_id and r["variant"] == variant
                        and r["method"] == "dense" and r["finetune_steps"] == budget
                        and r["certified_eps"] == eps and r["finetune_lr"] == lr]
    attacks = score_attacks(members) or sorted({r["attack"] for r in members} - {"none"})
    clean, worst = {}, {}
    for r in members:
        point = (r["target_sparsity"], r["seed"])
        if r["attack"] == "none":
            clean[point] = r["mean_return"]
        elif r["attack"] in attacks:
            worst[point] = min(worst.get(point, np.inf), r["mean_return"])
    return ReturnSeries(
        env_id, variant, method, scope, tuple(attacks),
        tuple(sorted({s for s, _ in clean})), tuple(sorted({seed for _, seed in clean})),
        _summary(clean), _summary(worst))
