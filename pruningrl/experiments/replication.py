"""A held-out replication: does a candidate sweet spot hold on training seeds that chose nothing?

A replication grid (``pruningrl/grids/replication.toml``) fine-tunes every point, the dense
controls included, once per fine-tuning seed f, on training seeds k that the exploratory grid
never saw. For a candidate (task, variant, method, scope, sparsity s*) and an attack set:

* score(s, k, f) = (c + a) / 2, the sweet-spot definition's score, with the clean and attacked
  returns normalized by the random policy's return and the clean return of the dense control
  of the same k and f; the attacked return is the worst over the attack set (every attempt);
* the gain g(k, f) = score(s*, k, f) - score(0, k, f), and a seed's gain g(k) = mean over f;
* the estimate is the mean of g(k) over training seeds, with a 95% percentile bootstrap
  interval over training seeds (each resampled seed brings its fine-tuning runs);
* the candidate *replicates* when the interval lies above 0, and only a replicated candidate
  is a sweet spot; the rule of the definition (``results.rule_verdict`` on the g(k):
  "candidate" or "none here", what the exploratory rule would say of these seeds) is
  reported beside it;
* the fine-tuning share is the within-seed share of the gains' variance, from a one-way
  random-effects decomposition: s_w^2 = mean_k var_f g(k, f), s_b^2 = max(0, var_k g(k) -
  s_w^2 / n_f), share = s_w^2 / (s_w^2 + s_b^2).

Where every run of a candidate and of its dense controls carries CROWN's certificate, the
candidate is judged once more, by ``certified.certified_score``:
cs(s, k, f) = (n(R_clean(s, k, f)) + 1 - TV(s, k, f)) / 2, with TV the mean CROWN TV at the
grid's eps, and the same gains, interval and verdicts (``"score": "certified"``).

Robust training is compared with each pruned PPO candidate of its task on the held-out seeds
too (``robust_training``): per training seed, the raw clean and worst-attack returns averaged
over fine-tuning seeds; the difference of the two families' means over their own seeds, with a
95% percentile bootstrap interval that resamples each family's seeds on its own (the seeds
of the two are different agents, so nothing pairs them).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from functools import partial

import numpy as np

from pruningrl.experiments.certified import certified_score
from pruningrl.experiments.results import (
    CHEAP_ATTACKS,
    normalized,
    random_returns,
    results_dir,
    rows,
    rule_verdict,
)
from pruningrl.experiments.store import RecordStore

#: the attack sets a candidate is judged under: the cheap attacks, then with PA-AD
ATTACK_SETS = {"cheap": CHEAP_ATTACKS, "cheap+paad": (*CHEAP_ATTACKS, "paad")}
BOOTSTRAP = 10_000


def bootstrap_interval(values: list[float], resamples: int = BOOTSTRAP,
                       seed: int = 0) -> tuple[float, float]:
    """The 95% percentile bootstrap interval of the mean of ``values``."""
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), (resamples, len(data)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def finetune_share(gains: dict[int, list[float]]) -> float | None:
    """The within-seed (fine-tuning) share of the variance of g(k, f), or None if undefined."""
    runs = [v for v in gains.values() if len(v) > 1]
    if len(runs) < 2:
        return None
    within = float(np.mean([np.var(v, ddof=1) for v in runs]))
    per_seed = [float(np.mean(v)) for v in runs]
    between = max(0.0, float(np.var(per_seed, ddof=1)) - within / len(runs[0]))
    total = within + between
    return within / total if total > 0 else None


def _returns(table: list[dict]) -> dict[tuple, dict[str, float]]:
    """(task, variant, method, scope, sparsity, k, f) -> attack -> the worst mean return, and
    "crown_tv" -> the run's mean CROWN TV where it was certified."""
    out: dict[tuple, dict[str, float]] = defaultdict(dict)
    for r in table:
        key = (r["env_id"], r["variant"], r["method"], r["scope"], r["target_sparsity"],
               r["seed"], r["finetune_seed"])
        out[key][r["attack"]] = min(out[key].get(r["attack"], np.inf), r["mean_return"])
        if r["crown_tv"] is not None:
            out[key]["crown_tv"] = r["crown_tv"]
    return out


def _score(point: dict[str, float], control: dict[str, float], random_return: float,
           attacks: tuple[str, ...]) -> float | None:
    if "none" not in point or "none" not in control or any(a not in point for a in attacks):
        return None
    clean = normalized(point["none"], control["none"], random_return)
    attacked = normalized(min(point[a] for a in attacks), control["none"], random_return)
    return (clean + attacked) / 2


def _certified_score(point: dict[str, float], control: dict[str, float],
                     random_return: float) -> float | None:
    if "none" not in point or "none" not in control or "crown_tv" not in point:
        return None
    return certified_score(normalized(point["none"], control["none"], random_return),
                           point["crown_tv"])


def judge_candidate(returns: dict, random_return: float, candidate: tuple,
                    score: Callable[[dict, dict, float], float | None]) -> dict:
    """One candidate under one score (``score(point, control, random_return)``, None where a
    run lacks a measurement): per-run gains, the estimate and the verdicts."""
    env, variant, method, scope, target = candidate
    # every run of the candidate or of its dense controls: a run missing either is missing
    runs = {key[5:] for key in returns
            if key[:5] in (candidate, (env, variant, "dense", None, 0.0))}
    gains: dict[int, list[float]] = defaultdict(list)
    missing = 0
    for k, f in sorted(runs):
        control = returns.get((env, variant, "dense", None, 0.0, k, f), {})
        at_target = score(returns.get((*candidate, k, f), {}), control, random_return)
        zero = score(control, control, random_return)
        if at_target is None or zero is None:
            missing += 1
            continue
        gains[k].append(at_target - zero)
    out = {"env_id": env, "variant": variant, "method": method, "scope": scope,
           "sparsity": target, "runs": sum(map(len, gains.values())), "seeds": sorted(gains)}
    if missing or len(gains) < 2:
        return {**out, "verdict": "incomplete",
                "reason": f"{missing} runs lack a measurement" if missing else "under 2 seeds"}
    per_seed = [float(np.mean(gains[k])) for k in sorted(gains)]
    low, high = bootstrap_interval(per_seed)
    return {**out, "gain_per_seed": per_seed, "gain_runs": {str(k): gains[k] for k in gains},
            "gain_mean": float(np.mean(per_seed)), "interval": [low, high],
            "verdict": "replicated" if low > 0 else "not replicated",
            "rule_verdict": rule_verdict(target, per_seed),
            "finetune_share": finetune_share(gains)}


def replication(records: list[dict], owed: dict[str, set[str]] | None = None) -> list[dict]:
    """Every candidate of a replication sweep (each pruned series point), under each attack set
    its records measured at every run, and by the certified score where every run of the
    candidate and its dense controls was certified. With ``owed`` (``sweep.owed_attacks`` of
    the grid) an attack a run still owes, a retry of a weak learned attempt for example,
    counts as not measured at that run."""
    table = _replicated_rows(records, owed)
    returns = _returns(table)
    r_rand = random_returns(records)
    candidates = sorted({key[:5] for key in returns if key[2] != "dense"}, key=str)
    measured = {r["attack"] for r in table}
    out = []
    for candidate in candidates:
        episodes = next(r["episodes"] for r in table if r["env_id"] == candidate[0])
        random_return = r_rand.get((candidate[0], episodes))
        if random_return is None:
            out.append({"env_id": candidate[0], "verdict": "incomplete",
                        "reason": "no random-policy return for this task"})
            continue
        for name, attacks in ATTACK_SETS.items():
            if set(attacks) <= measured:
                out.append({"score": "attacked", "attack_set": name, "attacks": list(attacks),
                            **judge_candidate(returns, random_return, candidate,
                                              partial(_score, attacks=attacks))})
        if _all_certified(returns, candidate):
            out.append({"score": "certified", "attack_set": None,
                        **judge_candidate(returns, random_return, candidate, _certified_score)})
    return out


def _replicated_rows(records: list[dict], owed: dict[str, set[str]] | None) -> list[dict]:
    """The rows of runs fine-tuned with a fine-tuning seed, less the attacks their run owes."""
    return [r for r in rows(records) if r["finetune_seed"] is not None
            and r["attack"] not in (owed or {}).get(r["job_id"], set())]


def _all_certified(returns: dict, candidate: tuple) -> bool:
    env, variant = candidate[:2]
    runs = [measured for key, measured in returns.items()
            if key[:5] in (candidate, (env, variant, "dense", None, 0.0))]
    return bool(runs) and all("crown_tv" in measured for measured in runs)


def _seed_means(returns: dict, point: tuple, attacks: tuple[str, ...]) -> dict[str, list]:
    """Per training seed, the mean over fine-tuning seeds of the clean and the worst-attack
    return at ``point`` (task, variant, method, scope, sparsity); runs missing one are left out."""
    runs: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for key, measured in returns.items():
        if key[:5] == point and "none" in measured and all(a in measured for a in attacks):
            runs[key[5]].append((measured["none"], min(measured[a] for a in attacks)))
    seeds = sorted(runs)
    return {"seeds": seeds,
            "clean": [float(np.mean([c for c, _ in runs[k]])) for k in seeds],
            "attacked": [float(np.mean([a for _, a in runs[k]])) for k in seeds]}


def difference_interval(first: list[float], second: list[float], resamples: int = BOOTSTRAP,
                        seed: int = 0) -> tuple[float, float]:
    """The 95% percentile bootstrap interval of mean(first) - mean(second), each resampled on
    its own."""
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    rng = np.random.default_rng(seed)
    diffs = (a[rng.integers(0, len(a), (resamples, len(a)))].mean(axis=1)
             - b[rng.integers(0, len(b), (resamples, len(b)))].mean(axis=1))
    low, high = np.percentile(diffs, [2.5, 97.5])
    return float(low), float(high)


def robust_training(records: list[dict], robust_variant: str = "sappo",
                    owed: dict[str, set[str]] | None = None) -> list[dict]:
    """The robustly trained dense control against each pruned PPO candidate of its task, under
    each attack set measured at every run of both: the mean clean and worst-attack returns of
    each, and the robust agents' lead (robust minus pruned) with its bootstrap interval.
    ``verdict`` reads the attacked lead: "robust training ahead" when its interval lies above
    0, "pruning ahead" when below, else "no difference resolved"."""
    table = _replicated_rows(records, owed)
    returns = _returns(table)
    measured = {r["attack"] for r in table}
    out = []
    candidates = sorted({key[:5] for key in returns if key[1] == "ppo" and key[2] != "dense"},
                        key=str)
    for candidate in candidates:
        robust_point = (candidate[0], robust_variant, "dense", None, 0.0)
        for name, attacks in ATTACK_SETS.items():
            if not set(attacks) <= measured:
                continue
            pruned, robust = (_seed_means(returns, p, attacks) for p in (candidate, robust_point))
            if len(pruned["seeds"]) < 2 or len(robust["seeds"]) < 2:
                continue
            lead = {key: float(np.mean(robust[key]) - np.mean(pruned[key]))
                    for key in ("clean", "attacked")}
            interval = {key: difference_interval(robust[key], pruned[key])
                        for key in ("clean", "attacked")}
            low, high = interval["attacked"]
            out.append({"env_id": candidate[0], "method": candidate[2], "scope": candidate[3],
                        "sparsity": candidate[4], "robust_variant": robust_variant,
                        "attack_set": name, "pruned": pruned, "robust": robust, "lead": lead,
                        "interval": interval,
                        "verdict": ("robust training ahead" if low > 0 else
                                    "pruning ahead" if high < 0 else "no difference resolved")})
    return out


def format_robust_training(entries: list[dict]) -> list[str]:
    """One line per comparison: each family's mean returns and the robust agents' lead."""
    lines = []
    for e in entries:
        low, high = e["interval"]["attacked"]
        lines.append(
            f"{e['env_id']} {e['robust_variant']} dense vs ppo {e['method']} ({e['scope']}) "
            f"{e['sparsity']:g} [{e['attack_set']}]: attacked "
            f"{np.mean(e['robust']['attacked']):.1f} vs {np.mean(e['pruned']['attacked']):.1f}, "
            f"lead {e['lead']['attacked']:+.1f} [{low:+.1f}, {high:+.1f}]; clean lead "
            f"{e['lead']['clean']:+.1f}: {e['verdict']}")
    return lines


def load_replication(name_or_dir: str) -> list[dict]:
    """``replication`` of a sweep's records (a results folder, or a grid's shipped results)."""
    return replication(RecordStore(results_dir(name_or_dir)).records())


def format_replication(entries: list[dict]) -> list[str]:
    """One line per candidate and attack set: the mean gain, its interval and the verdicts."""
    lines = []
    for e in entries:
        name = (f"{e['env_id']} {e.get('variant', '')} {e.get('method', '')} "
                f"({e.get('scope')}) {e.get('sparsity', '')} "
                f"[{e.get('attack_set') or e.get('score', '')}]")
        if e["verdict"] == "incomplete":
            lines.append(f"{name}: incomplete ({e['reason']})")
            continue
        share = e["finetune_share"]
        lines.append(f"{name}: gain {e['gain_mean']:+.3f}, 95% interval "
                     f"[{e['interval'][0]:+.3f}, {e['interval'][1]:+.3f}] over "
                     f"{len(e['seeds'])} seeds: {e['verdict']} (rule: {e['rule_verdict']}; "
                     f"fine-tuning share {'n/a' if share is None else f'{share:.0%}'})")
    return lines
