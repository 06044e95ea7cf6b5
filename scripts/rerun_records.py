"""Re-run shipped sweep records from their recorded configs and compare with what they hold.

    .venv/bin/python scripts/rerun_records.py sweet-spot [--count 2] [--seed 2026] [--ids ID ...]

Picks ``--count`` done records of pruned agents at random (NumPy's generator, seeded by
``--seed``; the picks are printed), runs each job again from nothing with the engine's own
``run_job`` (pruning, fine-tuning, certificates and every attack the record holds), and compares
the new result with the recorded one: every per-episode return, every certificate. Exit status
0 when all agree exactly, 1 otherwise. The engine seeds everything a job computes, so a job run
again on the same machine with the same library versions gives the same numbers; this checks
that promise on the shipped records.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pruningrl.experiments import RecordStore, run_job  # noqa: E402
from pruningrl.experiments.results import results_dir  # noqa: E402


def attack_unit(label: str) -> dict:
    """``rs``, ``paad:n=500000``, ``optimal:s=1`` -> an ``AttackUnit`` as a dict."""
    name, *options = label.split(":")
    settings = dict(option.split("=") for option in options)
    return {"name": name, "budget": int(settings["n"]) if "n" in settings else None,
            "seed": int(settings.get("s", 0))}


def differences(recorded: dict, again: dict, path: str = "") -> list[str]:
    """Where two results differ, as 'path: recorded != again' lines."""
    if isinstance(recorded, dict) and isinstance(again, dict):
        out = []
        for key in sorted(set(recorded) | set(again)):
            out += differences(recorded.get(key), again.get(key), f"{path}/{key}")
        return out
    return [] if recorded == again else [f"{path}: {recorded!r} != {again!r}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", help="a shipped sweep's name or a sweep folder")
    parser.add_argument("--count", type=int, default=2, help="records to re-run")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the random pick")
    parser.add_argument("--ids", nargs="*", default=None, help="re-run these records instead")
    args = parser.parse_args()
    store = RecordStore(results_dir(args.sweep))
    done = [r for r in store.records()
            if r["status"] == "done" and r["config"]["kind"] == "prune"]
    if args.ids:
        picked = [r for r in done if r["id"] in args.ids]
    else:
        order = np.random.default_rng(args.seed).permutation(len(done))
        picked = [done[i] for i in order[:args.count]]
    failed = 0
    for record in picked:
        config = record["config"]
        units = [attack_unit(label) for label in record["result"]["attacks"]]
        print(f"{record['id']}: {config['agent']}, {config['method']} ({config['scope']}) at "
              f"{config['target_sparsity']}, attacks {', '.join(record['result']['attacks'])}",
              flush=True)
        again = run_job(config, units)["result"]
        found = differences(record["result"], again)
        for attack, entry in record["result"]["attacks"].items():
            print(f"  {attack:14s} recorded {np.mean(entry['returns']):9.2f}, again "
                  f"{np.mean(again['attacks'][attack]['returns']):9.2f}")
        print("  identical" if not found else "  DIFFERENT:\n    " + "\n    ".join(found[:10]))
        failed += bool(found)
    print(f"{len(picked) - failed} of {len(picked)} records reproduced exactly")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
