"""Prune the shipped Hopper PPO agents four ways at one sparsity (the pruning chapter). Resumable.

    .venv/bin/python scripts/prune_agents.py [--sparsity 0.7] [--steps 50000] [--cwd DIR]

For each shipped ``Hopper-v5/ppo/seedK``: one-shot global magnitude pruning, the same followed by
``--steps`` PPO steps of fine-tuning, and the gradual (cubic) and micro-pruning schedules acting
during ``--steps`` steps of fine-tuning. Each is one ``python -m pruningrl prune`` command
(run in ``--cwd``, a clean checkout, so the recorded code version is exact), then a
50-episode deterministic ``evaluate``. Results go to ``pruningrl/results/pruning/`` (package
data, so Colab has them too): each checkpoint with a JSON record of its command, code version
and evaluation. Done runs are kept.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "pruningrl" / "results" / "pruning"
METHODS = (("magnitude", False), ("magnitude", True), ("gradual", True), ("micro", True))


def run(cmd: list[str], cwd: Path) -> dict:
    done = subprocess.run([sys.executable, "-m", "pruningrl", *cmd], cwd=cwd,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout)


def job(seed: int, method: str, finetune: bool, args) -> dict:
    name = f"seed{seed}-{method}{'-finetuned' if finetune and method == 'magnitude' else ''}"
    out = OUT / f"{name}.safetensors"
    record_path = OUT / f"{name}.json"
    if record_path.is_file():
        return json.loads(record_path.read_text())
    parent = ROOT / "pruningrl" / "agents" / "Hopper-v5" / "ppo" / f"seed{seed}.safetensors"
    prune = ["prune", "--agent", str(parent), "--method", method, "--sparsity",
             str(args.sparsity), "--seed", str(seed), "--out", str(out), "--force",
             "--no-progress", "--json"]
    if finetune:
        prune += ["--finetune-steps", str(args.steps)]
    pruned = run(prune, args.cwd)
    evaluation = run(["evaluate", "--agent", str(out), "--episodes", "50", "--json"], args.cwd)
    from pruningrl.agent import load_agent

    meta = load_agent(out).metadata
    record = {
        "name": name, "seed": seed, "method": method, "finetune_steps": args.steps if finetune
        else 0, "sparsity": pruned["sparsity"], "layer_sparsity": pruned["layer_sparsity"],
        "certified_tv": pruned["certified_tv"], "eps": pruned["eps"],
        "prune_command": "python -m pruningrl " + shlex.join(
            [a if a != str(parent) else f"Hopper-v5/ppo/seed{seed}" for a in prune]
        ).replace(str(ROOT) + "/", ""),
        "code_version": meta.get("code_version"),
        "finetune_samples_per_s": pruned.get("finetune_samples_per_s"),
        "evaluation": {k: evaluation[k] for k in ("episodes", "mean_return", "std_return")},
    }
    record_path.write_text(json.dumps(record, indent=1) + "\n")
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, default=0.7)
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--cwd", type=Path, default=ROOT, help="a clean checkout to run in")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    jobs = [(seed, method, finetune) for seed in args.seeds for method, finetune in METHODS]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        records = list(pool.map(lambda j: job(*j, args), jobs))
    for record in records:
        print(f"{record['name']:28s} sparsity {record['sparsity']:.3f}  return "
              f"{record['evaluation']['mean_return']:8.1f}  "
              f"certified TV {record['certified_tv']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
