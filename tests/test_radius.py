"""Choosing a task's radius by the strongest attack (pruningrl.experiments.radius)."""

from __future__ import annotations

import math

import pytest

from pruningrl.experiments.radius import radius_by_strongest_attack


def _dense_controls(kept: dict[float, list[float]], clean: float = 500.0,
                    random_return: float = 20.0) -> list[dict]:
    """Synthetic dense controls: at each eps, per seed, the worst attack keeps the given share
    of the normalized return (a weaker attack beside it keeps everything)."""
    records = [{"id": "r", "status": "done", "config": {"kind": "random_policy", "env_id": "T",
                "episodes": 1}, "result": {"attacks": {"none": {"returns": [random_return]}}}}]
    for eps, shares in kept.items():
        for seed, share in enumerate(shares):
            worst = random_return + share * (clean - random_return)
            records.append({"id": f"{eps}-{seed}", "status": "done", "config": {
                "kind": "prune", "env_id": "T", "variant": "ppo", "seed": seed,
                "method": "dense", "scope": None, "target_sparsity": 0.0,
                "finetune_steps": 1, "eps": eps, "norm": "inf", "episodes": 1}, "result": {
                "sparsity": 0.0, "layer_sparsity": [0.0], "certified_tv": 1.0,
                "certified_radius": 0.0, "local_tv": 1.0, "lipschitz": 1.0,
                "constant_policy": False, "discrete": True,
                "attacks": {"none": {"returns": [clean]}, "mad": {"returns": [clean]},
                            "paad:n=100:s=1": {"returns": [worst]}}}})
    return records


def test_the_smallest_radius_where_the_median_seed_keeps_half_is_chosen():
    chosen = radius_by_strongest_attack(_dense_controls(
        {0.1: [1.0, 0.9, 0.95], 0.2: [0.7, 0.4, 0.45], 0.4: [0.1, 0.0, 0.2]}))["T"]
    assert chosen["eps"] == [0.1, 0.2, 0.4] and chosen["seeds"] == [3, 3, 3]
    assert chosen["median_normalized"] == pytest.approx([0.95, 0.45, 0.1])
    assert chosen["chosen"] == 0.2 and chosen["refine"] is None
    assert chosen["attacks"][0] == ["mad", "none", "paad:n=100:s=1"]


def test_a_cliff_between_neighbouring_radii_asks_for_one_more_radius_first():
    steep = radius_by_strongest_attack(_dense_controls({0.1: [0.9, 0.8, 1.0],
                                                        0.4: [0.0, 0.1, 0.05]}))["T"]
    assert steep["chosen"] is None and steep["refine"] == pytest.approx(math.sqrt(0.04))
    never = radius_by_strongest_attack(_dense_controls({0.1: [0.9, 0.8, 1.0]}))["T"]
    assert never["chosen"] is None and never["refine"] is None


def test_no_radius_is_chosen_while_some_seed_lacks_an_attack_another_has():
    records = _dense_controls({0.1: [1.0, 1.0, 1.0], 0.2: [0.1, 0.2, 0.3]})
    del records[-1]["result"]["attacks"]["paad:n=100:s=1"]  # seed 2 at 0.2: not attacked yet
    partial = radius_by_strongest_attack(records)["T"]
    assert partial["incomplete"] == [0.2] and partial["chosen"] is None
    assert radius_by_strongest_attack(_dense_controls({0.2: [0.1, 0.2, 0.3]}))["T"][
        "incomplete"] == []


def test_missing_pieces_and_bad_targets_are_refused():
    records = _dense_controls({0.1: [0.5, 0.5, 0.5]})
    with pytest.raises(ValueError, match="target must lie"):
        radius_by_strongest_attack(records, target=1.0)
    with pytest.raises(ValueError, match="random policy's return"):
        radius_by_strongest_attack(records[1:])


def test_a_radius_the_learned_attacks_have_not_reached_is_incomplete():
    records = _dense_controls({0.1: [1.0, 1.0, 1.0], 0.2: [0.9, 0.9, 0.9]})
    for record in records[-3:]:  # 0.2: only the cheap attack has run
        del record["result"]["attacks"]["paad:n=100:s=1"]
    partial = radius_by_strongest_attack(records)["T"]
    assert partial["incomplete"] == [0.2] and partial["chosen"] is None


def test_extra_attempts_at_some_seeds_do_not_make_a_radius_incomplete():
    records = _dense_controls({0.1: [1.0, 0.9, 1.0], 0.2: [0.3, 0.4, 0.45]})
    records[-1]["result"]["attacks"]["paad:n=200:s=2"] = {"returns": [500.0]}  # a retry
    complete = radius_by_strongest_attack(records)["T"]
    assert complete["incomplete"] == [] and complete["chosen"] == 0.2
