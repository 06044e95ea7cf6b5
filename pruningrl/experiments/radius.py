"""Choosing a task's radius by the strongest attack that ran.

A task without a radius from the literature (CartPole, Acrobot) needs one at which robustness
can be measured: too small and every agent keeps its return, too large and every agent falls
to the random policy's, so every attacked score is 0 and no series can be judged. The rule:
over dense controls at several radii, the worst attacked return of each seed (over every attack
and attempt that ran) is normalized, n(R) = (R - R_rand) / (R_0 - R_rand) with R_0 the seed's
clean return; the radius is the smallest at which the median seed keeps at most ``target`` of
its normalized return. Where the median falls from above ``1 - BRACKET`` to below ``BRACKET``
between two neighbouring radii, the rule asks for one more radius, their geometric mean,
before choosing.

No radius is chosen while the evidence is uneven: every seed at every radius of a task must
have been attacked by every attack that ran anywhere on the task (compared by attack name, so
the extra attempts a retry rule gives to some points do not count as a missing attack). The
rule is meant to be read once the grid's sweep has nothing left to run.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from pruningrl.experiments.results import normalized, random_returns, rows

#: a fall through this band between neighbouring radii is too steep to choose from
BRACKET = 0.25


def radius_by_strongest_attack(records: list[dict], target: float = 0.5) -> dict[str, dict]:
    """Per task: the radii measured, the median normalized worst-attack return at each, the
    number of seeds and attacks behind it, the radii where some seed still lacks an attack
    that ran elsewhere on the task (``incomplete``), the chosen radius (None while any radius
    is incomplete, or if no radius brings the median down to ``target``), and a radius to add
    first (None if the rule needs none)."""
    if not 0 < target < 1:
        raise ValueError(f"target must lie in (0, 1), got {target}")
    r_rand = random_returns(records)
    per_seed: dict[tuple[str, float], dict[int, dict[str, float]]] = defaultdict(dict)
    attacks: dict[tuple[str, float], dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
    names: dict[tuple[str, float], dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
    for r in rows(records):
        if r["method"] != "dense":
            continue
        key, point = (r["env_id"], r["certified_eps"]), (r["seed"], r["episodes"])
        entry = per_seed[key].setdefault(point, {"worst": math.inf})
        if r["attack"] == "none":
            entry["clean"] = r["mean_return"]
        entry["worst"] = min(entry["worst"], r["mean_return"])
        attacks[key][r["seed"]].add(r["attack_label"])
        names[key][r["seed"]].add(r["attack"])
    out: dict[str, dict] = {}
    for env in sorted({env for env, _ in per_seed}):
        radii = sorted(eps for e, eps in per_seed if e == env)
        medians = [_median_normalized(per_seed[(env, eps)], env, r_rand) for eps in radii]
        labels = [attacks[(env, eps)].values() for eps in radii]
        ran = set().union(*(s for eps in radii for s in names[(env, eps)].values()))
        incomplete = [eps for eps in radii
                      if any(s != ran for s in names[(env, eps)].values())]
        out[env] = {"eps": radii, "median_normalized": medians,
                    "seeds": [len(per_seed[(env, eps)]) for eps in radii],
                    "attacks": [sorted(set().union(*sets)) for sets in labels],
                    "incomplete": incomplete,
                    **(_choose(radii, medians, target) if not incomplete
                       else {"chosen": None, "refine": None})}
    return out


def _median_normalized(points: dict[tuple[int, int], dict], env: str,
                       r_rand: dict[tuple[str, int], float]) -> float:
    values = []
    for (seed, episodes), entry in sorted(points.items()):
        if (env, episodes) not in r_rand or "clean" not in entry:
            raise ValueError(f"{env}: seed {seed} lacks its clean return or the random "
                             "policy's return; run the grid's missing jobs first")
        values.append(normalized(entry["worst"], entry["clean"], r_rand[(env, episodes)]))
    return float(np.median(values))


def _choose(radii: list[float], medians: list[float], target: float) -> dict:
    for i, (eps, median) in enumerate(zip(radii, medians, strict=True)):
        if median <= target:
            if i > 0 and medians[i - 1] > 1 - BRACKET and median < BRACKET:
                return {"chosen": None, "refine": math.sqrt(radii[i - 1] * eps)}
            return {"chosen": eps, "refine": None}
    return {"chosen": None, "refine": None}
