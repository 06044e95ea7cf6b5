"""The certified sweet spot and the equal-clean comparison (pruningrl.experiments.certified)."""

from __future__ import annotations

import json

import pytest

from pruningrl.cli import main
from pruningrl.experiments.certified import (
    certified_against_pruned,
    certified_sweet_spots,
    format_certified,
    load_certified,
)
from pruningrl.experiments.results import rows

RANDOM_RETURN = 0.0


def _point(variant: str, sparsity: float, seed: int, clean: float, tv: float | None,
           paad: float | None = None, cheap: tuple[float, float, float] | None = None) -> dict:
    """A done prune record of task T: the clean return, the CROWN TV, PA-AD where given, and
    the cheap attacks (random, critic, MAD) at the clean return unless given."""
    random, critic, mad = cheap or (clean, clean, clean)
    attacks = {"none": {"returns": [clean]}, "random": {"returns": [random]},
               "critic": {"returns": [critic]}, "mad": {"returns": [mad]}}
    if paad is not None:
        attacks["paad:n=100"] = {"returns": [paad]}
    crown = None if tv is None else {"tv_mean": tv, "certified_fraction": 1.0,
                                     "radius_tv": {"median": 0.1, "q25": 0.1, "q75": 0.1}}
    dense = sparsity == 0.0
    return {"id": f"{variant}-{sparsity}-{seed}", "status": "done", "phases": {}, "config": {
        "kind": "prune", "env_id": "T", "variant": variant, "seed": seed,
        "method": "dense" if dense else "magnitude", "scope": None if dense else "global",
        "target_sparsity": sparsity, "finetune_steps": 1, "eps": 0.1, "norm": "inf",
        "episodes": 1}, "result": {
        "sparsity": sparsity, "layer_sparsity": [sparsity], "certified_tv": 1.0,
        "certified_radius": 0.0, "local_tv": 1.0, "lipschitz": 1.0, "constant_policy": False,
        "discrete": False, "attacks": attacks, "crown": crown}}


def _random_policy() -> dict:
    return {"id": "random", "status": "done", "phases": {}, "config": {"kind": "random_policy",
            "env_id": "T", "episodes": 1},
            "result": {"attacks": {"none": {"returns": [RANDOM_RETURN]}}}}


def _series(tv_at: dict[float, list[float]], clean_at: dict[float, list[float]],
            variant: str = "sappo-convex") -> list[dict]:
    return [_point(variant, s, seed, clean_at[s][seed], tv)
            for s, tvs in tv_at.items() for seed, tv in enumerate(tvs)]


def test_a_lower_certificate_at_equal_clean_return_is_a_candidate_with_its_null_rate():
    records = [_random_policy(), *_series(
        {0.0: [0.30, 0.32, 0.28], 0.5: [0.10, 0.11, 0.12]},
        {0.0: [100.0, 100.0, 100.0], 0.5: [100.0, 98.0, 101.0]})]
    (entry,) = certified_sweet_spots(records)
    assert entry["verdict"] == "candidate" and entry["sweet_spot"] == 0.5
    # cs(0.5) - cs(0) per seed: (n_clean - 1 + tv(0) - tv(0.5)) / 2
    assert entry["per_seed"]["score"][1] == pytest.approx([0.5 * (1 + 1 - 0.32),
                                                           0.5 * (0.98 + 1 - 0.11)])
    assert entry["gain_min"] == pytest.approx(0.5 * (0.01 + 0.28 - 0.12))  # seed 2
    assert 0 < entry["null_false_positive_rate"] < 0.5
    assert entry["median_crown_tv"] == pytest.approx([0.30, 0.11])


def test_a_certificate_bought_with_the_clean_return_is_no_candidate():
    records = [_random_policy(), *_series(
        {0.0: [0.30, 0.32, 0.28], 0.5: [0.10, 0.11, 0.12]},
        {0.0: [100.0, 100.0, 100.0], 0.5: [40.0, 50.0, 45.0]})]
    (entry,) = certified_sweet_spots(records)
    assert entry["verdict"] == "none here" and entry["sweet_spot"] == 0.0


def test_a_point_without_a_certificate_leaves_the_series_incomplete():
    records = [_random_policy(), *_series(
        {0.0: [0.30, 0.32, 0.28], 0.5: [0.10, None, 0.12]},
        {0.0: [100.0, 100.0, 100.0], 0.5: [100.0, 100.0, 100.0]})]
    (entry,) = certified_sweet_spots(records)
    assert entry["verdict"] == "incomplete" and "1 of 6 points" in entry["reason"]
    assert certified_sweet_spots(records[1:])[0]["verdict"] == "incomplete"  # no R_rand


def test_certified_training_is_compared_with_the_pruned_rival_of_closest_clean_return():
    records = [
        *(_point("sappo-convex", 0.0, k, 100.0, 0.2, paad=80.0) for k in range(3)),
        *(_point("sappo", 0.0, k, 120.0, 0.4, paad=30.0) for k in range(3)),
        *(_point("sappo", 0.4, k, 104.0 + k, 0.35, paad=40.0, cheap=(90.0, 70.0 - k, 95.0))
          for k in range(3)),
        *(_point("sappo", 0.8, k, 60.0, 0.3) for k in range(3)),  # PA-AD has not run here
    ]
    (compared,) = certified_against_pruned(rows(records))
    assert compared["certified"]["clean"] == 100.0 and compared["certified"]["crown_tv"] == 0.2
    assert compared["certified"]["worst_paad"] == 80.0
    pruned = compared["pruned"]
    assert (pruned["variant"], pruned["sparsity"], pruned["clean"]) == ("sappo", 0.4, 105.0)
    assert pruned["crown_tv"] == 0.35 and pruned["worst_paad"] == 40.0
    assert pruned["worst_cheap"] == 69.0  # the median seed's worst cheap attack (critic)
    assert compared["certified"]["worst_cheap"] == 100.0
    farther = [r for r in records if r["config"]["target_sparsity"] != 0.4]
    assert certified_against_pruned(rows(farther))[0]["pruned"]["worst_paad"] is None


def test_results_of_a_certified_sweep_print_and_emit_the_certified_verdicts(tmp_path, capsys):
    folder = tmp_path / "records"
    folder.mkdir()
    records = [_random_policy(), *_series(
        {0.0: [0.30, 0.32, 0.28], 0.5: [0.10, 0.11, 0.12]},
        {0.0: [100.0, 100.0, 100.0], 0.5: [100.0, 98.0, 101.0]})]
    for record in records:
        (folder / f"{record['id']}.json").write_text(json.dumps(record))
    loaded = load_certified(str(tmp_path))
    assert loaded["certified_sweet_spots"][0]["verdict"] == "candidate"
    assert any("candidate" in line for line in format_certified(loaded))
    assert main(["results", str(tmp_path), "--json"]) == 0
    emitted = json.loads(capsys.readouterr().out)
    assert emitted["certified_sweet_spots"][0]["sweet_spot"] == 0.5
    assert main(["results", str(tmp_path)]) == 0
    assert "certified sweet spots" in capsys.readouterr().out


def test_a_sweep_fine_tuned_twice_per_point_is_left_to_the_replication(tmp_path, capsys):
    """Two fine-tuning runs per point are not two seeds: the certified sweet spot would judge
    whichever run it read last, so a replication sweep gets no certified verdict of its own."""
    folder = tmp_path / "records"
    folder.mkdir()
    records = [_random_policy()]
    for finetune_seed in (0, 1):
        for record in _series({0.0: [0.30, 0.32, 0.28], 0.5: [0.10, 0.11, 0.12]},
                              {0.0: [100.0, 100.0, 100.0], 0.5: [100.0, 98.0, 101.0]}):
            record["id"] += f"-f{finetune_seed}"
            record["config"]["finetune_seed"] = finetune_seed
            records.append(record)
    for record in records:
        (folder / f"{record['id']}.json").write_text(json.dumps(record))
    assert load_certified(str(tmp_path)) == {"certified_sweet_spots": [],
                                             "certified_against_pruned": []}
    assert main(["results", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "held-out replication:" in printed and "certified sweet spots" not in printed


def test_pa_ad_that_a_seed_still_owes_is_no_worst_return_yet():
    """A run whose first PA-AD attempt is recorded but whose other attempts (or the retry of a
    weak one) are still to run has no worst PA-AD return: the point's stays None until every
    seed owes nothing."""
    records = [*(_point("sappo-convex", 0.0, k, 100.0, 0.2, paad=80.0) for k in range(3)),
               *(_point("sappo", 0.4, k, 100.0, 0.3, paad=50.0) for k in range(3))]
    (compared,) = certified_against_pruned(rows(records))
    assert compared["pruned"]["worst_paad"] == 50.0
    owed = {"sappo-0.4-1": {"paad"}, "sappo-convex-0.0-2": {"mad"}}
    (compared,) = certified_against_pruned(rows(records), owed=owed)
    assert compared["pruned"]["worst_paad"] is None
    assert compared["certified"]["worst_paad"] == 80.0  # it owes MAD, not PA-AD


def test_a_point_missing_a_cheap_attack_has_no_worst_cheap_return():
    records = [*(_point("sappo-convex", 0.0, k, 100.0, 0.2) for k in range(3)),
               *(_point("sappo", 0.4, k, 100.0, 0.3, cheap=(90.0, 80.0, 70.0))
                 for k in range(3))]
    del records[-1]["result"]["attacks"]["critic"]  # one seed lacks the critic attack
    (compared,) = certified_against_pruned(rows(records))
    assert compared["pruned"]["worst_cheap"] is None
    assert compared["certified"]["worst_cheap"] == 100.0
