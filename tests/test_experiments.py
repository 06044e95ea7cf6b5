"""The sweep engine: grids, jobs, resumption after SIGKILL, failures, executors, results."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pruningrl.agent import load_agent
from pruningrl.cli import main
from pruningrl.experiments import (
    RecordStore,
    expand,
    load_grid,
    run_job,
    run_sweep,
    stable_part,
)
from pruningrl.experiments.jobs import AttackUnit, Job, certified_radius, config_id
from pruningrl.experiments.replay import compare, numeric_paths
from pruningrl.experiments.results import SHIPPED_RESULTS, sweet_spots
from pruningrl.experiments.sweep import owed_attacks, plan, retries, stage_of
from pruningrl.numerics import UNRECORDED, numeric_path
from pruningrl.zoo import agent_path, load

ROOT = Path(__file__).resolve().parent.parent
SMOKE = load_grid("smoke")


def stable_records(folder: Path) -> dict[str, dict]:
    return {r["id"]: stable_part(r) for r in RecordStore(folder).records()}


@pytest.fixture(scope="module")
def smoke_local(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke") / "local"
    summary = run_sweep(SMOKE, out, "local", jobs=2, progress=False)
    assert summary.jobs_failed == 0 and summary.jobs_run == summary.jobs_total
    return out


# ------------------------------------------------------------------------------- grids


BAD_GRIDS = {
    "unknown key": ("colour = 'red'", "unknown grid key 'colour'"),
    "unknown env": ("envs = ['NoSuchEnv-v0']", "unknown environment id"),
    "unknown variant": ("variants = ['dqn']", "no shipped agent CartPole-v1/dqn/seed0"),
    "unknown seed": ("seeds = [42]", "no shipped agent CartPole-v1/ppo/seed42"),
    "negative seed": ("seeds = [-1]", "no shipped agent"),
    "unknown method": ("methods = ['lottery']", "unknown method 'lottery'"),
    "unknown attack": ("attacks = ['none', 'fgsm']", "unknown attack 'fgsm'"),
    "unknown scope": ("scope = 'row'", "unknown scope 'row'"),
    "sparsity 1": ("sparsities = [0.0, 1.0]", "outside [0, 1)"),
    "negative sparsity": ("sparsities = [-0.1]", "outside [0, 1)"),
    "negative eps": ("eps = -0.1", "'eps' must be >= 0"),
    "empty envs": ("envs = []", "'envs' must be a non-empty list"),
    "empty sparsities": ("sparsities = []", "'sparsities' must be a non-empty list"),
    "budget of a cheap attack": ("[budgets]\nmad = 10", "learns nothing"),
    "eps not a number": ("eps = 'x'", "'eps' must be a float"),
    "bad toml": ("envs = [", "not valid TOML"),
    "prune window reversed": ("prune_window = [0.75, 0.2]", "'prune_window' must be"),
    "prune window past the run": ("prune_window = [0.2, 1.5]", "'prune_window' must be"),
    "prune window not a pair": ("prune_window = 0.2", "'prune_window' must be"),
    "negative fine-tuning rate": ("finetune_lr = -1e-4", "'finetune_lr' must be >= 0"),
    "zero fine-tuning rate": ("finetune_lr = 0.0", "'finetune_lr' must be positive"),
    "fine-tuning rate with nothing to tune": ("finetune_steps = 0\nfinetune_lr = 1e-4",
                                              "needs finetune_steps > 0"),
    "repeated fine-tuning seeds": ("finetune_seeds = [0, 0]", "'finetune_seeds' must be"),
    "negative fine-tuning seed": ("finetune_seeds = [-1]", "'finetune_seeds' must be"),
    "fine-tuning seeds not integers": ("finetune_seeds = [0.5]", "not a int"),
    "fine-tuning schedule outside [0, 1]": ("finetune_sa_ramp = 1.5",
                                            "'finetune_sa_ramp' must lie in [0, 1]"),
    "fine-tuning schedule with nothing to tune": ("finetune_steps = 0\nfinetune_sa_ramp = 0.0",
                                                  "needs finetune_steps > 0"),
    "fine-tuning seeds in training": ("methods = ['in-training']\nfinetune_seeds = [0, 1]",
                                      "fine-tunes nothing"),
    "an agent not trained": ("seeds = [11]", "scripts/train_agents.py --seeds"),
    "attempts of a cheap attack": ("attacks = ['mad']\n[attempts]\nmad = [{seed = 1}]",
                                   "not a learned attack"),
    "attempts of an attack not run": ("attacks = ['rs']\n[attempts]\npaad = [{seed = 1}]",
                                      "not a learned attack of this grid"),
    "attempt with a negative rate": ("attacks = ['paad']\n[attempts]\npaad = [{lr = -1e-4}]",
                                     "must be a number > 0"),
    "attempt with a mixing weight of 1": ("attacks = ['rs+mad']\n[attempts]\n"
                                          "\"rs+mad\" = [{ratio = 1.0}]", "in (0, 1)"),
    "attempt setting a learning rate of RS": ("attacks = ['rs']\n[attempts]\n"
                                              "rs = [{lr = 1e-4}]", "it may set seed"),
    "the same attempt twice": ("attacks = ['paad']\n[attempts]\n"
                               "paad = [{seed = 1, lr = 1e-4}, {lr = 1e-4, seed = 1}]",
                               "are the same"),
    "attempts not a list": ("attacks = ['paad']\n[attempts]\npaad = 3", "non-empty list"),
}


def grid_text(override: str) -> str:
    base = {"envs": "envs = ['CartPole-v1']", "variants": "variants = ['ppo']",
            "seeds": "seeds = [0]", "methods": "methods = ['magnitude']",
            "sparsities": "sparsities = [0.0, 0.5]", "eps": "eps = 0.1",
            "finetune_steps": "finetune_steps = 2048"}
    key = override.split("=")[0].strip()
    lines = [line for k, line in base.items() if k != key]
    tables = [override] if override.startswith("[") else []
    return "\n".join(lines + ([] if tables else [override]) + tables) + "\n"


@pytest.mark.parametrize("case", sorted(BAD_GRIDS))
def test_a_bad_grid_is_refused_in_one_line_and_nothing_is_written(case, tmp_path, capsys):
    override, message = BAD_GRIDS[case]
    path = tmp_path / "bad.toml"
    path.write_text(grid_text(override))
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[")):
        load_grid(str(path))
    out = tmp_path / "out"
    code = main(["sweep", str(path), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("pruningrl: error: ")
    assert not out.exists()


def test_finetune_seeds_repeat_every_point_and_seed_its_fine_tuning(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text(grid_text("finetune_seeds = [0, 5]"))
    jobs = [j.settings for j in expand(load_grid(str(path))) if j.settings["kind"] == "prune"]
    assert sorted((j["target_sparsity"], j["finetune_seed"]) for j in jobs) == [
        (0.0, 0), (0.0, 5), (0.5, 0), (0.5, 5)]
    assert len({config_id(j) for j in jobs}) == 4
    plain = tmp_path / "plain.toml"
    plain.write_text(grid_text("seeds = [0]"))  # no finetune_seeds: the configs are unchanged
    assert all("finetune_seed" not in j.settings for j in expand(load_grid(str(plain))))


def test_attempts_give_every_point_one_unit_per_attempt(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text(grid_text("attacks = ['mad', 'paad', 'rs+mad']\n[budgets]\npaad = 4096\n"
                              "[attempts]\npaad = [{seed = 0}, {seed = 1, lr = 1e-4}, "
                              "{seed = 2, ent = 0.01}]\n\"rs+mad\" = [{ratio = 0.25}, "
                              "{ratio = 0.75}]"))
    job = next(j for j in expand(load_grid(str(path))) if j.settings["kind"] == "prune")
    assert [u.label for u in job.attacks if u.name != "crown"] == [
        "none", "mad", "paad:n=4096", "paad:n=4096:s=1:lr=0.0001", "paad:n=4096:s=2:ent=0.01",
        "rs+mad:rho=0.25", "rs+mad:rho=0.75"]
    for unit in job.attacks:  # what a worker receives rebuilds the same unit
        assert AttackUnit(**unit.to_dict()) == unit


def test_a_retry_keeps_its_attempts_settings():
    job = Job((("kind", "prune"),), (AttackUnit("none"), AttackUnit("paad", 1000, 2, lr=1e-4)))
    measured = {"none": {"mean_return": 3000.0},
                "paad:n=1000:s=2:lr=0.0001": {"mean_return": 2900.0}}
    assert retries(job, measured) == [AttackUnit("paad", 2000, 3, lr=1e-4)]


def test_an_empty_grid_file_is_refused(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text("")
    with pytest.raises(ValueError, match="needs 'envs'"):
        load_grid(str(path))


def test_a_categorical_task_needs_an_eps(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text(grid_text("eps = 0.1").replace("eps = 0.1\n", ""))
    with pytest.raises(ValueError, match="no literature eps"):
        load_grid(str(path))


def test_an_unknown_grid_name_lists_the_shipped_ones():
    with pytest.raises(ValueError, match="shipped: .*smoke"):
        load_grid("no-such-grid")


def test_the_dense_control_is_shared_and_ids_hash_the_config():
    jobs = expand(SMOKE)
    configs = [j.settings for j in jobs]
    dense = [c for c in configs if c.get("method") == "dense"]
    assert len(dense) == len(SMOKE.parts[0].seeds)  # one control per seed, not one per method
    assert len({j.id for j in jobs}) == len(jobs)
    assert [c["kind"] for c in configs].count("random_policy") == 1
    assert all(len(j.id) == 16 for j in jobs)


def test_a_fine_tuning_rate_is_part_of_the_job_only_when_set(tmp_path):
    from pruningrl.experiments.results import series_key

    plain = tmp_path / "plain.toml"
    plain.write_text(grid_text("seeds = [0]"))
    tuned = tmp_path / "tuned.toml"
    tuned.write_text(grid_text("seeds = [0]") + "finetune_lr = 1e-4\n")
    before = {j.id: j.settings for j in expand(load_grid(str(plain)))}
    after = {j.id: j.settings for j in expand(load_grid(str(tuned)))}
    assert all("finetune_lr" not in c for c in before.values())  # old ids stay valid
    prune = [c for c in after.values() if c["kind"] == "prune"]
    assert prune and all(c["finetune_lr"] == 1e-4 for c in prune)
    assert not set(before) & {i for i, c in after.items() if c["kind"] == "prune"}
    assert {series_key(c) for c in prune} != {series_key(c) for c in before.values()
                                             if c["kind"] == "prune"}


def test_a_fine_tuning_schedule_is_part_of_the_job_and_its_series_only_when_set(tmp_path):
    from pruningrl.experiments.results import series_key

    plain = tmp_path / "plain.toml"
    plain.write_text(grid_text("seeds = [0]"))
    held = tmp_path / "held.toml"
    held.write_text(grid_text("seeds = [0]") + "finetune_sa_ramp = 0.0\n")
    before = [j.settings for j in expand(load_grid(str(plain))) if j.settings["kind"] == "prune"]
    after = [j.settings for j in expand(load_grid(str(held))) if j.settings["kind"] == "prune"]
    assert all("finetune_sa_ramp" not in c for c in before)  # old ids stay valid
    assert after and all(c["finetune_sa_ramp"] == 0.0 for c in after)
    assert not {series_key(c) for c in after} & {series_key(c) for c in before}


def test_a_held_schedule_fine_tunes_a_robust_agent_at_its_full_radius_from_the_first_step():
    from pruningrl.finetune import prune_and_finetune
    from pruningrl.ppo import PPOConfig, sa_schedule

    agent = load("Hopper-v5/sappo/seed0")
    with pytest.raises(ValueError, match="sa_ramp must lie in"):
        prune_and_finetune(agent, "magnitude", 0.5, finetune_steps=2048, sa_ramp=-0.5)
    made = prune_and_finetune(agent, "magnitude", 0.5, finetune_steps=2048, sa_ramp=0.0)
    config = PPOConfig.from_dict(made.agent.metadata["config"])
    assert config.sa_ramp == 0.0 and made.agent.metadata["pruning"]["sa_ramp"] == 0.0
    assert sa_schedule(config, 0)[0] == agent.metadata["config"]["sa_eps"]


def test_the_fine_tuning_rate_reaches_ppo():
    from pruningrl.finetune import prune_and_finetune

    agent = load_agent(agent_path("CartPole-v1/ppo/seed0"))
    made = prune_and_finetune(agent, "magnitude", 0.5, "layer", 2048, 0, learning_rate=1e-5)
    assert made.agent.metadata["config"]["learning_rate"] == 1e-5
    assert made.agent.metadata["pruning"]["learning_rate"] == 1e-5
    with pytest.raises(ValueError, match="learning rate must be positive"):
        prune_and_finetune(agent, "magnitude", 0.5, "layer", 2048, 0, learning_rate=0.0)


def test_parts_make_a_union_of_products(tmp_path):
    path = tmp_path / "parts.toml"
    path.write_text("methods = ['magnitude']\nsparsities = [0.0, 0.5]\nfinetune_steps = 2048\n"
                    "eps = 0.1\n[[part]]\nenvs = ['CartPole-v1']\nseeds = [0, 1]\n"
                    "[[part]]\nenvs = ['Acrobot-v1']\nseeds = [0]\nscope = ['global', 'layer']\n")
    grid = load_grid(str(path))
    prune_jobs = [j.settings for j in expand(grid) if j.settings["kind"] == "prune"]
    assert sum(c["env_id"] == "CartPole-v1" for c in prune_jobs) == 4
    assert sum(c["env_id"] == "Acrobot-v1" for c in prune_jobs) == 3  # dense + 2 scopes


def test_pruning_during_training_is_controlled_by_the_untouched_agent(tmp_path):
    path = tmp_path / "in-training.toml"
    path.write_text(grid_text("methods = ['magnitude', 'in-training']")
                    .replace("sparsities = [0.0, 0.5]", "sparsities = [0.0, 0.5, 0.9]"))
    configs = [j.settings for j in expand(load_grid(str(path))) if j.settings["kind"] == "prune"]
    trained = [c for c in configs if c["method"] == "in-training"]
    assert [c["target_sparsity"] for c in trained] == [0.5, 0.9]
    assert all(c["finetune_steps"] == 0 and c["train_steps"] == 200_000 for c in trained)
    assert all(c["prune_window"] == [0.2, 0.75] for c in trained)
    dense = sorted(c["finetune_steps"] for c in configs if c["method"] == "dense")
    assert dense == [0, 2048]  # the base agent for in-training, the fine-tuned one for magnitude


def test_an_in_training_job_trains_from_scratch_and_prunes_in_its_window(tmp_path):
    from dataclasses import replace

    from pruningrl.agent import load_agent, save_agent
    from pruningrl.experiments.jobs import file_sha256
    from pruningrl.pruning import sparsity
    from pruningrl.zoo import load

    base = load("CartPole-v1/ppo/seed0")
    short = {**base.metadata["config"], "total_steps": 8 * 2048, "checkpoint_every": 100}
    small = tmp_path / "short.safetensors"
    save_agent(replace(base, metadata={**base.metadata, "config": short}), small)
    config = {"kind": "prune", "agent": str(small), "env_id": "CartPole-v1", "variant": "ppo",
              "seed": 0, "agent_sha256": file_sha256(small), "finetune_steps": 0, "eps": 0.1,
              "norm": "inf", "episodes": 2, "local_states": 50, "method": "in-training",
              "scope": "layer", "target_sparsity": 0.6, "train_steps": 8 * 2048,
              "prune_window": [0.2, 0.75]}
    out = run_job(config, [{"name": "none", "budget": None, "seed": 0}])
    assert out["result"]["sparsity"] == pytest.approx(0.6, abs=0.01)
    assert all(s == pytest.approx(0.6, abs=0.01) for s in out["result"]["layer_sparsity"])
    assert "train" in out["phases"] and "finetune" not in out["phases"]
    agent_file = tmp_path / "made.safetensors"
    agent_file.write_bytes(out["checkpoint"])
    made = load_agent(agent_file)
    assert made.metadata["steps"] == 8 * 2048 and made.metadata["pruning"]["window"] == [0.2, 0.75]
    # trained from scratch: nothing of the base agent's weights survives
    # from scratch: the first iteration's episodes are a fresh policy's (CartPole's cap is 500,
    # which the base agent reaches), not the base agent's
    assert made.metadata["curve"]["return"][0] < 100
    assert sparsity(base.policy) == 0.0  # and the base agent was left alone


def test_the_gradual_window_is_where_the_sparsity_ramps():
    import torch

    from pruningrl.policies import GaussianPolicy
    from pruningrl.pruning import schedule, sparsity

    policy = GaussianPolicy(11, 3, (64, 64))
    hook = schedule("gradual", 0.8, "global", window=(0.2, 0.75))
    seen = []
    for step in range(0, 101, 5):
        with torch.no_grad():
            hook(policy, step, 100)
        seen.append((step, sparsity(policy)))
    assert all(s == 0.0 for step, s in seen if step <= 20)
    assert 0.0 < dict(seen)[40] < 0.8
    assert all(s == pytest.approx(0.8, abs=1e-3) for step, s in seen if step >= 75)


def test_a_weak_learned_adversary_is_retried_once_with_a_new_seed_and_twice_the_budget(tmp_path):
    from pruningrl.experiments.jobs import AttackUnit, Job
    from pruningrl.experiments.sweep import plan, retries

    job = Job((("kind", "prune"),), (AttackUnit("none"), AttackUnit("optimal"),
                                     AttackUnit("paad", 500_000), AttackUnit("mad")))
    measured = {"none": {"mean_return": 3000.0}, "optimal": {"mean_return": 2750.0},
                "paad:n=500000": {"mean_return": 400.0}, "mad": {"mean_return": 2990.0}}
    again = retries(job, measured)
    assert [u.label for u in again] == ["optimal:n=2000000:s=1"]  # PA-AD bit; MAD learns nothing
    measured["optimal:n=2000000:s=1"] = {"mean_return": 2900.0}
    assert retries(job, measured) == again  # planned once: the retry of a retry is not asked for
    negative = {"none": {"mean_return": -80.0}, "optimal": {"mean_return": -87.0}}
    assert retries(job, negative)  # |-87 - -80| <= 0.1 * 80 on a task with negative returns

    grid = load_grid(str(_write(tmp_path, grid_text("attacks = ['none', 'optimal']"))))
    store = RecordStore(tmp_path / "out")
    control = next(j for j in expand(grid) if j.settings.get("method") == "dense")
    store.write({"id": control.id, "config": control.settings, "status": "done", "phases": {},
                 "provenance": [{"numeric_path": numeric_path()}],  # remade here if need be
                 "result": {"attacks": {"none": {"mean_return": 500.0},
                                        "optimal": {"mean_return": 480.0}}}})
    todo = next(p for p in plan(grid, store) if p.job.id == control.id)
    assert todo.status == "partial"  # the certificate unit, then the retry
    assert [u.label for u in todo.todo] == ["crown", "optimal:n=2000000:s=1"]
    assert owed_attacks(grid, store)[control.id] == {"crown", "optimal"}
    record = store.read(control.id)
    record["result"]["attacks"]["optimal:n=2000000:s=1"] = {"mean_return": 100.0}
    store.write(record)
    assert owed_attacks(grid, store)[control.id] == {"crown"}  # the retry ran: nothing owed


def _write(folder: Path, text: str) -> Path:
    path = folder / "grid.toml"
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------- sweeps


def test_the_smoke_grid_gives_equal_records_under_ray_and_local(smoke_local, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    summary = run_sweep(SMOKE, out, "ray", jobs=2, progress=False)
    assert summary.jobs_failed == 0
    ray_records = stable_records(out)
    assert ray_records == stable_records(smoke_local)
    assert all(r["provenance"][0]["executor"] == "ray" for r in RecordStore(out).records())


def test_a_second_run_runs_no_job(smoke_local, capsys):
    code = main(["sweep", "smoke", "--out", str(smoke_local), "--json", "--no-progress"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 0
    assert payload["jobs_run"] == 0 and payload["jobs_cached"] == payload["jobs_total"]
    assert set(payload) >= {"grid", "out", "jobs_total", "jobs_run", "jobs_cached",
                            "jobs_failed", "wall_time_s"}


def test_a_sweep_killed_with_sigkill_resumes_to_the_same_numbers(smoke_local, tmp_path):
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "pruningrl", "sweep", "smoke", "--out", str(out),
               "--jobs", "1", "--no-progress"]
    proc = subprocess.Popen(command, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "records").glob("*.json"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, as a power cut would
    proc.wait()
    done_before = len(list((out / "records").glob("*.json")))
    assert 2 <= done_before < len(expand(SMOKE)), "the kill must land mid-sweep"
    summary = run_sweep(SMOKE, out, "local", jobs=2, progress=False)
    assert summary.jobs_cached == done_before
    assert summary.jobs_run == summary.jobs_total - done_before
    assert stable_records(out) == stable_records(smoke_local)
    assert all(len(r["provenance"]) == 1 for r in RecordStore(out).records())  # each job once
    assert not list((out / "records").glob(".*.tmp"))


def test_a_killed_jobs_scratch_folder_is_removed_by_the_next_job(tmp_path, monkeypatch):
    from pruningrl.experiments.jobs import SCRATCH_PREFIX, remove_orphaned_scratch

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid now names no process (reaped), like a SIGKILLed worker's
    orphan = tmp_path / f"{SCRATCH_PREFIX}{dead.pid}-abcd1234"
    in_use = tmp_path / f"{SCRATCH_PREFIX}{os.getpid()}-efgh5678"
    unnamed = tmp_path / f"{SCRATCH_PREFIX}ijkl9012"  # no pid: cannot tell, so kept
    for folder in (orphan, in_use, unnamed):
        (folder / "attackers").mkdir(parents=True)
    assert remove_orphaned_scratch() == [orphan]
    assert not orphan.exists() and in_use.exists() and unnamed.exists()


def fail_one_job(config, attacks, checkpoint, cache_dir):
    """A job function that fails for the micro-pruned seed-1 job and runs the others."""
    if config.get("method") == "micro" and config.get("seed") == 1:
        raise RuntimeError("injected failure\nsecond line")
    return run_job(config, attacks, checkpoint, cache_dir)


def staged_fake_job(config, attacks, checkpoint, cache_dir):
    """A stand-in job: logs which units it was asked for; the optimal attack comes out weak."""
    values = {"none": 100.0, "mad": 50.0, "rs": 40.0, "optimal": 95.0, "paad": 10.0}
    labels = [AttackUnit(**a).label for a in attacks]
    with open(os.environ["STAGE_LOG"], "a") as log:
        log.write(f"{config.get('target_sparsity', '-')} {' '.join(labels)}\n")
    result = {"attacks": {label: {"returns": [values[label.split(":")[0]] - ("s=1" in label)],
                                  "mean_return": values[label.split(":")[0]] - ("s=1" in label)}
                          for label in labels if label != "crown"}}
    if "crown" in labels:  # the certificate unit, recorded beside the attacks
        result["crown"] = {"tv_mean": 0.5}
    return {"result": result, "phases": {}, "checkpoint": None}


@pytest.mark.parametrize(("clean", "attacked", "weak"), [
    (100.0, 95.0, True), (100.0, 90.0, True), (100.0, 89.0, False),  # took under a tenth
    (100.0, 190.0, True),  # an "attack" that raised the return failed too
    (-80.0, -85.0, True), (-80.0, -500.0, False), (-80.0, -20.0, True),  # negative returns
])
def test_a_learned_adversary_is_retried_when_it_took_under_a_tenth(clean, attacked, weak,
                                                                   tmp_path):
    from pruningrl.experiments.sweep import is_weak, retries

    assert is_weak(clean, attacked) is weak
    grid = load_grid(str(_write(tmp_path, grid_text("attacks = ['optimal']"))))
    job = next(j for j in expand(grid) if "optimal" in {u.name for u in j.attacks})
    measured = {"none": {"mean_return": clean}, "optimal": {"mean_return": attacked}}
    assert [u.label for u in retries(job, measured)] == (
        ["optimal:n=2000000:s=1"] if weak else [])


def test_a_sweep_runs_cheap_attacks_everywhere_then_rs_then_learned_adversaries(
        tmp_path, monkeypatch, capsys):
    log = tmp_path / "calls.txt"
    monkeypatch.setenv("STAGE_LOG", str(log))
    text = grid_text("attacks = ['mad', 'rs', 'optimal', 'paad']")
    grid = load_grid(str(_write(tmp_path, text)))
    summary = run_sweep(grid, tmp_path / "out", "local", jobs=1, progress=False,
                        job_function=staged_fake_job)
    calls = [line.split() for line in log.read_text().splitlines()]
    stages = [{stage_of(AttackUnit(label.split(":")[0])) for label in call[1:]}
              for call in calls]
    # the random-policy job, the dense control and the pruned point; then the two agents
    assert stages == [{"cheap"}] * 3 + [{"rs"}] * 2 + [{"learned"}] * 4
    assert [c[1:] for c in calls[-2:]] == [["optimal:n=2000000:s=1"]] * 2  # retries, last
    assert summary.jobs_run == 3 and summary.jobs_failed == 0
    assert all(p.status == "cached" for p in plan(grid, RecordStore(tmp_path / "out")))
    store = RecordStore(tmp_path / "out")  # a sweep killed between an attempt and its retry
    record = next(r for r in store.records() if "optimal:n=2000000:s=1" in r["result"]["attacks"])
    del record["result"]["attacks"]["optimal:n=2000000:s=1"]
    store.write(record)
    code = main(["sweep", str(_write(tmp_path, text)), "--out", str(tmp_path / "out"),
                 "--dry-run", "--json"])
    listed = {job["id"]: job["todo"] for job in json.loads(capsys.readouterr().out)["jobs"]}
    assert code == 0 and listed[record["id"]] == ["optimal:n=2000000:s=1"]  # the retry is owed


def test_a_series_retries_its_weak_attempts_before_the_next_series_starts(tmp_path,
                                                                          monkeypatch):
    """Two series (magnitude and micro-pruning to 50%, sharing the dense control): the first
    series' learned attempts and their retries all run before the second series' attempts, so
    that a sweep stopped between them leaves the first series complete."""
    from pruningrl.experiments.sweep import series_of

    log = tmp_path / "calls.txt"
    monkeypatch.setenv("STAGE_LOG", str(log))
    text = grid_text("methods = ['magnitude', 'micro']").replace(
        "\n", "\nattacks = ['mad', 'optimal']\n", 1)
    grid = load_grid(str(_write(tmp_path, text)))
    assert [len(group) for group in series_of(plan(grid, RecordStore(tmp_path / "x")))] == [
        3, 1]  # the random policy, the dense control and magnitude 50%; then micro 50%
    run_sweep(grid, tmp_path / "out", "local", jobs=1, progress=False,
              job_function=staged_fake_job)
    calls = [line.split() for line in log.read_text().splitlines()]
    learned = [call for call in calls if any(label.startswith("optimal") for label in call)]
    retry = "optimal:n=2000000:s=1"
    assert learned == [["0.0", "optimal"], ["0.5", "optimal"],  # series 1: attempts
                       ["0.0", retry], ["0.5", retry],  # ... and their retries
                       ["0.5", "optimal"], ["0.5", retry]]  # series 2


def test_a_failing_job_is_recorded_and_the_others_finish(smoke_local, tmp_path):
    out = tmp_path / "failing"
    summary = run_sweep(SMOKE, out, "local", jobs=2, progress=False, job_function=fail_one_job)
    assert summary.jobs_failed == 1 and summary.jobs_run == summary.jobs_total
    assert summary.failures[0]["error"] == "RuntimeError: injected failure"
    assert "micro (global) to 0.5" in summary.failures[0]["job"]
    records = RecordStore(out).records()
    assert sorted(r["status"] for r in records).count("done") == len(records) - 1
    again = run_sweep(SMOKE, out, "local", jobs=2, progress=False)
    assert again.jobs_run == 0 and again.jobs_failed == 1  # listed until retried
    assert again.failures[0]["not_retried"]
    retried = run_sweep(SMOKE, out, "local", jobs=2, progress=False, retry_failed=True)
    assert retried.jobs_run == 1 and retried.jobs_failed == 0
    assert stable_records(out) == stable_records(smoke_local)


def test_the_cli_exits_nonzero_and_lists_a_failure(tmp_path, capsys, monkeypatch):
    out = tmp_path / "cli-failing"
    RecordStore(out).write({"id": expand(SMOKE)[0].id, "status": "failed", "error": "boom",
                            "config": expand(SMOKE)[0].settings, "result": {}, "phases": {},
                            "provenance": []})
    code = main(["sweep", "smoke", "--out", str(out), "--no-progress", "--json"])
    captured = capsys.readouterr()
    payload = json.loads(captured.out)
    assert code == 1 and payload["jobs_failed"] == 1 and payload["failures"][0]["error"] == "boom"
    assert "--retry-failed" in captured.err


def test_new_attacks_run_only_the_new_units(smoke_local, tmp_path):
    out = tmp_path / "grow"
    path = tmp_path / "small.toml"
    text = (ROOT / "pruningrl" / "grids" / "smoke.toml").read_text()
    path.write_text(text.replace('attacks = ["none", "random", "mad"]', 'attacks = ["none"]'))
    first = run_sweep(load_grid(str(path)), out, "local", jobs=2, progress=False)
    assert first.jobs_failed == 0
    path.write_text(text)
    grown = run_sweep(load_grid(str(path)), out, "local", jobs=2, progress=False)
    assert grown.jobs_cached == 1  # only the random-policy job had all it needs
    records = {r["id"]: r for r in RecordStore(out).records()}
    for job_id, expected in stable_records(smoke_local).items():
        assert stable_part(records[job_id]) == expected
        phases = records[job_id]["phases"]
        if records[job_id]["config"]["kind"] == "prune":
            assert len(records[job_id]["provenance"]) == 2 and "evaluate:mad" in phases


def test_dry_run_lists_jobs_and_a_cost_from_measured_phases(smoke_local, tmp_path, capsys):
    code = main(["sweep", "smoke", "--out", str(tmp_path / "none-yet"), "--dry-run", "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 0 and payload["jobs_to_run"] == len(expand(SMOKE))
    assert payload["estimated_s"] > 0  # the shipped smoke records measured CartPole's phases
    assert not (tmp_path / "none-yet").exists()
    code = main(["sweep", "smoke", "--out", str(smoke_local), "--dry-run", "--json"])
    assert json.loads(capsys.readouterr().out)["jobs_to_run"] == 0


# ------------------------------------------------------------------------------- results


def test_results_of_the_shipped_smoke_grid(capsys):
    code = main(["results", "smoke", "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 0
    wanted = {"env_id", "variant", "seed", "method", "scope", "sparsity", "target_sparsity",
              "finetune_steps", "attack", "eps", "mean_return", "std_return", "episodes",
              "certified_tv", "certified_radius", "local_tv"}
    assert payload["rows"] and all(wanted <= set(row) for row in payload["rows"])
    assert {row["attack"] for row in payload["rows"]} == {"none", "random", "mad"}
    assert len(payload["sweet_spots"]) == 2
    spent = payload["compute_s"]  # every phase of every record, none counted twice
    records = RecordStore(SHIPPED_RESULTS / "smoke").records()
    assert sum(spent.values()) == pytest.approx(sum(sum(r["phases"].values()) for r in records))
    assert {"finetune", "certify", "evaluate:none", "evaluate:mad"} <= set(spent)
    per_point = payload["cost_per_point"]  # the same seconds, split by point
    assert sum(c["total_h"] for c in per_point.values()) * 3600 == pytest.approx(
        sum(spent.values()))
    assert {"none", "mad", "certify"} <= set(per_point)
    budgets = sorted({r["config"]["finetune_steps"] for r in records
                      if r["config"]["kind"] == "prune"})
    assert [k for k in per_point if k.startswith("finetune")] == [
        f"finetune {b:,d} steps" for b in budgets]
    done = [r for r in records if r["status"] == "done" and "evaluate:mad" in r["phases"]]
    assert per_point["mad"]["points"] == len(done)
    assert per_point["mad"]["median_min"] == pytest.approx(
        np.median([r["phases"]["evaluate:mad"] / 60 for r in done]))
    code = main(["results", "smoke"])
    text = capsys.readouterr().out
    assert code == 0 and "sweet spots:" in text and "CartPole-v1" in text
    assert "compute spent:" in text and "cost of one point" in text


def test_results_of_nothing_is_one_line(capsys, tmp_path):
    assert main(["results", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_the_shipped_smoke_records_reproduce_with_todays_code():
    """Drift guard: re-run one shipped job from its recorded config. The smoke records are made
    in the portable numeric mode, so the comparison is exact, on any CPU."""
    store = RecordStore(SHIPPED_RESULTS / "smoke")
    record = next(r for r in store.records() if r["config"].get("method") == "magnitude")
    assert {path["mode"] for path in numeric_paths(record)} == {"portable"}
    attacks = [{"name": label, "budget": None, "seed": 0}
               for label in [*record["result"]["attacks"], "crown"]]
    again = run_job(record["config"], attacks)
    agreement = compare(record, again["result"])
    assert agreement.comparison == "exact" and agreement.agrees, agreement.differences
    assert set(record["result"]) <= set(again["result"])  # every recorded field, re-made


def _series(scores: dict[float, list[float]], clean_dense: float = 100.0) -> list[dict]:
    """Synthetic records whose clean return and worst attack give the named scores."""
    records = [{"id": "r", "status": "done", "config": {"kind": "random_policy",
                "env_id": "T", "episodes": 1}, "result": {"attacks": {"none": {"returns": [0.0]}}}}]
    for s, per_seed in scores.items():
        for seed, score in enumerate(per_seed):
            method = "dense" if s == 0 else "magnitude"
            attacked = 2 * score * clean_dense - clean_dense  # clean stays at the control's
            records.append({"id": f"{s}-{seed}", "status": "done", "config": {
                "kind": "prune", "env_id": "T", "variant": "ppo", "seed": seed,
                "method": method, "scope": None if s == 0 else "global",
                "target_sparsity": s, "finetune_steps": 1, "eps": 0.1, "norm": "inf",
                "episodes": 1}, "result": {
                "sparsity": s, "layer_sparsity": [s], "certified_tv": 0.5,
                "certified_radius": 0.1, "local_tv": 0.1, "lipschitz": 1.0,
                "constant_policy": False, "discrete": False,
                "attacks": {"none": {"returns": [clean_dense]},
                            "mad": {"returns": [attacked]}}}})
    return records


def test_the_sweet_spot_follows_its_definition():
    found = sweet_spots(_series({0.0: [0.6, 0.6, 0.6], 0.5: [0.7, 0.65, 0.72]}))
    assert found[0]["verdict"] == "candidate" and found[0]["sweet_spot"] == 0.5
    assert found[0]["gain_min"] == pytest.approx(0.05)
    assert found[0]["gain_median"] == pytest.approx(0.1)
    assert found[0]["gain_spread"] == pytest.approx(0.07)
    one_seed_loses = sweet_spots(_series({0.0: [0.6, 0.6, 0.6], 0.5: [0.7, 0.55, 0.72]}))
    assert one_seed_loses[0]["verdict"] == "none here"
    within_spread = sweet_spots(_series({0.0: [0.6, 0.6, 0.6], 0.5: [0.7, 0.65, 0.9]}))
    assert within_spread[0]["gain_min"] > 0 and within_spread[0]["verdict"] == "none here"
    dense_best = sweet_spots(_series({0.0: [0.6, 0.6, 0.6], 0.5: [0.5, 0.5, 0.9]}))
    assert dense_best[0]["sweet_spot"] == 0.0 and dense_best[0]["verdict"] == "none here"
    partial = _series({0.0: [0.6, 0.6, 0.6], 0.5: [0.7, 0.65, 0.9], 0.7: [0.9, 0.9, 0.9]})
    partial = [r for r in partial if r["id"] != "0.7-2"]  # one point not measured yet
    assert sweet_spots(partial)[0]["verdict"] == "incomplete"
    # a seed not started at all: only the grid knows it is missing
    two_seeds = _series({0.0: [0.6, 0.6], 0.5: [0.7, 0.68]})
    assert sweet_spots(two_seeds)[0]["verdict"] == "candidate"
    key = ("T", "ppo", "magnitude", "global", 1, 0.1, "inf", 1, None, None)
    wanted = {key: {(s, seed) for s in (0.0, 0.5) for seed in (0, 1, 2)}}
    judged = sweet_spots(two_seeds, wanted)[0]
    assert judged["verdict"] == "incomplete" and judged["reason"].startswith("2 of 6 points")


def test_a_categorical_series_is_scored_by_its_learned_adversaries_once_they_ran_everywhere():
    records = _series({0.0: [0.6, 0.6, 0.6], 0.5: [0.7, 0.65, 0.72]})
    for r in records:
        if r["config"]["kind"] == "prune":
            r["result"]["discrete"] = True
            r["result"]["attacks"]["optimal"] = {"returns": [0.0]}  # the random policy's
    under_all = sweet_spots(records)[0]
    assert under_all["score_attacks"] == ["mad", "optimal"]
    # every point held at the random policy's return: nothing to judge at this radius
    assert under_all["median_attacked"] == [0.0, 0.0] and under_all["verdict"] == "uninformative"
    cheap = sweet_spots(records, attacks=("random", "critic", "mad"))[0]
    assert cheap["score_attacks"] == ["mad"] and cheap["verdict"] == "candidate"
    assert sweet_spots(records, attacks=("rs",))[0]["verdict"] == "incomplete"


def test_an_attack_a_point_still_owes_stays_out_of_the_score():
    """A learned adversary measured at every point, but owed a retry at one (its first attempt
    was weak), enters the score only once the retry has run."""
    records = _series({0.0: [0.6, 0.6, 0.6], 0.5: [0.7, 0.65, 0.72]})
    for r in records:
        if r["config"]["kind"] == "prune":
            r["result"]["discrete"] = True
            r["result"]["attacks"]["optimal"] = {"returns": [50.0]}
    assert sweet_spots(records)[0]["score_attacks"] == ["mad", "optimal"]
    owed = {"0.5-1": {"optimal"}, "0.0-2": set()}
    waiting = sweet_spots(records, owed=owed)[0]
    assert waiting["score_attacks"] == ["mad"] and waiting["verdict"] == "candidate"
    owed["0.5-1"] = {"mad"}  # any attack a point owes is out, the cheap ones too
    assert sweet_spots(records, owed=owed)[0]["score_attacks"] == ["optimal"]
    assert sweet_spots(records, owed={"0.5-1": set()})[0]["score_attacks"] == ["mad", "optimal"]


def test_one_attacked_point_above_the_floor_makes_a_series_judged_again():
    """A series is uninformative only while every attacked return normalizes below 0.05: one
    point at 0.2 of the control makes it judged again."""
    records = _series({0.0: [0.6, 0.6, 0.6], 0.5: [0.7, 0.65, 0.72]})
    held = [r for r in records if r["config"]["kind"] == "prune"]
    for r in held:
        r["result"]["discrete"] = True
        r["result"]["attacks"]["optimal"] = {"returns": [0.0]}
    assert sweet_spots(records)[0]["verdict"] == "uninformative"
    held[-1]["result"]["attacks"]["optimal"] = {"returns": [20.0]}
    assert max(map(max, sweet_spots(records)[0]["per_seed"]["attacked"])) >= 0.05
    assert sweet_spots(records)[0]["verdict"] in ("candidate", "none here")


def test_one_seed_gets_no_verdict_and_the_better_scope_follows_its_gain():
    from pruningrl.experiments.results import best_gain, better_scope

    pilot = sweet_spots(_series({0.0: [0.6], 0.5: [0.9]}))[0]
    assert pilot["verdict"] == "one seed" and pilot["sweet_spot"] == 0.5
    # the dense controls of seeds that another series (another scope) runs do not join it
    shared = _series({0.0: [0.6, 0.6], 0.5: [0.9, 0.9]})
    shared = [r for r in shared if r["id"] != "0.5-1"]
    assert sweet_spots(shared)[0]["verdict"] == "one seed"
    assert best_gain(pilot) == (0.5, pytest.approx(0.3))
    layer = dict(pilot, scope="layer")
    smaller = sweet_spots(_series({0.0: [0.6], 0.5: [0.7]}))[0]
    assert better_scope([smaller, layer], "T", "magnitude") == "layer"
    assert better_scope([dict(smaller, scope="layer"), pilot], "T", "magnitude") == "global"
    # measured on three seeds later, the rule still reads seed 0 only
    grown = sweet_spots(_series({0.0: [0.6, 0.6, 0.6], 0.5: [0.7, 0.95, 0.95]}))[0]
    assert better_scope([grown, layer], "T", "magnitude") == "layer"
    with pytest.raises(ValueError, match="both scopes"):
        better_scope([pilot], "T", "magnitude")


def test_a_stronger_attack_rejudges_a_sweet_spot_where_it_ran():
    from pruningrl.experiments.results import rejudge, rows, stronger_attacks

    records = _series({0.0: [0.6, 0.6, 0.6], 0.5: [0.7, 0.65, 0.72], 0.7: [0.5, 0.5, 0.5]})
    entry = sweet_spots(records)[0]
    assert entry["verdict"] == "candidate" and entry["sweet_spot"] == 0.5

    def add(attack, sparsity, normalized, seeds=(0, 1, 2)):
        """The attack at ``sparsity`` with n(R) = ``normalized`` (R_rand 0, R_0 100)."""
        for r in records:
            config = r["config"]
            if config.get("target_sparsity") == sparsity and config.get("seed") in seeds:
                r["result"]["attacks"][attack] = {"returns": [100.0 * normalized]}

    assert rejudge(rows(records), entry, ["rs"])["verdict"] == "incomplete"
    add("rs", 0.0, 0.1)  # n(R_rs) = 0.1 at the dense control: worse than MAD's 0.2
    add("rs", 0.5, 0.15, seeds=(0, 1))
    judged = rejudge(rows(records), entry, ["rs"])
    assert judged["points"] == [0.0]  # seed 2 lacks rs at 0.5: the dense control alone
    add("rs", 0.5, 0.15, seeds=(2,))
    judged = rejudge(rows(records), entry, ["rs"])
    assert judged["points"] == [0.0, 0.5] and judged["attacks"] == ["mad", "rs"]
    assert judged["worst_attack"]["0/0"] == "rs"
    # dense score (1 + 0.1) / 2 = 0.55; at 0.5, clean 1 and worst min(MAD, 0.15)
    assert judged["median_attacked"][0] == pytest.approx(0.1)
    assert judged["median_attacked"][1] == pytest.approx(0.15)
    assert judged["gain_median"] == pytest.approx(0.025)
    assert judged["verdict"] == "candidate" and judged["gain_spread"] == pytest.approx(0.0)
    add("rs", 0.5, 0.05)  # robust Sarsa breaks the pruned agents harder than the dense ones
    judged = rejudge(rows(records), entry, ["rs"])
    assert judged["verdict"] == "none here" and judged["sweet_spot"] == 0.0
    found = stronger_attacks(rows(records), [entry])
    assert [(e["extra"], e["rejudged"]["verdict"]) for e in found] == [(["rs"], "none here")]


def test_a_learned_adversary_is_reported_by_its_strongest_attempt():
    from pruningrl.experiments.results import learned_attacks

    def row(label, value):
        return {"env_id": "Hopper-v5", "variant": "ppo", "method": "dense", "scope": None,
                "target_sparsity": 0.0, "seed": 0, "finetune_steps": 51200, "eps": 0.075,
                "certified_eps": 0.075, "finetune_lr": None, "attack": label.split(":")[0],
                "attack_label": label,
                "mean_return": value, "episodes": 50}

    table = [row("none", 3000.0), row("mad", 1500.0), row("optimal", 2900.0),
             row("optimal:n=2000000:s=1", 600.0), row("paad:n=500000", 400.0)]
    found = {e["attack"]: e for e in learned_attacks(table)}
    assert set(found) == {"optimal", "paad"}  # MAD is not a learned policy adversary
    assert found["optimal"]["mean_return"] == 600.0
    assert found["optimal"]["label"] == "optimal:n=2000000:s=1"
    assert found["optimal"]["attempts"] == {"optimal": 2900.0, "optimal:n=2000000:s=1": 600.0}
    assert found["optimal"]["clean_return"] == 3000.0

    table += [row("paad:n=1000000:s=1", 300.0)]  # its label sorts before the first attempt's
    table.sort(key=lambda r: r["attack_label"])  # as the sweep's table orders its rows
    found = {e["attack"]: e for e in learned_attacks(table)}
    assert list(found["paad"]["attempts"]) == ["paad:n=500000", "paad:n=1000000:s=1"]
    assert list(found["optimal"]["attempts"]) == ["optimal", "optimal:n=2000000:s=1"]


def test_each_fine_tuning_run_of_a_point_keeps_its_own_learned_attempts():
    """A replication fine-tunes a point twice: its two runs are two victims, each with its own
    clean return and attempts, never one entry whose same-labelled attempts overwrite."""
    from pruningrl.experiments.results import attack_reliability, learned_attacks

    def row(finetune_seed, label, value):
        return {"env_id": "Acrobot-v1", "variant": "sappo-convex", "method": "magnitude",
                "scope": "global", "target_sparsity": 0.6, "seed": 3, "finetune_steps": 10240,
                "eps": 0.141, "certified_eps": 0.141, "finetune_lr": None,
                "finetune_seed": finetune_seed, "attack": label.split(":")[0],
                "attack_label": label, "mean_return": value, "episodes": 50}

    table = [row(0, "none", -80.0), row(0, "paad", -500.0), row(0, "paad:s=1", -450.0),
             row(1, "none", -160.0), row(1, "paad", -170.0), row(1, "paad:s=1", -480.0)]
    for r in table:
        r["job_id"] = f"run{r['finetune_seed']}"
    found = sorted(learned_attacks(table), key=lambda e: e["finetune_seed"])
    assert [e["finetune_seed"] for e in found] == [0, 1]
    assert [e["job_id"] for e in found] == ["run0", "run1"]
    assert [e["clean_return"] for e in found] == [-80.0, -160.0]
    assert [e["attempts"] for e in found] == [{"paad": -500.0, "paad:s=1": -450.0},
                                            {"paad": -170.0, "paad:s=1": -480.0}]
    reliability = attack_reliability(found)["paad"]
    assert reliability["points"] == 2
    assert reliability["first_attempt_failed"] == 0.5  # run 1's first attempt took 10 of 160
    assert reliability["median_spread"] is None  # no random policy's return to scale by

    # on the normalized scale: gaps of 50 over 420 above R_rand = -500, and 310 over 340
    found = learned_attacks(table, {("Acrobot-v1", 50): -500.0})
    assert [e["random_return"] for e in found] == [-500.0, -500.0]
    spread = attack_reliability(found)["paad"]["median_spread"]
    assert spread == pytest.approx((50 / 420 + 310 / 340) / 2)


def test_a_run_is_settled_only_when_its_series_and_its_dense_controls_owe_nothing():
    """``settled_series`` over a shipped grid's jobs: a series with a job not yet done, or one
    owing an attack, is unsettled; a pruned run also needs its task's dense controls settled."""
    from pruningrl.experiments import load_grid
    from pruningrl.experiments.jobs import expand
    from pruningrl.experiments.results import mark_settled, settled_series

    grid = load_grid("categorical-strong-eps")
    jobs = {job.id: job.settings for job in expand(grid)}

    def series(c):
        return (c["env_id"], c.get("variant"), c.get("method"), c.get("scope"))

    everything = {series(c) for c in jobs.values()}
    owed = {job_id: set() for job_id in jobs}
    assert settled_series(grid, owed) == everything
    pruned = next(i for i, c in jobs.items() if c.get("method") == "micro")
    dense = next(i for i, c in jobs.items() if c.get("method") == "dense"
                 and c["env_id"] == jobs[pruned]["env_id"])
    owed[pruned] = {"paad"}
    assert settled_series(grid, owed) == everything - {series(jobs[pruned])}
    del owed[pruned]  # not done yet
    assert settled_series(grid, owed) == everything - {series(jobs[pruned])}
    owed[pruned] = set()
    del owed[dense]
    settled = settled_series(grid, owed)
    entry = {k: jobs[pruned].get(k) for k in ("env_id", "variant", "method", "scope")}
    other = {**entry, "env_id": next(e for e, *_ in everything if e != entry["env_id"])}
    marked = mark_settled([entry, other, {**entry, "method": "dense", "scope": None}], settled)
    assert [e["settled"] for e in marked] == [False, True, False]
    assert mark_settled([entry], None)[0]["settled"] is None


def test_the_certified_radius_is_where_the_certificate_reaches_one_half():
    from pruningrl.bounds import certified_tv
    from pruningrl.policies import GaussianPolicy
    from pruningrl.pruning import magnitude_prune

    policy = GaussianPolicy(5, 2)
    radius = certified_radius(policy)
    assert certified_tv(policy, radius) <= 0.5 < certified_tv(policy, radius * (1 + 1e-6))
    magnitude_prune(policy, 0.6, scope="layer")
    assert certified_radius(policy) >= radius  # pruning cannot shrink it
    magnitude_prune(policy, 0.99, scope="layer")  # every output weight gone: a constant policy
    policy.net[-1].weight_mask.zero_()
    from pruningrl.policies import refresh_pruned_weights

    refresh_pruned_weights(policy)
    assert certified_radius(policy) is None  # no eps moves a constant policy


def test_a_shipped_hopper_attack_record_reproduces_with_todays_code():
    """Drift guard on a MuJoCo record the attacks chapter shows: Hopper-v5/ppo/seed0 clean and
    under the random attack, re-run from its recorded config. The record predates the numeric
    path ("unrecorded, single host"), so the comparison is statistical: each mean within 3
    standard errors of the recorded episodes, the weight-only certificates to 1e-6."""
    store = RecordStore(SHIPPED_RESULTS / "attacks-hopper")
    record = next(r for r in store.records() if r["config"].get("agent") == "Hopper-v5/ppo/seed0")
    assert numeric_paths(record)[0] == UNRECORDED  # the run that made the returns compared
    again = run_job(record["config"], [{"name": name, "budget": None, "seed": 0}
                                       for name in ("none", "random")])["result"]
    subset = {**record, "result": {**record["result"], "attacks": {
        name: record["result"]["attacks"][name] for name in ("none", "random")}}}
    agreement = compare(subset, again)
    assert agreement.comparison == "statistical"
    assert agreement.agrees, agreement.differences
    assert {"certified_tv", "lipschitz", "certified_radius"}.isdisjoint(agreement.not_judged)
    assert agreement.not_judged == ["crown", "local_states", "local_tv", "local_tv_max"]


def test_shipped_data_does_not_make_a_checkout_dirty(tmp_path):
    from pruningrl.reproducibility import checkout_commit

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    for name in ("pruningrl/core.py", "pruningrl/agents/T/ppo/seed0.json",
                 "pruningrl/results/sweeps/g/records/a.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("0\n")
    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "x", "--allow-empty")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "y")
    clean = checkout_commit(tmp_path)
    assert clean and not clean.endswith(".dirty")
    (tmp_path / "pruningrl/agents/T/ppo/seed0.json").write_text("1\n")  # a retrained agent
    (tmp_path / "pruningrl/results/sweeps/g/records/a.json").write_text("1\n")
    assert checkout_commit(tmp_path) == clean
    (tmp_path / "pruningrl/core.py").write_text("1\n")  # code
    assert checkout_commit(tmp_path) == clean + ".dirty"
    assert checkout_commit(tmp_path / "nowhere") is None


def test_every_job_gets_the_crown_certificate_unit_and_rows_carry_it(smoke_local, tmp_path):
    from pruningrl.experiments.results import CROWN_COLUMNS, rows

    records = [r for r in RecordStore(smoke_local).records() if r["config"]["kind"] == "prune"]
    for record in records:
        crown, eps = record["result"]["crown"], record["config"]["eps"]
        sweep = crown["eps_sweep"]
        assert len(sweep["eps"]) == 8 and sweep["eps"][0] == pytest.approx(0.001)
        assert sweep["eps"][-1] == pytest.approx(2 * eps)
        assert all(0.0 <= tv <= 1.0 for tv in sweep["tv_mean"])
        for criterion in ("radius_tv", "radius_action"):  # CartPole: both radii
            radius = crown[criterion]
            assert 0.0 <= radius["q25"] <= radius["median"] <= radius["q75"] <= 2 * eps
        assert 0.0 <= crown["certified_action_fraction"] <= 1.0
        assert crown["states"] == record["config"]["local_states"]
        assert "crown" in record["provenance"][-1]["units"]
        bound = crown["certified_return"]  # the evaluated episodes, attacked or not
        assert len(bound["certified"]) == record["config"]["episodes"]
        assert bound["clean"] == record["result"]["attacks"]["none"]["returns"]
        for attack in record["result"]["attacks"].values():
            assert all(c <= a for c, a in zip(bound["certified"], attack["returns"], strict=True))
    table = rows(records)
    assert all(r["crown_tv"] is not None for r in table)
    assert set(CROWN_COLUMNS) <= set(table[0])
    # a record made before the unit existed gets the unit alone, its other numbers kept
    out = tmp_path / "before"
    shutil.copytree(smoke_local, out)
    store = RecordStore(out)
    record = next(r for r in store.records() if r["config"]["kind"] == "prune")
    crown = record["result"].pop("crown")
    store.write(record)
    planned = {p.job.id: p for p in plan(SMOKE, store)}
    assert [u.label for u in planned[record["id"]].todo] == ["crown"]
    run_sweep(SMOKE, out, "local", jobs=1, progress=False)
    again = store.read(record["id"])
    assert again["result"]["crown"] == crown  # same checkpoint, same states: same bits
    assert again["result"]["attacks"] == record["result"]["attacks"]


def test_a_job_without_its_agent_gets_new_units_only_where_it_can_be_remade(smoke_local,
                                                                           tmp_path):
    """A record whose checkpoint is gone: on the numeric path that made it the agent can be
    remade bit for bit, so new units run; from another path (here: unrecorded) they do not,
    since a re-fine-tuned agent would be another agent."""
    from pruningrl.experiments.sweep import UNREPLAYABLE

    out = tmp_path / "copy"
    shutil.copytree(smoke_local, out)
    store = RecordStore(out)
    record = next(r for r in store.records() if r["config"].get("method") == "magnitude")
    store.checkpoint_path(record["id"]).unlink()
    del record["result"]["crown"]
    store.write(record)
    planned = {p.job.id: p for p in plan(SMOKE, store)}
    assert [u.label for u in planned[record["id"]].todo] == ["crown"]  # same path: remade
    for run in record["provenance"]:
        run.pop("numeric_path")  # as the records made before the numeric path was recorded
    store.write(record)
    planned = {p.job.id: p for p in plan(SMOKE, store)}
    assert planned[record["id"]].status == UNREPLAYABLE and planned[record["id"]].todo == []
    summary = run_sweep(SMOKE, out, "local", jobs=1, progress=False)
    assert summary.jobs_without_agent == 1
    assert store.read(record["id"]) == record  # untouched


def test_the_strong_attack_stage_only_adds_attacks_to_the_sweet_spot_grids_jobs():
    """Its records join the sweet-spot grid's: every job it plans is one of that grid's."""
    strong = expand(load_grid("strong-attacks"))
    assert {job.id for job in strong} <= {job.id for job in expand(load_grid("sweet-spot"))}
    learned = {u.label for job in strong for u in job.attacks if u.name in ("paad", "optimal")}
    assert "paad:n=500000:s=1:lr=0.0001" in learned and "optimal:n=1000000:s=2:ent=0.01" in learned


def test_attack_reliability_counts_failed_attempts_as_the_sweet_spot_records_show():
    """On Hopper and Walker2d the optimal attack's first attempt failed at 13 of 24 points and
    its strongest at 10; PA-AD's at 7 and 3."""
    from pruningrl.experiments import load_results
    from pruningrl.experiments.results import attack_reliability

    learned = [e for e in load_results("sweet-spot")["learned_attacks"]
               if e["env_id"] in ("Hopper-v5", "Walker2d-v5")]
    found = attack_reliability(learned)
    counts = {name: (v["points"], round(v["first_attempt_failed"] * v["points"]),
                     round(v["strongest_attempt_failed"] * v["points"]))
              for name, v in found.items()}
    assert counts == {"optimal": (24, 13, 10), "paad": (24, 7, 3)}
    assert found["optimal"]["median_attempts"] == 2.0 and found["paad"]["median_spread"] > 0.1


def test_attack_reliability_judges_attempts_only_where_the_victim_is_breakable():
    """A point where every attempt is weak does not count against the attempts; at a point
    where one attempt took the return to 10 of 100, the other two (99 and 50) are one failure
    and one success: attempt_failed = 1/3."""
    from pruningrl.experiments.results import attack_reliability

    def entry(attempts: dict) -> dict:
        return {"attack": "paad", "clean_return": 100.0, "mean_return": min(attempts.values()),
                "attempts": attempts,
                "spread": max(attempts.values()) - min(attempts.values())}

    robust = entry({"paad:s=0": 99.0, "paad:s=1": 98.0})
    breakable = entry({"paad:s=0": 99.0, "paad:s=1": 10.0, "paad:s=2": 50.0})
    found = attack_reliability([robust, breakable])["paad"]
    assert found["points"] == 2 and found["strongest_attempt_failed"] == 0.5
    assert found["breakable_points"] == 1 and found["attempt_failed"] == pytest.approx(1 / 3)
    assert attack_reliability([robust])["paad"]["attempt_failed"] is None
