"""A sweep's records as a table, and the sweet spots they show.

Definitions, for one base agent (task, variant, seed) and one pruning method and scope; returns
are means over the evaluation episodes:

* R_rand: the uniformly random policy's return on the task (the ``random_policy`` job);
  R_0: the clean return of the sparsity-0 control (the dense agent, fine-tuned the same way).
* normalized return n(R) = (R - R_rand) / (R_0 - R_rand): 1 is the dense control, 0 random.
* clean score c(s) = n(R_clean(s)); attacked score a(s) = min over the score's attacks of
  n(R_attack(s)). The score's attacks are every attack of the grid except "none", and, on
  continuous-action tasks, except the learned policy adversaries (optimal, PA-AD), which run at
  a few points only and are reported beside the score.
* score(s) = (c(s) + a(s)) / 2.
* sweet spot s* = the sparsity with the highest median-over-seeds score; its gain is
  g = score(s*) - score(0) per seed, and its seed spread is max g - min g. The verdict is
  "candidate" when s* > 0, the gain is positive for every seed (its whole seed range lies
  above zero) and the median gain exceeds the seed spread; else "none here". (A median gain
  smaller than the spread is one the seeds cannot tell from the seed-to-seed variation.)
  s* is chosen on the scores that judge it, so the verdict is a candidate, not a confirmed
  sweet spot: only a held-out replication (``pruningrl.experiments.replication``) confirms one.
  A series measured on one seed (a pilot) has no spread, so it gets s* and its gain but no
  verdict: "one seed". A series whose attacked returns all normalize below 0.05 is
  "uninformative": its attacks hold every point at about the random policy's return, so the
  score is the clean return's alone and says nothing about robustness at that radius.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from pruningrl.experiments.grid import Grid, load_grid, shipped_grids
from pruningrl.experiments.jobs import POLICY_ADVERSARIES, expand
from pruningrl.experiments.store import RecordStore
from pruningrl.experiments.sweep import owed_attacks

SHIPPED_RESULTS = Path(__file__).resolve().parent.parent / "results" / "sweeps"
#: the attacks that need no training: random noise, the critic-gradient attack and MAD
CHEAP_ATTACKS = ("random", "critic", "mad")


def results_dir(name_or_dir: str) -> Path:
    """The folder of a sweep: a folder path, a shipped grid's shipped results, or runs/sweeps."""
    candidate = Path(name_or_dir)
    if candidate.is_dir():
        return candidate
    name = candidate.stem if candidate.suffix == ".toml" else name_or_dir
    for folder in (SHIPPED_RESULTS / name, Path("runs") / "sweeps" / name):
        if (folder / "records").is_dir():
            return folder
    raise ValueError(f"no sweep results for {name_or_dir!r}: not a folder, and neither "
                     f"{SHIPPED_RESULTS / name} nor runs/sweeps/{name} holds records")


def rows(records: list[dict]) -> list[dict]:
    """One row per (done prune job, attack), sorted by task, variant, method, sparsity, seed."""
    out = []
    for record in records:
        config = record["config"]
        if record["status"] != "done" or config["kind"] != "prune":
            continue
        result = record["result"]
        for label, entry in result["attacks"].items():
            name = label.split(":")[0]
            attacker = entry.get("attacker") or {}
            out.append({
                "job_id": record["id"], "env_id": config["env_id"],
                "variant": config["variant"], "seed": config["seed"],
                "method": config["method"], "scope": config["scope"],
                "target_sparsity": config["target_sparsity"], "sparsity": result["sparsity"],
                "layer_sparsity": result["layer_sparsity"],
                "finetune_steps": config["finetune_steps"],
                "finetune_lr": config.get("finetune_lr"),
                "finetune_sa_ramp": config.get("finetune_sa_ramp"),
                "finetune_seed": config.get("finetune_seed"), "attack": name,
                "attack_label": label, "attack_budget": attacker.get("budget"),
                "eps": None if name == "none" else config["eps"], "norm": config["norm"],
                "mean_return": float(np.mean(entry["returns"])),
                "std_return": float(np.std(entry["returns"])),
                "episodes": len(entry["returns"]),
                "certified_tv": result["certified_tv"], "certified_eps": config["eps"],
                "certified_radius": result["certified_radius"], "local_tv": result["local_tv"],
                "lipschitz": result["lipschitz"], "constant_policy": result["constant_policy"],
                "discrete": result["discrete"],
                "base_clean_return": (float(np.mean(result["base_clean"]["returns"]))
                                      if "base_clean" in result and name == "none" else None),
                **crown_columns(result.get("crown")),
                "code_version": _code_version(record, label),
            })
    out.sort(key=lambda r: (r["env_id"], r["variant"], r["method"], r["scope"] or "",
                            r["target_sparsity"], r["seed"], r["attack_label"]))
    return out


#: the columns a row takes from a record's certificate unit (None before it ran)
CROWN_COLUMNS = ("crown_tv", "crown_certified_fraction", "crown_action_deviation",
                 "crown_certified_action_fraction", "crown_radius_median", "crown_radius_q25",
                 "crown_radius_q75", "log_std_mean", "certified_return",
                 "certified_return_fully")


def crown_columns(crown: dict | None) -> dict:
    """A row's CROWN certificates at the job's eps: mean TV, fraction at TV <= 1/2, the
    deterministic policy's certificate, the per-state radius quartiles, the mean log-std, and
    (categorical) the mean certified return and the share of fully certified episodes."""
    if not crown:
        return dict.fromkeys(CROWN_COLUMNS)
    radius = crown["radius_tv"]
    log_std = crown.get("log_std")
    bound = crown.get("certified_return") or {}
    return {"crown_tv": crown["tv_mean"], "crown_certified_fraction": crown["certified_fraction"],
            "crown_action_deviation": crown.get("action_deviation"),
            "crown_certified_action_fraction": crown.get("certified_action_fraction"),
            "crown_radius_median": radius["median"], "crown_radius_q25": radius["q25"],
            "crown_radius_q75": radius["q75"],
            "log_std_mean": float(np.mean(log_std)) if log_std else None,
            "certified_return": bound.get("mean_certified"),
            "certified_return_fully": bound.get("fully_certified")}


def _code_version(record: dict, label: str) -> str | None:
    """The code version of the run that measured ``label`` (the latest run that ran it)."""
    for run in reversed(record.get("provenance", [])):
        if label in run.get("units", [label]):
            return run.get("code_version")
    return None


def random_returns(records: list[dict]) -> dict[tuple[str, int], float]:
    """R_rand per (task, episodes), from the random-policy jobs."""
    out = {}
    for record in records:
        config = record["config"]
        if record["status"] == "done" and config["kind"] == "random_policy":
            returns = record["result"]["attacks"]["none"]["returns"]
            out[(config["env_id"], config["episodes"])] = float(np.mean(returns))
    return out


def score_attacks(series_rows: list[dict]) -> list[str]:
    """The attacks inside the score for a series: present at every point, per the definition."""
    points = defaultdict(set)
    for r in series_rows:
        points[(r["target_sparsity"], r["seed"])].add(r["attack"])
    common = set.intersection(*points.values()) if points else set()
    discrete = all(r["discrete"] for r in series_rows)
    return sorted(a for a in common if a != "none" and (discrete or a not in POLICY_ADVERSARIES))


def series_key(config: dict) -> tuple:
    """The series a pruned point belongs to: task, variant, method, scope, budget, eps, norm,
    episodes, fine-tuning learning rate and SA-PPO schedule share (None: the agent's own); a
    row or a job config."""
    return (config["env_id"], config["variant"], config["method"], config["scope"],
            config["finetune_steps"], config.get("certified_eps", config.get("eps")),
            config["norm"], config["episodes"], config.get("finetune_lr"),
            config.get("finetune_sa_ramp"))


def expected_points(grid: Grid) -> dict[tuple, set[tuple[float, int]]]:
    """The (sparsity, seed) points each series of ``grid`` is to measure, sparsity 0 included."""
    out: dict[tuple, set[tuple[float, int]]] = defaultdict(set)
    for job in expand(grid):
        config = job.settings
        if config["kind"] == "prune" and config["method"] != "dense":
            out[series_key(config)].update({(config["target_sparsity"], config["seed"]),
                                            (0.0, config["seed"])})
    return dict(out)


def sweet_spots(records: list[dict], expected: dict[tuple, set] | None = None,
                attacks: tuple[str, ...] | None = None,
                owed: dict[str, set[str]] | None = None) -> list[dict]:
    """One entry per (task, variant, method, scope, fine-tuning budget, eps): the sweet spot.

    With ``expected`` (``expected_points`` of the grid) a series is complete only when every
    point its grid asks for is measured; without it, only the points its records hold count.
    With ``attacks`` the score takes only those of the score's attacks (for example the cheap
    ones, on a categorical series whose learned adversaries ran everywhere too). With
    ``owed`` (``sweep.owed_attacks`` of the grid) an attack that some point still owes, a
    retry of a weak learned attempt for example, stays out of the score until it has run.
    """
    r_rand = random_returns(records)
    out = []
    for _, entry, members in pruned_series(rows(records), expected):
        if "verdict" not in entry:
            entry.update(_sweet_spot(members, r_rand.get((entry["env_id"], entry["episodes"])),
                                     attacks, owed or {}))
        out.append(entry)
    return out


def pruned_series(table: list[dict], expected: dict[tuple, set] | None = None
                  ) -> list[tuple[tuple, dict, list[dict]]]:
    """Each pruned series of the rows: its ``series_key``, its entry (what names it, and
    ``verdict="incomplete"`` with the reason while ``expected`` points are missing) and its
    members, the rows of its pruned points and of its seeds' dense controls."""
    controls = [r for r in table if r["method"] == "dense"]
    series: dict[tuple, list[dict]] = defaultdict(list)
    for r in table:
        if r["method"] != "dense":
            series[series_key(r)].append(r)
    out = []
    for key, members in sorted(series.items(), key=lambda kv: str(kv[0])):
        env, variant, method, scope, steps, eps, norm, episodes, lr, ramp = key
        seeds = {r["seed"] for r in members}  # another series' seeds share its controls
        dense = [r for r in controls if (r["env_id"], r["variant"], r["finetune_steps"],
                                         r["certified_eps"], r["norm"], r["episodes"],
                                         r["finetune_lr"], r.get("finetune_sa_ramp"))
                 == (env, variant, steps, eps, norm, episodes, lr, ramp) and r["seed"] in seeds]
        entry = {"env_id": env, "variant": variant, "method": method, "scope": scope,
                 "finetune_steps": steps, "finetune_lr": lr, "eps": eps, "episodes": episodes,
                 **({} if ramp is None else {"finetune_sa_ramp": ramp})}
        measured = {(r["target_sparsity"], r["seed"]) for r in members + dense
                    if r["attack"] == "none"}
        wanted = (expected or {}).get(key, set())
        if wanted - measured:
            entry.update(verdict="incomplete", reason=f"{len(wanted - measured)} of "
                         f"{len(wanted)} points not measured yet")
        out.append((key, entry, members + dense))
    return out


#: a series whose every normalized attacked return lies below this is not judged: the attack
#: holds every point at about the random policy's return, so the score measures clean return
#: alone and the radius is too large for the question (verdict "uninformative").
UNINFORMATIVE_ATTACKED = 0.05


def _sweet_spot(members: list[dict], random_return: float | None,
                only: tuple[str, ...] | None = None,
                owed: dict[str, set[str]] | None = None) -> dict:
    if random_return is None:
        return {"verdict": "incomplete", "reason": "no random-policy return for this task"}
    still_owed = set().union(*((owed or {}).get(r["job_id"], set()) for r in members))
    attacks = [a for a in score_attacks(members)
               if (only is None or a in only) and a not in still_owed]
    if not attacks:
        return {"verdict": "incomplete", "reason": "no attack measured at every point"}
    clean = {(r["target_sparsity"], r["seed"]): r["mean_return"] for r in members
             if r["attack"] == "none"}
    worst: dict[tuple, float] = {}
    for r in members:
        if r["attack"] in attacks:
            point = (r["target_sparsity"], r["seed"])
            worst[point] = min(worst.get(point, np.inf), r["mean_return"])
    seeds = sorted({seed for _, seed in clean})
    if any((0.0, seed) not in clean for seed in seeds):
        return {"verdict": "incomplete", "reason": "the sparsity-0 control is missing"}
    if any(clean[(0.0, seed)] <= random_return for seed in seeds):
        return {"verdict": "incomplete",
                "reason": "a dense control is no better than the random policy"}
    sparsities = sorted({s for s, _ in clean})
    missing = [(s, seed) for s in sparsities for seed in seeds if (s, seed) not in worst]
    if missing:  # a series still being measured: no verdict from part of it
        return {"verdict": "incomplete", "reason": f"{len(missing)} of "
                f"{len(sparsities) * len(seeds)} points not measured yet"}
    score, clean_n, attacked_n = {}, {}, {}
    for seed in seeds:
        r0 = clean[(0.0, seed)]
        for s in sparsities:
            c = normalized(clean[(s, seed)], r0, random_return)
            a = normalized(worst[(s, seed)], r0, random_return)
            clean_n[(s, seed)], attacked_n[(s, seed)] = c, a
            score[(s, seed)] = (c + a) / 2
    medians, best, gains, spread, verdict = _judge(score, sparsities, seeds)
    if all(a < UNINFORMATIVE_ATTACKED for a in attacked_n.values()):
        verdict = "uninformative"
    radius = {s: _median_of(members, s, "certified_radius") for s in sparsities}
    return {
        "verdict": verdict, "sweet_spot": best, "seeds": seeds, "score_attacks": attacks,
        "random_return": random_return,
        "gain_median": float(np.median(gains)), "gain_min": min(gains), "gain_max": max(gains),
        "gain_spread": spread,
        "sparsities": sparsities,
        "median_score": [medians[s] for s in sparsities],
        "median_clean": [float(np.median([clean_n[(s, x)] for x in seeds])) for s in sparsities],
        "median_attacked": [float(np.median([attacked_n[(s, x)] for x in seeds]))
                            for s in sparsities],
        "median_certified_radius": [radius[s] for s in sparsities],
        "median_local_tv": [_median_of(members, s, "local_tv") for s in sparsities],
        **{f"median_{name}": [_median_of(members, s, name) for s in sparsities]
           for name in ("crown_tv", "crown_action_deviation", "crown_radius_median",
                        "log_std_mean")},
        "per_seed": {name: [[values[(s, seed)] for s in sparsities] for seed in seeds]
                     for name, values in (("clean", clean_n), ("attacked", attacked_n),
                                          ("score", score))},
    }


def _judge(score: dict[tuple, float], sparsities: list[float], seeds: list[int]):
    """Median scores, s*, per-seed gains, their spread and the verdict (module docstring)."""
    medians = {s: float(np.median([score[(s, seed)] for seed in seeds])) for s in sparsities}
    best = max(sparsities, key=lambda s: (medians[s], -s))
    gains = [score[(best, seed)] - score[(0.0, seed)] for seed in seeds]
    spread = max(gains) - min(gains)
    return medians, best, gains, spread, rule_verdict(best, gains)


def normalized(value: float, dense: float, random_return: float) -> float:
    """n(R) = (R - R_rand) / (R_0 - R_rand): 1 is the dense control's return, 0 random's."""
    return (value - random_return) / (dense - random_return)


def rule_verdict(best: float, gains: list[float]) -> str:
    """The sweet-spot rule at a chosen sparsity ``best`` with per-seed gains over the control:
    "candidate" when best > 0, min gain > 0 and median gain > max gain - min gain, else
    "none here" ("one seed" with fewer than two gains)."""
    if len(gains) < 2:
        return "one seed"
    spread = max(gains) - min(gains)
    return ("candidate" if best > 0 and min(gains) > 0 and np.median(gains) > spread
            else "none here")


def best_gain(entry: dict, seed: int = 0) -> tuple[float, float]:
    """One seed's own best sparsity s_b = argmax_s score(s) in a judged series (ties to the
    lower sparsity) and its gain over that seed's dense control, score(s_b) - score(0)."""
    scores = entry["per_seed"]["score"][entry["seeds"].index(seed)]
    best = max(range(len(scores)), key=lambda k: (scores[k], -entry["sparsities"][k]))
    return entry["sparsities"][best], scores[best] - scores[0]


def better_scope(entries: list[dict], env: str, method: str, variant: str = "ppo",
                 seed: int = 0) -> str:
    """The pruning scope ("global" or "layer") whose best sparsity gains more score over the
    dense control on one seed: how a task measured on that seed's pilot chooses its scope."""
    judged = {e["scope"]: e for e in entries
              if (e["env_id"], e["variant"], e["method"]) == (env, variant, method)
              and e["verdict"] != "incomplete" and seed in e.get("seeds", [])}
    if set(judged) != {"global", "layer"}:
        raise ValueError(f"{env} {variant} {method}: both scopes must be judged on seed {seed} "
                         f"first (judged: {sorted(judged) or 'none'})")
    return max(("global", "layer"), key=lambda scope: best_gain(judged[scope], seed)[1])


def rejudge(table: list[dict], entry: dict, extra: list[str]) -> dict:
    """A series re-judged with stronger attacks, on the points where they ran.

    ``table`` is the records' ``rows``; ``entry`` a judged series of ``sweet_spots``; ``extra``
    names attacks that ran at some of its points only (robust Sarsa, the learned adversaries; of
    each, its strongest attempt).
    The points are the sparsities where every seed has every extra attack, sparsity 0 among
    them; there a(s) becomes the worst of the entry's score attacks and ``extra``, and s*, the
    gains and the verdict follow the same rule as ``sweet_spots``, over those points only.
    """
    key = (entry["env_id"], entry["variant"], entry["finetune_steps"], entry["eps"],
           entry["episodes"], entry["finetune_lr"], entry.get("finetune_sa_ramp"))
    members = [r for r in table
               if (r["env_id"], r["variant"], r["finetune_steps"], r["certified_eps"],
                   r["episodes"], r["finetune_lr"], r.get("finetune_sa_ramp")) == key
               and (r["method"] == "dense" or (r["method"], r["scope"])
                    == (entry["method"], entry["scope"]))]
    seeds = entry["seeds"]
    present = defaultdict(set)
    for r in members:
        present[(r["target_sparsity"], r["seed"])].add(r["attack"])
    points = sorted(s for s in entry["sparsities"]
                    if all(set(extra) <= present[(s, seed)] for seed in seeds))
    if 0.0 not in points:
        return {"verdict": "incomplete", "points": points, "reason":
                f"{', '.join(extra)} not measured at the dense control of every seed"}
    attacks = set(entry["score_attacks"]) | set(extra)
    r_rand = entry["random_return"]
    clean = {(r["target_sparsity"], r["seed"]): r["mean_return"] for r in members
             if r["attack"] == "none"}
    worst: dict[tuple, tuple[float, str]] = {}
    for r in members:
        point = (r["target_sparsity"], r["seed"])
        if r["attack"] in attacks and point[0] in points:
            worst[point] = min(worst.get(point, (np.inf, "")), (r["mean_return"], r["attack"]))
    score, attacked = {}, {}
    for (s, seed), (value, _) in worst.items():
        scale = clean[(0.0, seed)] - r_rand
        attacked[(s, seed)] = (value - r_rand) / scale
        score[(s, seed)] = ((clean[(s, seed)] - r_rand) / scale + attacked[(s, seed)]) / 2
    medians, best, gains, spread, verdict = _judge(score, points, seeds)
    return {"verdict": verdict, "points": points, "sweet_spot": best, "attacks": sorted(attacks),
            "gain_median": float(np.median(gains)), "gain_min": min(gains),
            "gain_max": max(gains), "gain_spread": spread,
            "median_score": [medians[s] for s in points],
            "median_attacked": [float(np.median([attacked[(s, x)] for x in seeds]))
                                for s in points],
            "worst_attack": {f"{s:g}/{seed}": worst[(s, seed)][1] for s in points
                             for seed in seeds}}


STRONGER = (("rs",), POLICY_ADVERSARIES)  # robust Sarsa; the learned policy adversaries


def stronger_attacks(table: list[dict], entries: list[dict]) -> list[dict]:
    """Each judged series ``rejudge``d with each group of ``STRONGER`` attacks that ran at its
    dense controls (robust Sarsa inside the score's attack set, the learned adversaries beside
    it), and with both groups together where both ran. ``table``: the records' ``rows``."""
    present = defaultdict(set)
    for r in table:
        present[(r["env_id"], r["variant"], r["finetune_steps"], r["certified_eps"])].add(
            r["attack"])
    out = []
    for entry in entries:
        if entry["verdict"] == "incomplete":
            continue
        ran = present[(entry["env_id"], entry["variant"], entry["finetune_steps"], entry["eps"])]
        groups = [[a for a in group if a in ran and a not in entry["score_attacks"]]
                  for group in STRONGER]
        groups = [g for g in groups if g]
        if len(groups) == 2:
            groups.append(groups[0] + groups[1])
        for extra in groups:
            judged = rejudge(table, entry, extra)
            if judged["verdict"] != "incomplete" and len(judged["points"]) > 1:
                out.append({**{k: entry[k] for k in ("env_id", "variant", "method", "scope",
                                                     "finetune_steps", "finetune_lr", "eps",
                                                     "verdict", "sweet_spot")},
                            "extra": extra, "rejudged": judged})
    return out


def learned_attacks(table: list[dict],
                    random: dict[tuple[str, int], float] | None = None) -> list[dict]:
    """The learned policy adversaries (optimal attack, PA-AD) at each point where they ran.

    One entry per (run, adversary), a run being a point and, in a sweep that fine-tunes each
    point more than once, its fine-tuning seed (its job's id is kept, for
    ``sweep.owed_attacks``): the strongest attempt (the lowest return), every
    attempt's label and return (the grid's ``[attempts]``, and the sweep's retry of a weak
    attempt with a new seed and twice the budget), ordered by attacker seed, their spread
    (highest minus lowest return), the run's clean return, and R_rand, the random policy's
    return on the task (``random_returns``: keyed by task and episodes; None when not given).
    """
    clean = {_point(r): r["mean_return"] for r in table if r["attack"] == "none"}
    attempts: dict[tuple, list[dict]] = defaultdict(list)
    for r in table:
        if r["attack"] in POLICY_ADVERSARIES:
            attempts[(*_point(r), r["attack"])].append(r)
    out = []
    for key, tried in sorted(attempts.items(), key=lambda kv: str(kv[0])):
        tried.sort(key=lambda r: _attempt_seed(r["attack_label"]))  # labels sort by budget
        best = min(tried, key=lambda r: r["mean_return"])
        out.append({**{k: best[k] for k in ("env_id", "variant", "method", "scope",
                                            "target_sparsity", "seed", "finetune_steps",
                                            "finetune_lr", "attack", "eps")},
                    "finetune_seed": best.get("finetune_seed"), "job_id": best.get("job_id"),
                    "mean_return": best["mean_return"], "label": best["attack_label"],
                    "clean_return": clean.get(key[:-1]),
                    "random_return": (random or {}).get((best["env_id"], best["episodes"])),
                    "attempts": {r["attack_label"]: r["mean_return"] for r in tried},
                    "spread": max(r["mean_return"] for r in tried) - best["mean_return"]})
    return out


def attack_reliability(learned: list[dict]) -> dict[str, dict]:
    """Per learned adversary, how often it fails (``learned_attacks`` entries in, one summary
    per attack out). An attempt *fails* when it is weak (``sweep.is_weak``: it took less than a
    tenth of the clean return, or raised it). Reported: the points, the share of points whose
    first attempt failed and whose strongest attempt still failed, the median number of
    attempts, and the median spread of the attempts' returns on the normalized scale of the
    sweet-spot definition: (R_high - R_low) / (R_clean - R_rand), the share of what the victim
    holds above a random policy (over points with two attempts or more, a known R_rand and
    R_clean > R_rand; on a task whose returns are negative, a share of the clean return itself
    would mean nothing).

    A point where every attempt is weak may hold a robust victim rather than a weak attack, so
    the attempts are also judged where the victim is breakable: ``attempt_failed`` is the
    share of single attempts that failed, over the points where one attempt of the same attack
    succeeded (``breakable_points`` of them; None when there are none)."""
    from pruningrl.experiments.sweep import is_weak

    out = {}
    for name in sorted({e["attack"] for e in learned}):
        entries = [e for e in learned if e["attack"] == name and e["clean_return"] is not None]
        first = [next(iter(e["attempts"].values())) for e in entries]
        spreads = [e["spread"] / (e["clean_return"] - e["random_return"]) for e in entries
                   if len(e["attempts"]) > 1 and e.get("random_return") is not None
                   and e["clean_return"] > e["random_return"]]
        breakable = [e for e in entries if not is_weak(e["clean_return"], e["mean_return"])]
        attempts = [is_weak(e["clean_return"], r) for e in breakable
                    for r in e["attempts"].values()]
        out[name] = {
            "points": len(entries),
            "first_attempt_failed": float(np.mean([is_weak(e["clean_return"], r)
                                                   for e, r in zip(entries, first, strict=True)])),
            "strongest_attempt_failed": float(np.mean([is_weak(e["clean_return"],
                                                               e["mean_return"])
                                                       for e in entries])),
            "median_attempts": float(np.median([len(e["attempts"]) for e in entries])),
            "median_spread": float(np.median(spreads)) if spreads else None,
            "breakable_points": len(breakable),
            "attempt_failed": float(np.mean(attempts)) if attempts else None,
        }
    return out


def _attempt_seed(label: str) -> int:
    """The attacker seed in an attack label (``paad:n=1000000:s=1`` -> 1; none given -> 0)."""
    _, found, seed = label.partition(":s=")
    return int(seed.split(":")[0]) if found else 0


def _point(r: dict) -> tuple:
    """A run's key: its point, and its fine-tuning seed where the sweep sets one."""
    return (r["env_id"], r["variant"], r["method"], r["scope"], r["target_sparsity"], r["seed"],
            r["finetune_steps"], r["certified_eps"], r["finetune_lr"], r.get("finetune_seed"))


def _median_of(members: list[dict], sparsity: float, field: str) -> float | None:
    values = [r[field] for r in members if r["target_sparsity"] == sparsity
              and r["attack"] == "none" and r[field] is not None]
    return float(np.median(values)) if values else None


def compute_spent(records: list[dict]) -> dict[str, float]:
    """Core-seconds the done records cost, per phase: ``finetune``, ``train`` (pruning during
    training), ``certify``, ``evaluate:ATTACK`` (the untouched base agent's return included)
    and ``attacker:ATTACK`` (training a learned attacker); summed over every run of a job."""
    spent: dict[str, float] = defaultdict(float)
    for record in records:
        if record["status"] != "done":
            continue
        for phase, seconds in record["phases"].items():
            kind, _, label = phase.partition(":")
            if kind == "base":
                kind = "evaluate"
            key = f"{kind}:{label.split(':')[0]}" if kind in ("evaluate", "attacker") else kind
            spent[key] += seconds
    return dict(sorted(spent.items()))


def cost_per_point(records: list[dict]) -> dict[str, dict[str, float]]:
    """Core-minutes per point, per phase kind: pruning and fine-tuning (per budget), ``train``
    (pruning during training), ``certify`` and each attack (its attacker's training, retries
    included, plus its evaluation; ``none`` includes the base agent's clean evaluation); the
    median over the points that ran it, their count and the total in core-hours."""
    per_point: dict[str, list[float]] = defaultdict(list)
    for record in records:
        if record["status"] != "done":
            continue
        spent: dict[str, float] = defaultdict(float)
        for phase, seconds in record["phases"].items():
            kind, _, label = phase.partition(":")
            if kind in ("attacker", "evaluate", "base"):
                kind = label.split(":")[0]
            elif kind == "finetune":
                kind = f"finetune {record['config']['finetune_steps']:,d} steps"
            spent[kind] += seconds
        for name, seconds in spent.items():
            per_point[name].append(seconds / 60)
    return {name: {"points": len(v), "median_min": float(np.median(v)),
                   "total_h": float(np.sum(v)) / 60}
            for name, v in sorted(per_point.items(), key=lambda kv: _phase_order(kv[0]))}


def _phase_order(name: str) -> tuple[str, int]:
    """Phases by name, fine-tuning budgets by size."""
    kind, _, steps = name.partition(" ")
    return kind, int(steps.split(" ")[0].replace(",", "")) if steps else 0


def settled_series(grid: Grid, owed: dict[str, set[str]]) -> set[tuple]:
    """The series of ``grid`` whose every job is done and owes no attack, retries included
    (``owed``, from ``sweep.owed_attacks``). A series is (task, variant, method, scope); a task
    and variant's dense controls are the series (task, variant, "dense", None)."""
    series: dict[tuple, bool] = {}
    for job in expand(grid):
        c = job.settings
        key = (c["env_id"], c.get("variant"), c.get("method"), c.get("scope"))
        series[key] = series.get(key, True) and owed.get(job.id) == set()
    return {key for key, settled in series.items() if settled}


def mark_settled(learned: list[dict], settled: set[tuple] | None) -> list[dict]:
    """``learned_attacks`` entries, each with ``settled``: whether its series, and its task's
    dense controls, owe no attack (None when no grid says what a series owes). Pooling only
    settled runs keeps a count of failed attempts from favouring the series that finish first.
    """
    def is_settled(e: dict) -> bool | None:
        if settled is None:
            return None
        dense = (e["env_id"], e["variant"], "dense", None)
        return dense in settled and (e["env_id"], e["variant"], e["method"], e["scope"]) in settled

    return [{**e, "settled": is_settled(e)} for e in learned]


def load_results(name_or_dir: str) -> dict:
    """``{"rows", "sweet_spots", "stronger_attacks", "learned_attacks", "attack_reliability",
    "random_returns", "compute_s", "cost_per_point", "out"}`` (``learned_attacks`` entries
    marked by ``mark_settled``). A sweep whose points were
    fine-tuned with several fine-tuning seeds gets no sweet spots:
    ``pruningrl.experiments.replication`` judges it.

    Given a grid (a shipped grid's name or a TOML file), a series is judged only once every
    point the grid asks of it is measured; given a bare folder, on the points it holds.
    """
    folder = results_dir(name_or_dir)
    records = RecordStore(folder).records()
    table = rows(records)
    grid = grid_of(name_or_dir)
    expected = expected_points(grid) if grid is not None else None
    owed = owed_attacks(grid, RecordStore(folder)) if grid is not None else None
    settled = settled_series(grid, owed) if grid is not None else None
    replicated = any(r["finetune_seed"] is not None for r in table)
    # points fine-tuned several times are judged as a replication, not by the sweet-spot rule
    judged = [] if replicated else sweet_spots(records, expected, owed=owed)
    learned = mark_settled(learned_attacks(table, random_returns(records)), settled)
    return {"out": str(folder), "rows": table, "sweet_spots": judged,
            "learned_attacks": learned,
            "attack_reliability": attack_reliability(learned),
            "stronger_attacks": stronger_attacks(table, judged),
            "random_returns": {f"{env} ({n} episodes)": v
                               for (env, n), v in random_returns(records).items()},
            "compute_s": compute_spent(records), "cost_per_point": cost_per_point(records)}


def grid_of(name_or_dir: str) -> Grid | None:
    """The grid a results source names (a shipped grid's name or a TOML file), else None."""
    if name_or_dir.endswith(".toml") or name_or_dir in shipped_grids():
        return load_grid(name_or_dir)
    return None


def format_compute(spent: dict[str, float], per_point: dict | None = None) -> list[str]:
    """The compute a sweep's records cost, in core-hours per phase; with ``per_point``
    (``cost_per_point``), what one point costs in each."""
    total = sum(spent.values())
    lines = [f"compute spent: {total / 3600:.2f} core-hours", *(
        f"  {phase:22s} {seconds / 3600:8.2f}" for phase, seconds in spent.items())]
    if per_point:
        lines += ["cost of one point (median core-minutes; points; total core-hours):", *(
            f"  {name:22s} {c['median_min']:8.2f} {c['points']:6d} {c['total_h']:8.2f}"
            for name, c in per_point.items())]
    return lines


def format_rows(table: list[dict]) -> list[str]:
    """The human form: an aligned table, one line per (job, attack)."""
    head = (f"{'task':15s} {'variant':7s} {'seed':>4s} {'method':9s} {'scope':6s} "
            f"{'sparsity':>8s} {'attack':14s} {'return':>9s} {'std':>8s} {'cert TV':>8s} "
            f"{'radius':>8s} {'local TV':>8s} {'CROWN TV':>8s}")
    lines = [head, "-" * len(head)]
    for r in table:
        radius = "inf" if r["certified_radius"] is None else f"{r['certified_radius']:.4f}"
        crown = "-" if r.get("crown_tv") is None else f"{r['crown_tv']:.4f}"
        lines.append(
            f"{r['env_id']:15s} {r['variant']:7s} {r['seed']:>4d} {r['method']:9s} "
            f"{(r['scope'] or '-'):6s} {r['sparsity']:8.3f} {r['attack_label']:14s} "
            f"{r['mean_return']:9.1f} {r['std_return']:8.1f} {r['certified_tv']:8.4f} "
            f"{radius:>8s} {r['local_tv']:8.4f} {crown:>8s}")
    return lines


def format_stronger(entries: list[dict]) -> list[str]:
    """The verdicts re-judged with stronger attacks, on the points where those ran."""
    head = (f"{'task':15s} {'variant':7s} {'method':9s} {'scope':6s} {'with':13s} "
            f"{'points':15s} {'s*':>5s} {'gain median [min, max]':>26s} {'spread':>6s}  verdict")
    lines = [head, "-" * len(head)]
    for e in entries:
        j = e["rejudged"]
        gain = f"{j['gain_median']:+.3f} [{j['gain_min']:+.3f}, {j['gain_max']:+.3f}]"
        lines.append(f"{e['env_id']:15s} {e['variant']:7s} {e['method']:9s} "
                     f"{(e['scope'] or '-'):6s} {'+'.join(e['extra']):13s} "
                     f"{','.join(f'{s:g}' for s in j['points']):15s} {j['sweet_spot']:5.2f} "
                     f"{gain:>26s} {j['gain_spread']:6.3f}  {j['verdict']} "
                     f"(cheap attacks: {e['verdict']})")
    return lines


def format_sweet_spots(entries: list[dict]) -> list[str]:
    head = (f"{'task':15s} {'variant':7s} {'method':9s} {'scope':6s} {'s*':>5s} "
            f"{'gain median [min, max]':>26s} {'spread':>6s}  verdict")
    lines = [head, "-" * len(head)]
    for e in entries:
        if e["verdict"] == "incomplete":
            lines.append(f"{e['env_id']:15s} {e['variant']:7s} {e['method']:9s} "
                         f"{(e['scope'] or '-'):6s} {'-':>5s} {'-':>26s} {'-':>6s}  incomplete: "
                         f"{e['reason']}")
            continue
        gain = f"{e['gain_median']:+.3f} [{e['gain_min']:+.3f}, {e['gain_max']:+.3f}]"
        lines.append(f"{e['env_id']:15s} {e['variant']:7s} {e['method']:9s} "
                     f"{(e['scope'] or '-'):6s} {e['sweet_spot']:5.2f} {gain:>26s} "
                     f"{e['gain_spread']:6.3f}  "
                     f"{e['verdict']} (seeds {','.join(map(str, e['seeds']))}; "
                     f"attacks {', '.join(e['score_attacks'])})")
    return lines
