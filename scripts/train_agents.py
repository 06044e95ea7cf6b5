"""Train, evaluate and ship the book's agents with the project's own CLI. Resumable.

    .venv/bin/python scripts/train_agents.py [--jobs 2] [--only Hopper-v5/ppo] [--list]

Every job is one ``python -m pruningrl train`` command writing into ``runs/agents/`` (not
tracked). A finished run is evaluated with ``python -m pruningrl evaluate --episodes 50 --json``
(deterministic actions, episode seeds 0..49), then copied to
``pruningrl/agents/ENV/VARIANT/seedK.safetensors`` with ``seedK.json`` beside it: both commands,
the code version, wall time, samples/s and the evaluation. A job whose ``seedK.json`` exists is
done; an interrupted one resumes from its training state.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "runs" / "agents"
SHIPPED = ROOT / "pruningrl" / "agents"
PYTHON = sys.executable

# (env, variant, steps, extra train flags), in the order they are trained.
PLAN: list[tuple[str, str, int, list[str]]] = [
    ("CartPole-v1", "ppo", 200_000, []),
    ("Acrobot-v1", "ppo", 300_000, []),
    ("Hopper-v5", "ppo", 1_000_000, []),
    ("Hopper-v5", "sappo", 1_000_000, ["--sa-reg", "0.1"]),
    ("Walker2d-v5", "ppo", 1_000_000, []),
    ("HalfCheetah-v5", "ppo", 1_000_000, []),
    ("Ant-v5", "ppo", 1_000_000, []),
    ("Walker2d-v5", "sappo", 1_000_000, ["--sa-reg", "0.1"]),
    ("HalfCheetah-v5", "sappo", 1_000_000, ["--sa-reg", "0.1"]),
    ("Ant-v5", "sappo", 1_000_000, ["--sa-reg", "0.1"]),
]
SEEDS = (0, 1, 2)


def jobs(only: str | None) -> list[tuple[str, str, int, int, list[str]]]:
    out = []
    for env, variant, steps, extra in PLAN:
        if only and not f"{env}/{variant}".startswith(only):
            continue
        for seed in SEEDS:
            out.append((env, variant, steps, seed, extra))
    return out


def run_job(env: str, variant: str, steps: int, seed: int, extra: list[str]) -> str:
    name = f"{env}/{variant}/seed{seed}"
    shipped = SHIPPED / env / variant / f"seed{seed}.safetensors"
    sidecar = shipped.with_suffix(".json")
    if sidecar.is_file():
        return f"{name}: already shipped"
    run = RUNS / env / variant / f"seed{seed}.safetensors"
    state = run.with_name(run.name + ".train-state.pt")
    train = ["-m", "pruningrl", "train", "--env", env, "--steps", str(steps), "--seed", str(seed),
             *extra, "--workers", "0", "--out", str(run.relative_to(ROOT)), "--no-progress",
             "--json"]
    log = run.with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    if not run.exists() or state.exists():
        if state.exists():
            train.append("--resume")
        with log.open("a") as handle:
            done = subprocess.run([PYTHON, *train], cwd=ROOT, stdout=subprocess.PIPE,
                                  stderr=handle, text=True)
        if done.returncode != 0:
            return f"{name}: train failed ({done.returncode}), see {log}"
    evaluate = ["-m", "pruningrl", "evaluate", "--agent", str(run.relative_to(ROOT)),
                "--episodes", "50", "--seed", "0", "--json"]
    start = time.perf_counter()
    done = subprocess.run([PYTHON, *evaluate], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        return f"{name}: evaluate failed: {done.stderr.strip()}"
    evaluation = json.loads(done.stdout)
    from pruningrl.agent import load_agent

    meta = load_agent(run).metadata
    shipped.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run, shipped)
    train_cmd = [a for a in train if a not in ("--resume", "--json", "--no-progress")]
    record = {
        "env_id": env,
        "variant": variant,
        "seed": seed,
        "steps": meta["steps"],
        "train_command": "python " + shlex.join(train_cmd).replace(str(RUNS.relative_to(ROOT)),
                                                                    "runs/agents"),
        "evaluate_command": "python " + shlex.join(evaluate[:-1]) + " --json",
        "code_version": meta["code_version"],
        "wall_time_s": meta["wall_time_s"],
        "samples_per_s": meta["samples_per_s"],
        "machine": f"{platform.machine()}, {platform.python_implementation()} "
                   f"{platform.python_version()}",
        "evaluation": {k: evaluation[k] for k in
                       ("episodes", "mean_return", "std_return", "mean_length", "seed",
                        "deterministic")},
        "evaluation_wall_time_s": round(time.perf_counter() - start, 1),
    }
    sidecar.write_text(json.dumps(record, indent=1) + "\n")
    return (f"{name}: shipped, return {evaluation['mean_return']:.1f} "
            f"+- {evaluation['std_return']:.1f} ({meta['wall_time_s']:.0f} s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (one core each)")
    parser.add_argument("--only", default=None, help="prefix filter, e.g. Hopper-v5/ppo")
    parser.add_argument("--list", action="store_true", help="print the plan and exit")
    args = parser.parse_args()
    queue = jobs(args.only)
    if args.list:
        for job in queue:
            print(*job[:4])
        return 0
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for message in pool.map(lambda job: run_job(*job), queue):
            print(message, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
