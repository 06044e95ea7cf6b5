"""The sweet-spot rule's false-positive rate under the null, by simulation."""

from __future__ import annotations

import pytest

from pruningrl.experiments.calibration import null_false_positive_rate
from pruningrl.experiments.results import _judge, rule_verdict


def test_choosing_the_sparsity_on_the_same_data_inflates_the_rate():
    chosen = null_false_positive_rate(3, 10, trials=6000)
    fixed = null_false_positive_rate(3, 10, trials=6000, pre_registered=True)
    more_seeds = null_false_positive_rate(5, 10, trials=6000)
    # nine candidates chosen on the data fire about three times as often as one fixed sparsity
    assert chosen.rate > 2 * fixed.rate + 3 * (chosen.standard_error + fixed.standard_error)
    assert more_seeds.rate < chosen.rate / 3
    assert 0.0 < fixed.rate < 0.1 and 0.05 < chosen.rate < 0.25


def test_the_simulation_is_reproducible_and_says_what_it_measured():
    first = null_false_positive_rate(3, 4, trials=500, seed=1)
    assert first == null_false_positive_rate(3, 4, trials=500, seed=1)
    assert "3 seeds" in str(first) and "3 nonzero sparsities" in str(first)


def test_rule_verdict_is_the_rule_of_the_sweet_spot_table():
    score = {(0.0, 0): 0.5, (0.0, 1): 0.4, (0.0, 2): 0.45,
             (0.3, 0): 0.8, (0.3, 1): 0.7, (0.3, 2): 0.78}
    assert _judge(score, [0.0, 0.3], [0, 1, 2])[4] == "candidate"
    assert rule_verdict(0.3, [0.3, 0.3, 0.33]) == "candidate"
    assert rule_verdict(0.3, [0.3, -0.01, 0.33]) == "none here"  # one seed loses
    assert rule_verdict(0.3, [0.05, 0.4, 0.1]) == "none here"  # median below the spread
    assert rule_verdict(0.0, [0.3, 0.3, 0.3]) == "none here"  # the control itself
    assert rule_verdict(0.3, [0.3]) == "one seed"


@pytest.mark.parametrize("args", [(1, 10), (3, 1), (3, 10, 0)])
def test_bad_arguments_are_refused(args):
    with pytest.raises(ValueError):
        null_false_positive_rate(*args)


def test_unknown_noise_is_refused():
    with pytest.raises(ValueError, match="unknown noise"):
        null_false_positive_rate(3, 10, trials=10, noise="cauchy")
