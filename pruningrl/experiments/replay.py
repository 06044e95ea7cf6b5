"""Re-running a record's job, and judging whether the new numbers agree with the recorded ones.

Which comparison is fair depends on the numeric path (``pruningrl.numerics``) of both runs:

* **exact**, when the record was made on the path this process computes on (both in the
  portable mode, or both native on the same CPU, instruction sets and BLAS builds): every
  per-episode return and every certificate must be equal, bit for bit;
* **statistical**, otherwise (records made before the numeric path was recorded count as
  "unrecorded, single host"). A MuJoCo rollout amplifies a last-bit difference into a different
  episode, so only the distribution of returns can agree: for each attack, the new mean over
  the episodes must lie within 3 standard errors of the recorded episodes' mean,
  |mean(new) - mean(recorded)| <= 3 sd(recorded) / sqrt(n). The certificates that depend on
  the weights alone (global bound, Lipschitz products, radius, sparsity) must agree to 1e-6
  relative, where the weights do not themselves come from a rollout (no fine-tuning). The
  local and CROWN certificates average over states visited by a rollout, and a fine-tuned
  agent's weights come from rollouts: those are reported, not judged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pruningrl.numerics import UNRECORDED, numeric_path, same_path

EXACT, STATISTICAL = "exact", "statistical"
#: how many standard errors of the recorded episodes a new mean may move
STANDARD_ERRORS = 3.0
#: the relative tolerance of a weight-only certificate across numeric paths
CERTIFICATE_RTOL = 1e-6
#: result fields computed from the pruned weights alone
WEIGHT_ONLY = ("certified_tv", "lipschitz", "spectral_product", "certified_radius", "sparsity",
               "layer_sparsity", "constant_policy", "discrete")


@dataclass
class Agreement:
    """How a re-run compares with its record: which comparison, and where it disagrees."""

    comparison: str
    differences: list[str] = field(default_factory=list)
    not_judged: list[str] = field(default_factory=list)

    @property
    def agrees(self) -> bool:
        return not self.differences


def numeric_paths(record: dict) -> list[dict]:
    """The numeric path of each run that computed part of ``record``, in order (UNRECORDED for
    runs made before it was recorded). The first made the agent and its certificates; later
    ones added units (attacks, the certificate unit)."""
    runs = record.get("provenance") or [{}]
    return [run.get("numeric_path") or UNRECORDED for run in runs]


def compare(record: dict, again: dict, current: dict | None = None) -> Agreement:
    """Compare ``again`` (a job's new result) with ``record``'s: exactly when every run that
    made the record computed on this process's path, statistically otherwise."""
    current = numeric_path() if current is None else current
    if all(same_path(path, current) for path in numeric_paths(record)):
        return Agreement(EXACT, exact_differences(record["result"], again))
    agreement = Agreement(STATISTICAL)
    recorded = record["result"]
    evaluations = {f"attacks/{k}": v for k, v in recorded.get("attacks", {}).items()}
    if "base_clean" in recorded:
        evaluations["base_clean"] = recorded["base_clean"]
    for name, entry in evaluations.items():
        new = again.get("attacks", {}).get(name[8:]) if name.startswith("attacks/") \
            else again.get(name)
        message = mean_disagreement(entry["returns"], None if new is None else new["returns"])
        if message:
            agreement.differences.append(f"{name}: {message}")
    weights_from_rollouts = record["config"].get("finetune_steps", 0) > 0 or \
        record["config"].get("method") == "in-training"
    for key in sorted(set(recorded) - {"attacks", "base_clean"}):
        if key in WEIGHT_ONLY and not weights_from_rollouts:
            if not _close(recorded[key], again.get(key)):
                agreement.differences.append(f"{key}: {recorded[key]!r} != {again.get(key)!r}")
        else:
            agreement.not_judged.append(key)
    return agreement


def mean_disagreement(recorded: list[float], new: list[float] | None) -> str | None:
    """None when the mean of ``new`` lies within 3 standard errors of ``recorded``'s mean;
    otherwise what disagrees, in words."""
    if new is None:
        return "missing"
    recorded_mean, new_mean = float(np.mean(recorded)), float(np.mean(new))
    n = len(recorded)
    error = float(np.std(recorded, ddof=1)) / math.sqrt(n) if n > 1 else 0.0
    if abs(new_mean - recorded_mean) <= STANDARD_ERRORS * error:
        return None
    return (f"mean {new_mean:.2f} is {abs(new_mean - recorded_mean):.2f} from the recorded "
            f"{recorded_mean:.2f}, over {STANDARD_ERRORS:g} standard errors ({error:.2f})")


def _close(recorded, new) -> bool:
    if isinstance(recorded, list) and isinstance(new, list):
        return len(recorded) == len(new) and all(map(_close, recorded, new))
    if isinstance(recorded, bool) or recorded is None or isinstance(recorded, str):
        return recorded == new
    if not isinstance(new, (int, float)) or isinstance(new, bool):
        return False
    return math.isclose(recorded, new, rel_tol=CERTIFICATE_RTOL, abs_tol=0.0)


def exact_differences(recorded, again, path: str = "") -> list[str]:
    """Where two results differ, as 'path: recorded != again' lines. Every recorded field is
    compared; a field the record never had (one that later code adds, such as a new
    certificate) has no recorded number to disagree with and is left out."""
    if isinstance(recorded, dict) and isinstance(again, dict):
        out = []
        for key in sorted(recorded):
            out += exact_differences(recorded[key], again.get(key), f"{path}/{key}")
        return out
    return [] if recorded == again else [f"{path}: {recorded!r} != {again!r}"]
