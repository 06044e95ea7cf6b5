"""Record training pilots: each checkpoint's recipe, evaluation, certificates and curve.

    .venv/bin/python scripts/record_pilots.py --out pruningrl/results/training/NAME.json \\
        --what "what the pilots ask" [--episodes 50] [--states 1000] [--eps EPS] \\
        CHECKPOINT [CHECKPOINT ...]

Per checkpoint: the training command, code version, steps, wall time and samples/s from its
metadata; the evaluation (deterministic actions, episode seeds 0, 1, ...); the final log-std;
the CROWN certificates at the task's eps (or ``--eps``) on ``--states`` visited states (the
sweep's certificate unit, ``pruningrl.experiments.jobs.crown_certificates``; for discrete
actions also the certified return of the evaluated episodes, and the mean probability of the
most likely action on the same states); and the training curve (mean return of the episodes
finished in every 10th iteration, stochastic actions). An existing file keeps its runs and
gains the new ones (a checkpoint recorded before is measured again and replaced), so pilots
can be recorded as they finish. The file carries the project's provenance record.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import pruningrl  # noqa: E402,F401  (first: the portable numeric mode)
from pruningrl.agent import load_agent  # noqa: E402
from pruningrl.envs import task_eps  # noqa: E402
from pruningrl.evaluation import evaluate  # noqa: E402
from pruningrl.experiments.jobs import crown_certificates  # noqa: E402
from pruningrl.reproducibility import provenance  # noqa: E402

CURVE_EVERY = 10


#: the certificate unit's numbers a pilot keeps (each where the policy kind has it)
CROWN_KEYS = ("eps", "states", "tv_mean", "certified_fraction", "action_deviation", "log_std",
              "certified_action_fraction")


def record(path: Path, episodes: int, states: int, eps: float | None = None) -> dict:
    """One pilot's entry, measured from its checkpoint, certified at ``eps`` (default: the
    task's eps from the literature)."""
    agent = load_agent(path)
    meta = agent.metadata
    eps = task_eps(agent.env_id) if eps is None else eps
    if eps is None:
        raise ValueError(f"{agent.env_id} has no literature eps to certify at; give --eps")
    result = evaluate(agent, episodes=episodes, seed=0)
    crown = crown_certificates(agent, {"eps": eps, "norm": "inf", "local_states": states,
                                       "episodes": episodes})
    curve = meta.get("curve") or {}
    keep = slice(CURVE_EVERY - 1, None, CURVE_EVERY)
    entry = {
        "env_id": agent.env_id, "checkpoint": path.name, "command": meta.get("command"),
        "config": {k: meta["config"][k] for k in sorted(meta["config"]) if k.startswith("sa_")},
        "code_version": meta.get("code_version"), "steps": meta.get("steps"),
        "wall_time_s": meta.get("wall_time_s"), "samples_per_s": meta.get("samples_per_s"),
        "evaluation": {"episodes": episodes, "mean_return": result.mean_return,
                       "std_return": result.std_return, "seed": 0, "deterministic": True},
        "crown": {key: crown[key] for key in CROWN_KEYS if key in crown},
    }
    if "certified_return" in crown:  # discrete actions: the bound on the attacked return
        entry["certified_return"] = {key: crown["certified_return"][key] for key in
                                     ("mean_clean", "mean_certified", "fully_certified")}
        entry["mean_max_probability"] = mean_max_probability(agent, states)
    if curve:
        entry[f"curve_every_{CURVE_EVERY}_iterations"] = {
            "steps": curve["steps"][keep], "return": curve["return"][keep]}
    return entry


def mean_max_probability(agent, states: int) -> float:
    """How decided a categorical policy is: the mean over ``states`` visited states (those of
    the certificates) of its most likely action's probability."""
    import torch

    from pruningrl.evaluation import visited_states

    visited = visited_states(agent, states, seed=0)
    with torch.no_grad():
        return float(torch.softmax(agent.policy.net(visited), -1).max(-1).values.mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--what", required=True, help="what the pilots ask, in a sentence or two")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--states", type=int, default=1000)
    parser.add_argument("--eps", type=float, default=None,
                        help="the radius to certify at (default: the task's literature eps)")
    args = parser.parse_args()
    try:
        runs = json.loads(args.out.read_text())["runs"] if args.out.is_file() else []
        new = [record(path, args.episodes, args.states, args.eps) for path in args.checkpoints]
    except (ValueError, OSError, KeyError) as error:
        print(f"record_pilots: {error}", file=sys.stderr)
        return 2
    names = {entry["checkpoint"] for entry in new}
    runs = [run for run in runs if run["checkpoint"] not in names] + new
    args.out.write_text(json.dumps({"what": args.what, "runs": runs,
                                    "provenance": provenance()}, indent=1) + "\n")
    print(f"{args.out}: {len(runs)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
