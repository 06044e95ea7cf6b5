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
  and CROWN TV, and for a dense control the shipped agent's own clean return ("base");
* ``cheap_view``: every series judged by the cheap attacks alone, whatever else ran there.

``draw_frontier(env, height)`` draws one task's frontiers: per variant, the median normalized
clean and worst-attack return against sparsity with the seeds' range, and on its own axes the
certified TV at the task's eps (the slope bound and CROWN).
"""

from __future__ import annotations

from collections import defaultdict
from functools import cache

import numpy as np

from pruningrl.experiments.results import CHEAP_ATTACKS

GRID = "sweet-spot"
CATEGORICAL = ("CartPole-v1", "Acrobot-v1")
VARIANT_COLOR = {"ppo": "k", "sappo": "C1"}
CHEAP, LEARNED = CHEAP_ATTACKS, ("optimal", "paad")
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
    from pruningrl.experiments import RecordStore, load_grid, load_results, sweet_spots
    from pruningrl.experiments.results import SHIPPED_RESULTS, expected_points

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
        "cheap_view": {(e["env_id"], e["variant"], e["method"], e["scope"]): e
                       for e in sweet_spots(records, expected_points(grid), attacks=CHEAP)},
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


def _band(ax, x, values, color: str, **style) -> None:
    values = np.array(values)
    ax.plot(x, np.median(values, 0), marker="o", ms=2.5, color=color, **style)
    ax.fill_between(x, values.min(0), values.max(0), color=color, alpha=0.18)


def draw_frontier(env: str, height: float) -> None:
    """The frontiers of one task, every complete recipe a column (see the module docstring)."""
    import matplotlib.pyplot as plt

    from pruningrl.plotting import figure_size

    loaded = _loaded()
    keys = {(e["variant"], e["method"], e["scope"]) for e in loaded["complete"]
            if e["env_id"] == env}
    variants = [v for v in ("ppo", "sappo") if any(k[0] == v for k in keys)]
    recipes = [r for r in loaded["RECIPES"] if any(k[1:] == r for k in keys)]
    fig, axes = plt.subplots(len(variants) + 1, len(recipes), figsize=figure_size(height),
                             sharex=True, sharey="row", squeeze=False,
                             gridspec_kw={"height_ratios": [3] * len(variants) + [2]})
    for col, (method, scope) in enumerate(recipes):
        axes[0, col].set_title(f"{method}, {scope}")
        for row, variant in enumerate(variants):
            entry = loaded["by_series"][(env, variant, method, scope)]
            _draw_series(axes[row, col], axes[-1, col], env, variant, entry)
            axes[row, 0].set_ylabel(f"{NAMES[variant]}\nnormalized\nreturn")
        axes[-1, col].set_xlabel("sparsity (%)")
        axes[-1, col].set_xticks([0, 30, 60, 90])
    axes[-1, 0].set_ylim(-0.05, 1.05)
    axes[-1, 0].set_ylabel(f"certified\nTV at ε {entry['eps']:g}")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    fig.legend(handles=_legend(env, variants), loc="outside lower center", ncol=3)
    plt.show()


def _draw_series(ax, tv, env: str, variant: str, entry: dict) -> None:
    """One series: its returns on ``ax``, its certified TV on ``tv``."""
    x = 100 * np.array(entry["sparsities"])
    _band(ax, x, entry["per_seed"]["clean"], "C0")
    if env in CATEGORICAL:
        key = (env, variant, entry["method"], entry["scope"])
        _band(ax, x, _loaded()["cheap_view"][key]["per_seed"]["attacked"], "C3")
        _band(ax, x, entry["per_seed"]["attacked"], "C4", ls="--")
    else:
        _band(ax, x, entry["per_seed"]["attacked"], "C3")
    if entry["verdict"] == "candidate":
        ax.axvline(100 * entry["sweet_spot"], color="k", lw=1, ls="-.")
    for level in (0, 1):
        ax.axhline(level, color="0.5", lw=0.8, ls=":")
    ax.set_ylim(-0.12, 1.22)
    crown = [np.nan if v is None else v for v in entry["median_crown_tv"]]
    tv.plot(x, entry["median_local_tv"], color=VARIANT_COLOR[variant], marker=".")
    tv.plot(x, crown, color=VARIANT_COLOR[variant], marker=".", ls="--")


def _legend(env: str, variants: list[str]) -> list:
    from matplotlib.lines import Line2D

    worst = "worst cheap attack" if env in CATEGORICAL else "worst attack"
    handles = [Line2D([], [], color="C0", label="clean"), Line2D([], [], color="C3", label=worst)]
    if env in CATEGORICAL:
        handles.append(Line2D([], [], color="C4", ls="--", label="with learned adversaries"))
    handles.append(Line2D([], [], color="k", ls="-.", label="candidate"))
    handles += [Line2D([], [], color=VARIANT_COLOR[v], label=f"{NAMES[v]}: slope bound")
                for v in variants]
    return [*handles, Line2D([], [], color="0.4", ls="--", label="CROWN")]


def __getattr__(name: str):
    loaded = _loaded()
    if name in loaded:
        return loaded[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
