"""Re-run shipped sweep records from their recorded configs and compare with what they hold.

    .venv/bin/python scripts/rerun_records.py sweet-spot [--count 2] [--seed 2026] [--ids ID ...]

Picks ``--count`` done records of pruned agents at random (NumPy's generator, seeded by
``--seed``; the picks are printed), runs each job again from nothing with the engine's own
``run_job`` (pruning, fine-tuning, certificates and every attack the record holds), and compares
the new result with the recorded one. The engine seeds everything a job computes, so a record
made on this process's numeric path (both in the portable numeric mode, or the same CPU path)
must agree exactly: every per-episode return, every certificate. A record from another path
(the records made before the numeric path was recorded) can agree only statistically, since a
rollout amplifies a last-bit difference: each attack's mean within 3 standard errors of the
recorded episodes, the weight-only certificates to 1e-6 relative
(``pruningrl.experiments.replay``). Each record's line says which comparison it made. Exit
status 0 when all agree, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import pruningrl  # noqa: E402, F401 - first: the process computes in the portable numeric mode
import numpy as np  # noqa: E402
from pruningrl.experiments import RecordStore, run_job  # noqa: E402
from pruningrl.experiments.replay import compare  # noqa: E402
from pruningrl.experiments.results import results_dir  # noqa: E402


def attack_unit(label: str) -> dict:
    """``rs``, ``paad:n=500000``, ``optimal:s=1`` -> an ``AttackUnit`` as a dict."""
    name, *options = label.split(":")
    settings = dict(option.split("=") for option in options)
    return {"name": name, "budget": int(settings["n"]) if "n" in settings else None,
            "seed": int(settings.get("s", 0))}


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
        if "crown" in record["result"]:  # the certificate unit
            units.append(attack_unit("crown"))
        print(f"{record['id']}: {config['agent']}, {config['method']} ({config['scope']}) at "
              f"{config['target_sparsity']}, attacks {', '.join(record['result']['attacks'])}",
              flush=True)
        again = run_job(config, units)["result"]
        agreement = compare(record, again)
        for attack, entry in record["result"]["attacks"].items():
            print(f"  {attack:14s} recorded {np.mean(entry['returns']):9.2f}, again "
                  f"{np.mean(again['attacks'][attack]['returns']):9.2f}")
        verdict = "agrees" if agreement.agrees else "DISAGREES:\n    " + "\n    ".join(
            agreement.differences[:10])
        print(f"  {agreement.comparison} comparison: {verdict}")
        if agreement.not_judged:
            print(f"  not judged across numeric paths: {', '.join(agreement.not_judged)}")
        failed += not agreement.agrees
    print(f"{len(picked) - failed} of {len(picked)} records agree")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
