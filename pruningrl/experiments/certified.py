"""The certified sweet spot: pruning judged by what a sound certificate says, not by attacks.

On a certifiably trained agent the certificate carries information, so pruning can be judged
by it. Per base agent (task, variant, seed), pruning method and scope, with the definitions of
``pruningrl.experiments.results`` (R_rand, the dense control, n(R)):

* TV(s): the mean over the point's visited states of the CROWN bound on the total variation
  between the clean and any attacked action distribution at the task's eps (the records'
  certificate unit); 1 - TV(s) is the point's certified robustness;
* certified score cs(s) = (n(R_clean(s)) + 1 - TV(s)) / 2: the clean return and the
  certificate, weighed alike, as the sweet-spot score weighs the clean and attacked returns;
* the sweet-spot rule on cs: s* the sparsity with the highest median score, the per-seed gains
  cs(s*) - cs(0), their spread and the rule's verdict. A series the rule fires on is a
  *candidate*, never a confirmed sweet spot: the sparsity is chosen on the scores that judge it.
  Beside it stands the rule's false-positive rate under exchangeable null scores with the
  series' own numbers of seeds and sparsities (``calibration.null_false_positive_rate``).

Pruning against certified training at equal clean return (``certified_against_pruned``): per
task, the dense control of the certifiably trained variant against the pruned point of another
variant whose median clean return is closest to it, on the mean CROWN TV and on the worst
attacked return under the cheap attacks and under PA-AD (the worst of its attempts), medians
over seeds.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from pruningrl.experiments.calibration import null_false_positive_rate
from pruningrl.experiments.results import (
    CHEAP_ATTACKS,
    _judge,
    expected_points,
    grid_of,
    normalized,
    pruned_series,
    random_returns,
    results_dir,
    rows,
)
from pruningrl.experiments.store import RecordStore
from pruningrl.experiments.sweep import owed_attacks

#: the variant trained against a sound bound, and the variant it is compared with
CERTIFIED_VARIANT, RIVAL_VARIANT = "sappo-convex", "sappo"
NULL_TRIALS = 20_000


def certified_score(clean_normalized: float, crown_tv: float) -> float:
    """cs = (n(R_clean) + 1 - TV) / 2: the normalized clean return and the certified robustness
    1 - TV, weighed alike."""
    return (clean_normalized + 1.0 - crown_tv) / 2


@cache
def _null_rate(seeds: int, sparsities: int) -> float:
    return null_false_positive_rate(seeds, sparsities, NULL_TRIALS).rate


def certified_sweet_spots(records: list[dict], expected: dict[tuple, set] | None = None
                          ) -> list[dict]:
    """One entry per pruned series: its certified score per sparsity (median over seeds, and
    per seed), s*, the gains, and the verdict ("candidate", "none here" or "incomplete") with
    the rule's null false-positive rate."""
    r_rand = random_returns(records)
    out = []
    for _, entry, members in pruned_series(rows(records), expected):
        if "verdict" not in entry:
            entry.update(_certified_spot(members, r_rand.get((entry["env_id"],
                                                              entry["episodes"]))))
        out.append(entry)
    return out


def _certified_spot(members: list[dict], random_return: float | None) -> dict:
    clean = {(r["target_sparsity"], r["seed"]): r for r in members if r["attack"] == "none"}
    seeds = sorted({seed for _, seed in clean})
    sparsities = sorted({s for s, _ in clean})
    if random_return is None:
        return {"verdict": "incomplete", "reason": "no random-policy return for this task"}
    missing = [(s, k) for s in sparsities for k in seeds
               if (s, k) not in clean or clean[(s, k)].get("crown_tv") is None]
    if 0.0 not in sparsities or missing:
        return {"verdict": "incomplete", "reason": f"{len(missing)} of "
                f"{len(sparsities) * len(seeds)} points lack a clean return or a certificate"}
    if any(clean[(0.0, k)]["mean_return"] <= random_return for k in seeds):
        return {"verdict": "incomplete",
                "reason": "a dense control is no better than the random policy"}
    score, clean_n, tv = {}, {}, {}
    for (s, k), r in clean.items():
        clean_n[(s, k)] = normalized(r["mean_return"], clean[(0.0, k)]["mean_return"],
                                     random_return)
        tv[(s, k)] = r["crown_tv"]
        score[(s, k)] = certified_score(clean_n[(s, k)], tv[(s, k)])
    medians, best, gains, spread, verdict = _judge(score, sparsities, seeds)
    return {
        "verdict": verdict,
        "sweet_spot": best, "seeds": seeds, "sparsities": sparsities,
        "gain_median": float(np.median(gains)), "gain_min": min(gains), "gain_max": max(gains),
        "gain_spread": spread,
        "null_false_positive_rate": (_null_rate(len(seeds), len(sparsities))
                                     if len(seeds) > 1 else None),
        "median_score": [medians[s] for s in sparsities],
        "median_clean": [_median(clean_n, s, seeds) for s in sparsities],
        "median_crown_tv": [_median(tv, s, seeds) for s in sparsities],
        "per_seed": {name: [[values[(s, k)] for s in sparsities] for k in seeds]
                     for name, values in (("clean", clean_n), ("crown_tv", tv),
                                          ("score", score))},
    }


def _median(values: dict[tuple, float], sparsity: float, seeds: list[int]) -> float:
    return float(np.median([values[(sparsity, k)] for k in seeds]))


def certified_against_pruned(table: list[dict], certified: str = CERTIFIED_VARIANT,
                             rival: str = RIVAL_VARIANT,
                             owed: dict[str, set[str]] | None = None) -> list[dict]:
    """Per task where both variants ran: the certified variant's dense control against the
    rival's pruned point (any method, scope and sparsity > 0) whose median clean return is
    closest to it; each with its median clean return, mean CROWN TV, worst cheap attack and
    worst PA-AD return (None where those attacks have not run at every seed of the point, or
    where a seed's run still owes them: ``owed``, ``sweep.owed_attacks`` of the grid, job id
    -> attack names, such as PA-AD's remaining attempts or its retry)."""
    points = _point_medians(table, owed or {})
    out = []
    for env in sorted({key[0] for key in points}):
        dense = points.get((env, certified, "dense", None, 0.0))
        pruned = {key: p for key, p in points.items()
                  if key[:2] == (env, rival) and key[2] != "dense"}
        if dense is None or not pruned:
            continue
        key, match = min(pruned.items(),
                         key=lambda kv: (abs(kv[1]["clean"] - dense["clean"]), str(kv[0])))
        out.append({"env_id": env, "certified": {"variant": certified, **dense},
                    "pruned": {"variant": rival, "method": key[2], "scope": key[3],
                               "sparsity": key[4], **match}})
    return out


def _point_medians(table: list[dict], owed: dict[str, set[str]]) -> dict[tuple, dict]:
    """(task, variant, method, scope, sparsity) -> median clean return, CROWN TV, worst cheap
    attack and worst PA-AD return over its seeds (an owed attack counts as not run)."""
    per_seed: dict[tuple, dict[int, dict]] = {}
    for r in table:
        key = (r["env_id"], r["variant"], r["method"], r["scope"], r["target_sparsity"])
        point = per_seed.setdefault(key, {}).setdefault(r["seed"], {"paad": np.inf,
                                                                      "cheap": {}})
        if r["attack"] == "paad" and "paad" in owed.get(r["job_id"], ()):
            point["paad_owed"] = True  # an attempt or its retry is still to run
        elif r["attack"] == "none":
            point.update(clean=r["mean_return"], tv=r.get("crown_tv"))
        elif r["attack"] == "paad":
            point["paad"] = min(point["paad"], r["mean_return"])
        elif r["attack"] in CHEAP_ATTACKS:
            point["cheap"][r["attack"]] = r["mean_return"]
    out = {}
    for key, seeds in per_seed.items():
        done = [p for p in seeds.values() if "clean" in p]
        if not done or any(p["tv"] is None for p in done):
            continue
        paad = [np.inf if p.get("paad_owed") else p["paad"] for p in done]
        cheap = [min(p["cheap"].values()) if len(p["cheap"]) == len(CHEAP_ATTACKS) else None
                 for p in done]
        out[key] = {"seeds": len(done), "clean": float(np.median([p["clean"] for p in done])),
                    "crown_tv": float(np.median([p["tv"] for p in done])),
                    "worst_cheap": None if None in cheap else float(np.median(cheap)),
                    "worst_paad": None if np.isinf(paad).any() else float(np.median(paad))}
    return out


def load_certified(name_or_dir: str) -> dict:
    """``{"certified_sweet_spots", "certified_against_pruned"}`` of a sweep's records (a
    results folder, or a grid's shipped results; a grid judges a series only once every point
    it asks for is measured). A sweep whose points were fine-tuned with several fine-tuning
    seeds gets neither: ``pruningrl.experiments.replication`` judges it, by its certified
    score too."""
    records = RecordStore(results_dir(name_or_dir)).records()
    table = rows(records)
    if any(r["finetune_seed"] is not None for r in table):
        return {"certified_sweet_spots": [], "certified_against_pruned": []}
    grid = grid_of(name_or_dir)
    expected = expected_points(grid) if grid is not None else None
    owed = owed_attacks(grid, RecordStore(results_dir(name_or_dir))) if grid is not None else None
    return {"certified_sweet_spots": certified_sweet_spots(records, expected),
            "certified_against_pruned": certified_against_pruned(table, owed=owed)}


def format_certified(loaded: dict) -> list[str]:
    """One line per series (its certified verdict) and per task (the equal-clean comparison)."""
    lines = []
    for e in loaded["certified_sweet_spots"]:
        name = f"{e['env_id']} {e['variant']} {e['method']} ({e['scope']})"
        if e["verdict"] == "incomplete":
            lines.append(f"{name}: incomplete ({e['reason']})")
            continue
        rate = e["null_false_positive_rate"]
        lines.append(f"{name}: s* = {e['sweet_spot']:g}, median gain {e['gain_median']:+.3f} "
                     f"(spread {e['gain_spread']:.3f}): {e['verdict']}"
                     + ("" if rate is None else f" (null false-positive rate {rate:.1%})"))
    for c in loaded["certified_against_pruned"]:
        dense, pruned = c["certified"], c["pruned"]
        lines.append(
            f"{c['env_id']}: {dense['variant']} dense (clean {dense['clean']:,.0f}, CROWN TV "
            f"{dense['crown_tv']:.3f}, cheap {_or_dash(dense['worst_cheap'])}, PA-AD "
            f"{_or_dash(dense['worst_paad'])}) against "
            f"{pruned['variant']} {pruned['method']} ({pruned['scope']}) at "
            f"{pruned['sparsity']:g} (clean {pruned['clean']:,.0f}, CROWN TV "
            f"{pruned['crown_tv']:.3f}, cheap {_or_dash(pruned['worst_cheap'])}, PA-AD "
            f"{_or_dash(pruned['worst_paad'])})")
    return lines


def _or_dash(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"
