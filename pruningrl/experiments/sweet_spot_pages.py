"""The sweet-spot grid's shipped results, indexed the way the sweet-spot chapter reads them.

Every page of that chapter starts from the same objects, loaded once, on first use (the
module's attributes are computed lazily, PEP 562):

* ``grid``, ``results`` (``load_results("sweet-spot")``), ``records`` and ``done`` (the done
  records by job id);
* ``SPARSITIES`` and ``RECIPES`` (method, scope) of the grid's first part; ``CHEAP`` and
  ``LEARNED``, the two families of attacks;
* ``by_series``: every judged series by (task, variant, method, scope); ``complete``: the
  series with a verdict on three seeds and every sparsity; ``series(...)`` picks one;
* ``by_point``: per point (task, variant, method, scope, sparsity, seed, budget), the worst
  mean return of each attack (a retried adversary by its stronger attempt), its certified TV
  and CROWN TV, and for a dense control the shipped agent's own clean return ("base").
"""

from __future__ import annotations

from collections import defaultdict
from functools import cache

import numpy as np

GRID = "sweet-spot"
CHEAP, LEARNED = ("random", "critic", "mad"), ("optimal", "paad")
NAMES = {"ppo": "PPO", "sappo": "SA-PPO"}


def task(env: str) -> str:
    """A task's short name: Hopper for Hopper-v5."""
    return env.split("-")[0]


def recipe(method: str, scope: str | None) -> str:
    """A pruning recipe's name: "dense", or "magnitude (global)"."""
    return "dense" if method == "dense" else f"{method} ({scope})"


def series(env: str, variant: str, method: str, scope: str) -> dict:
    """The complete series of one task, variant and pruning recipe."""
    return next(e for e in _loaded()["complete"]
                if (e["env_id"], e["variant"], e["method"], e["scope"])
                == (env, variant, method, scope))


@cache
def _loaded() -> dict:
    from pruningrl.experiments import RecordStore, load_grid, load_results
    from pruningrl.experiments.results import SHIPPED_RESULTS

    grid = load_grid(GRID)
    results = load_results(GRID)
    records = RecordStore(SHIPPED_RESULTS / GRID).records()
    sparsities = list(grid.parts[0].sparsities)
    return {
        "grid": grid, "results": results, "records": records,
        "done": {r["id"]: r for r in records if r["status"] == "done"},
        "SPARSITIES": sparsities,
        "RECIPES": [(m, s) for m in grid.parts[0].methods for s in grid.parts[0].scopes],
        "by_series": {(e["env_id"], e["variant"], e["method"], e["scope"]): e
                      for e in results["sweet_spots"]},
        "complete": [e for e in results["sweet_spots"]
                     if e["verdict"] != "incomplete" and len(e["seeds"]) == 3
                     and e["sparsities"] == sparsities],
        "by_point": _by_point(results["rows"]),
    }


def _by_point(rows: list[dict]) -> dict[tuple, dict]:
    out: dict[tuple, dict] = defaultdict(dict)
    for r in rows:
        point = out[(r["env_id"], r["variant"], r["method"], r["scope"], r["target_sparsity"],
                     r["seed"], r["finetune_steps"])]
        point[r["attack"]] = min(point.get(r["attack"], np.inf), r["mean_return"])
        point["certified TV"] = r["certified_tv"]
        point["CROWN TV"] = r["crown_tv"]
        if r["base_clean_return"] is not None:  # the shipped agent's own clean return
            point["base"] = r["base_clean_return"]
    return out


def __getattr__(name: str):
    loaded = _loaded()
    if name in loaded:
        return loaded[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
