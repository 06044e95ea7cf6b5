"""Evaluate shipped agents under every attack with the project's CLI; resumable.

    .venv/bin/python scripts/attack_agents.py --agents Hopper-v5/ppo/seed0 ... [--jobs 2]
        [--attacks none,random,critic,mad,rs,rs+mad,optimal,paad] [--episodes 50]
        [--budget paad=500000]

Each (agent, attack) is one ``python -m pruningrl evaluate --agent A --attack NAME --json``
(the task's eps, deterministic actions, episode seeds 0..49). Learned attackers are trained on
first use and cached beside the agent (``pruningrl/agents/.../seedK.attackers/``). Results go
to ``pruningrl/results/attacks/ENV/VARIANT/seedK.json``, one entry per attack with the command,
code version and wall time; an attack already there is skipped. rs and rs+mad share their
Q-functions, so they run in that order in one job.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "pruningrl" / "results" / "attacks"
PYTHON = sys.executable
sys.path.insert(0, str(ROOT))
from pruningrl.reproducibility import code_version  # noqa: E402

ALL = ("none", "random", "critic", "mad", "rs", "rs+mad", "optimal", "paad")
_lock = threading.Lock()


def result_path(agent: str) -> Path:
    return RESULTS / f"{agent}.json"


def run(agent: str, attacks: list[str], episodes: int, budgets: dict[str, int]) -> list[str]:
    messages = []
    for attack in attacks:
        path = result_path(agent)
        with _lock:
            done = json.loads(path.read_text()) if path.is_file() else {}
        if attack in done:
            messages.append(f"{agent} {attack}: already done")
            continue
        command = ["-m", "pruningrl", "evaluate", "--agent", agent, "--episodes", str(episodes),
                   "--json"]
        if attack != "none":
            command[5:5] = ["--attack", attack]
        if attack in budgets:
            command[7:7] = ["--attack-budget", str(budgets[attack])]
        start = time.perf_counter()
        proc = subprocess.run([PYTHON, *command], cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            messages.append(f"{agent} {attack}: failed: {proc.stderr.strip()[-300:]}")
            continue
        payload = json.loads(proc.stdout)
        payload.update(command="python " + shlex.join(command), code_version=code_version(),
                       wall_time_s=round(time.perf_counter() - start, 1))
        with _lock:
            done = json.loads(path.read_text()) if path.is_file() else {}
            done[attack] = payload
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(done, indent=1) + "\n")
        message = (f"{agent} {attack}: {payload['mean_return']:.1f} +- "
                   f"{payload['std_return']:.1f} ({payload['wall_time_s']:.0f} s)")
        print(message, flush=True)
        messages.append(message)
    return messages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", nargs="+", required=True)
    parser.add_argument("--attacks", default=",".join(ALL))
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--budget", action="append", default=[], metavar="ATTACK=N",
                        help="a learned attack's --attack-budget, e.g. paad=500000")
    args = parser.parse_args()
    attacks = args.attacks.split(",")
    unknown = sorted(set(attacks) - set(ALL))
    if unknown:
        parser.error(f"unknown attacks {unknown}")
    budgets = {}
    for item in args.budget:
        name, _, value = item.partition("=")
        budgets[name] = int(value)
    quick = [a for a in attacks if a not in ("optimal", "paad")]
    jobs = [(agent, quick) for agent in args.agents]
    jobs += [(agent, [a]) for a in ("optimal", "paad") if a in attacks for agent in args.agents]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for messages in pool.map(lambda job: run(job[0], job[1], args.episodes, budgets), jobs):
            for message in messages:
                if "failed" in message:
                    print(message, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
