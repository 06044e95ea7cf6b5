"""The held-out replication's analysis, on synthetic records with known gains."""

from __future__ import annotations

import numpy as np
import pytest

from pruningrl.experiments.replication import (
    bootstrap_interval,
    difference_interval,
    finetune_share,
    format_replication,
    format_robust_training,
    replication,
    robust_training,
)

CLEAN = 100.0


def _records(gains: dict[int, list[float]], pa_ad: bool = False) -> list[dict]:
    """A random policy returning 0; per training seed k and fine-tuning seed f a dense control
    at score 0.5 (clean 100, attacked 0) and a pruned point whose score is 0.5 + gain."""
    records = [{"id": "r", "status": "done", "config": {"kind": "random_policy",
                "env_id": "T", "episodes": 1}, "result": {"attacks": {"none": {"returns": [0.0]}}}}]
    for k, per_f in gains.items():
        for f, gain in enumerate(per_f):
            for s, attacked in ((0.0, 0.0), (0.3, 2 * gain * CLEAN)):
                attacks = {"none": {"returns": [CLEAN]}, "random": {"returns": [CLEAN]},
                           "critic": {"returns": [attacked + 5]}, "mad": {"returns": [attacked]}}
                if pa_ad:  # PA-AD, two attempts: the worst takes everything
                    attacks.update({"paad:n=5": {"returns": [attacked / 2]},
                                    "paad:n=5:s=1:lr=0.0001": {"returns": [0.0]}})
                records.append({"id": f"{s}-{k}-{f}", "status": "done", "config": {
                    "kind": "prune", "env_id": "T", "variant": "ppo", "seed": k,
                    "method": "dense" if s == 0 else "magnitude",
                    "scope": None if s == 0 else "global", "target_sparsity": s,
                    "finetune_steps": 1, "finetune_seed": f, "eps": 0.1, "norm": "inf",
                    "episodes": 1}, "result": {
                    "sparsity": s, "layer_sparsity": [s], "certified_tv": 0.5,
                    "certified_radius": 0.1, "local_tv": 0.1, "lipschitz": 1.0,
                    "constant_policy": False, "discrete": False, "attacks": attacks}})
    return records


def test_a_real_gain_replicates_and_its_interval_is_the_bootstrap_of_the_seed_means():
    gains = {3: [0.10, 0.12], 4: [0.08, 0.10], 5: [0.11, 0.09], 6: [0.12, 0.14]}
    [entry] = replication(_records(gains))
    per_seed = [np.mean(v) for v in gains.values()]
    assert entry["attack_set"] == "cheap" and entry["verdict"] == "replicated"
    assert entry["gain_per_seed"] == pytest.approx(per_seed)
    assert entry["gain_mean"] == pytest.approx(np.mean(per_seed))
    assert entry["interval"] == pytest.approx(list(bootstrap_interval(per_seed)))
    assert entry["rule_verdict"] == "candidate" and entry["seeds"] == [3, 4, 5, 6]


def test_a_gain_that_flips_sign_across_seeds_does_not_replicate():
    gains = {3: [0.2, 0.1], 4: [-0.2, -0.1], 5: [0.1, 0.0], 6: [-0.15, -0.05]}
    [entry] = replication(_records(gains))
    assert entry["verdict"] == "not replicated" and entry["interval"][0] < 0


def test_pa_ad_is_judged_as_a_second_attack_set_over_its_worst_attempt():
    gains = {3: [0.1, 0.1], 4: [0.1, 0.1], 5: [0.1, 0.1]}
    entries = replication(_records(gains, pa_ad=True))
    assert [e["attack_set"] for e in entries] == ["cheap", "cheap+paad"]
    # the second PA-AD attempt takes everything from both the control and the pruned point
    assert entries[1]["gain_mean"] == pytest.approx(0.0)
    assert entries[1]["verdict"] == "not replicated"
    assert any("replicated" in line for line in format_replication(entries))


def test_a_run_that_still_owes_pa_ad_a_retry_leaves_its_attack_set_incomplete():
    gains = {3: [0.1, 0.1], 4: [0.1, 0.1], 5: [0.1, 0.1]}
    records = _records(gains, pa_ad=True)
    owed = {"0.3-4-1": {"paad"}, "0.0-3-0": set()}
    cheap, with_paad = replication(records, owed)
    assert cheap["attack_set"] == "cheap" and cheap["verdict"] == "replicated"
    assert with_paad["verdict"] == "incomplete" and with_paad["reason"].startswith("1 runs")
    assert replication(records, {"0.3-4-1": set()})[1]["verdict"] == "not replicated"


def _certify(records: list[dict], tv_at: dict[tuple[float, int], float]) -> list[dict]:
    """The records with a CROWN certificate of mean TV ``tv_at[(sparsity, k)]`` on each run."""
    for record in records:
        config = record["config"]
        if config["kind"] == "prune":
            record["result"]["crown"] = {
                "tv_mean": tv_at[(config["target_sparsity"], config["seed"])],
                "certified_fraction": 1.0, "radius_tv": {"median": 0.1, "q25": 0.1, "q75": 0.1}}
    return records


def test_certified_runs_are_judged_by_the_certified_score_too():
    # clean returns equal at 0 and 0.3; the certificate halves from 0.4 to 0.2 on seeds 3-5
    gains = {3: [0.0, 0.0], 4: [0.0, 0.0], 5: [0.0, 0.0]}
    tv_at = {(s, k): (0.4 if s == 0.0 else 0.2) for s in (0.0, 0.3) for k in gains}
    entries = replication(_certify(_records(gains), tv_at))
    assert [e["score"] for e in entries] == ["attacked", "certified"]
    certified = entries[1]
    # cs(0.3) - cs(0) = (1 + 1 - 0.2) / 2 - (1 + 1 - 0.4) / 2 = 0.1 on every run
    assert certified["gain_per_seed"] == pytest.approx([0.1, 0.1, 0.1])
    assert certified["verdict"] == "replicated" and entries[0]["verdict"] == "not replicated"
    assert any("[certified]" in line for line in format_replication(entries))
    tv_at[(0.3, 4)] = 0.6  # one seed's certificate worsens by as much as the others' improve
    worse = replication(_certify(_records(gains), tv_at))[1]
    assert worse["gain_per_seed"][1] == pytest.approx(-0.1)
    uncertified = _certify(_records(gains), tv_at)
    del uncertified[-1]["result"]["crown"]  # one run without a certificate: no certified score
    assert [e["score"] for e in replication(uncertified)] == ["attacked"]


def test_a_missing_run_leaves_the_candidate_incomplete():
    records = [r for r in _records({3: [0.1, 0.1], 4: [0.1, 0.1]}) if r["id"] != "0.3-4-1"]
    records[-1]["result"]["attacks"].pop("mad")  # and a control without one attack
    [entry] = replication(records)
    assert entry["verdict"] == "incomplete"


def test_the_fine_tuning_share_separates_within_from_between_seed_variation():
    assert finetune_share({3: [0.1, 0.3], 4: [0.1, 0.3], 5: [0.1, 0.3]}) == pytest.approx(1.0)
    assert finetune_share({3: [0.1, 0.1], 4: [0.3, 0.3], 5: [0.5, 0.5]}) == pytest.approx(0.0)
    rng = np.random.default_rng(0)  # equal components: a share near one half
    runs = {k: list(u + rng.normal(0, 1, 2)) for k, u in enumerate(rng.normal(0, 1, 400))}
    assert 0.35 < finetune_share(runs) < 0.65
    assert finetune_share({3: [0.1]}) is None


def _robust_records(pruned_attacked: list[float], robust_attacked: list[float],
                    robust_seeds: tuple[int, ...] = (10, 11, 12)) -> list[dict]:
    """The synthetic PPO series of ``_records`` plus dense SA-PPO controls (two fine-tuning
    seeds each, attacked returns ``robust_attacked[i]`` and that plus 2), on other seeds."""
    gains = {k: [a / (2 * CLEAN)] * 2 for k, a in enumerate(pruned_attacked, start=3)}
    records = _records(gains)
    for k, attacked in zip(robust_seeds, robust_attacked, strict=True):
        for f, shift in enumerate((0.0, 2.0)):
            records.append({"id": f"sappo-{k}-{f}", "status": "done", "config": {
                **records[1]["config"], "variant": "sappo", "seed": k, "method": "dense",
                "scope": None, "target_sparsity": 0.0, "finetune_seed": f},
                "result": {**records[1]["result"], "attacks": {
                    "none": {"returns": [CLEAN]}, "random": {"returns": [CLEAN]},
                    "critic": {"returns": [attacked + shift + 5]},
                    "mad": {"returns": [attacked + shift]}}}})
    return records


def test_robust_training_is_compared_with_each_pruned_candidate_over_seed_means():
    entries = robust_training(_robust_records([10, 20, 30, 40], [70, 80, 90]))
    [entry] = entries
    assert entry["attack_set"] == "cheap" and entry["sparsity"] == 0.3
    assert entry["robust"]["seeds"] == [10, 11, 12] and entry["pruned"]["seeds"] == [3, 4, 5, 6]
    assert entry["robust"]["attacked"] == pytest.approx([71, 81, 91])  # mean over f
    assert entry["lead"]["attacked"] == pytest.approx(81 - 25)
    assert entry["lead"]["clean"] == pytest.approx(0.0)
    assert entry["interval"]["attacked"] == pytest.approx(list(difference_interval(
        [71, 81, 91], [10, 20, 30, 40])))
    assert entry["verdict"] == "robust training ahead"
    assert "robust training ahead" in format_robust_training(entries)[0]


def test_robust_training_behind_or_unresolved_is_said_so():
    [behind] = robust_training(_robust_records([60, 62, 64], [10, 12, 14]))
    assert behind["verdict"] == "pruning ahead" and behind["interval"]["attacked"][1] < 0
    [tied] = robust_training(_robust_records([10, 60, 20, 70], [15, 65, 40]))
    low, high = tied["interval"]["attacked"]
    assert tied["verdict"] == "no difference resolved" and low < 0 < high


def test_difference_interval_resamples_each_family_on_its_own():
    low, high = difference_interval([1.0, 1.0, 1.0], [0.0, 0.0])
    assert low == high == 1.0  # no spread in either family
    low, high = difference_interval([0.0, 10.0], [5.0] * 5)
    assert low == pytest.approx(-5.0) and high == pytest.approx(5.0)
