"""How often the sweet-spot rule fires when pruning does nothing: its false-positive rate.

Under the null hypothesis every sparsity of a series scores the same in distribution: the
score of (sparsity s, training seed k) is exchangeable across sparsities, score(s, k) =
u_k + e_{s,k} with a seed effect u_k (which cancels in every gain) and independent noise
e_{s,k}. The rule of ``pruningrl.experiments.results`` (``_judge``) then picks s* as the
sparsity with the highest median score and declares a candidate when s* > 0, every seed's
gain score(s*) - score(0) is positive and the median gain exceeds the seed spread. Because s*
is chosen on the same scores that judge it, the rule fires by chance more often than its
per-seed conditions suggest. ``null_false_positive_rate`` estimates that rate by simulation,
for a series' own number of seeds and sparsities; with ``pre_registered`` the sparsity is fixed
before the scores are drawn, which is how a held-out replication judges a candidate.
The rule's conditions are invariant to the location and scale of the scores, so standard
normal noise loses no generality for Gaussian scores; ``noise="t3"`` checks heavy tails.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pruningrl.experiments.results import _judge, rule_verdict

NOISES = ("normal", "t3")


@dataclass(frozen=True)
class NullRate:
    """The simulated false-positive rate of the sweet-spot rule, with its standard error."""

    seeds: int
    sparsities: int
    pre_registered: bool
    trials: int
    rate: float

    @property
    def standard_error(self) -> float:
        return float(np.sqrt(self.rate * (1.0 - self.rate) / self.trials))

    def __str__(self) -> str:
        choice = "one pre-registered sparsity" if self.pre_registered else (
            f"s* chosen among {self.sparsities - 1} nonzero sparsities")
        return (f"null false-positive rate, {self.seeds} seeds, {choice}: "
                f"{self.rate:.1%} +- {self.standard_error:.1%} ({self.trials:,} series)")


def null_false_positive_rate(seeds: int, sparsities: int, trials: int = 20_000,
                             pre_registered: bool = False, noise: str = "normal",
                             seed: int = 0) -> NullRate:
    """The share of ``trials`` simulated null series in which the rule declares a candidate.

    ``sparsities`` counts the dense control (a grid 0, 0.1, ..., 0.9 has 10). With
    ``pre_registered`` only the control and one fixed nonzero sparsity are scored, and the rule
    judges that sparsity (s* is the pre-registered one whatever the scores say).
    """
    if seeds < 2 or sparsities < 2 or trials < 1:
        raise ValueError("the rule needs at least 2 seeds, 2 sparsities and 1 trial, got "
                         f"{seeds}, {sparsities}, {trials}")
    if noise not in NOISES:
        raise ValueError(f"unknown noise {noise!r}; choose from {', '.join(NOISES)}")
    rng = np.random.default_rng(seed)
    grid = [0.0, 1.0] if pre_registered else [k / sparsities for k in range(sparsities)]
    fired = 0
    for _ in range(trials):
        draws = (rng.standard_normal((len(grid), seeds)) if noise == "normal"
                 else rng.standard_t(3, (len(grid), seeds)))
        draws += rng.standard_normal(seeds)  # the seed effect, shared by a seed's sparsities
        score = {(s, k): float(draws[i, k]) for i, s in enumerate(grid) for k in range(seeds)}
        if pre_registered:
            verdict = rule_verdict(1.0, [score[(1.0, k)] - score[(0.0, k)]
                                         for k in range(seeds)])
        else:
            verdict = _judge(score, grid, list(range(seeds)))[4]
        fired += verdict == "candidate"
    return NullRate(seeds, sparsities, pre_registered, trials, fired / trials)
