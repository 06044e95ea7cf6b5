"""The command line and agent checkpoints: the command-line contract, bad input, safe loading."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from pruningrl.agent import load_agent, save_agent
from pruningrl.cli import main
from pruningrl.evaluation import evaluate, visited_states
from pruningrl.ppo import PPOConfig, train
from pruningrl.pruning import magnitude_prune, sparsity
from pruningrl.zoo import list_agents, resolve

TINY = dict(env_id="CartPole-v1", steps_per_iteration=256, num_envs=4, minibatches=4,
            epochs=2, num_workers=0)


@pytest.fixture(scope="module")
def agent_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("agents") / "cartpole.safetensors"
    train(PPOConfig(total_steps=512, **TINY), out, progress=False)
    return out


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, out, err):
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("pruningrl: error: ")
    assert "Traceback" not in err


# ----------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_is_exact_and_small(agent_file):
    agent = load_agent(agent_file)
    states = torch.randn(32, 4)
    again = load_agent(save_agent(agent, agent_file.with_name("copy.safetensors")))
    torch.testing.assert_close(agent.policy(states), again.policy(states), rtol=0, atol=0)
    torch.testing.assert_close(agent.value(states), again.value(states), rtol=0, atol=0)
    np.testing.assert_array_equal(agent.obs_mean, again.obs_mean)
    assert again.metadata == agent.metadata
    assert agent_file.stat().st_size < 60_000


def test_a_pruned_checkpoint_keeps_its_masks(agent_file, tmp_path):
    agent = load_agent(agent_file)
    magnitude_prune(agent.policy, 0.6, scope="layer")
    loaded = load_agent(save_agent(agent, tmp_path / "pruned.safetensors"))
    assert abs(sparsity(loaded.policy) - 0.6) < 0.01
    assert all(hasattr(layer, "weight_mask") for layer in loaded.policy.net
               if isinstance(layer, torch.nn.Linear))


def test_bad_checkpoints_raise_value_errors(agent_file, tmp_path):
    with pytest.raises(ValueError, match="no agent checkpoint"):
        load_agent(tmp_path / "missing.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="not a readable"):
        load_agent(garbage)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(agent_file.read_bytes()[:-100])
    with pytest.raises(ValueError):
        load_agent(truncated)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(3)}, str(foreign))
    with pytest.raises(ValueError, match="not a pruningrl agent"):
        load_agent(foreign)


def test_a_mask_that_does_not_fit_is_refused(agent_file, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    tensors = load_file(str(agent_file))
    with safe_open(str(agent_file), framework="pt") as handle:
        metadata = handle.metadata()
    tensors["policy.net.0.weight_orig"] = tensors.pop("policy.net.0.weight")
    tensors["policy.net.0.weight_mask"] = torch.ones(3, 3)
    bad = tmp_path / "badmask.safetensors"
    save_file(tensors, str(bad), metadata=metadata)
    with pytest.raises(ValueError, match="mask"):
        load_agent(bad)


# ----------------------------------------------------------------------------- evaluation


def test_evaluation_does_not_depend_on_the_number_of_envs(agent_file):
    agent = load_agent(agent_file)
    one = evaluate(agent, episodes=4, seed=3, num_envs=1)
    four = evaluate(agent, episodes=4, seed=3, num_envs=4)
    assert one.returns == four.returns and one.lengths == four.lengths
    assert evaluate(agent, episodes=2, seed=3).returns == one.returns[:2]


def test_visited_states_are_normalized_and_counted(agent_file):
    states = visited_states(load_agent(agent_file), 300, seed=0)
    assert states.shape == (300, 4) and states.abs().max() <= 10


# ----------------------------------------------------------------------------- the CLI


def test_agents_lists_shipped_agents_as_json(capsys):
    code, out, _ = run(capsys, "agents", "--json")
    assert code == 0
    payload = json.loads(out)
    assert [a["id"] for a in payload["agents"]] == [a["id"] for a in list_agents()]
    for entry in payload["agents"]:
        assert Path(entry["path"]).is_file() and entry["train_command"].startswith("python -m")


def test_shipped_agents_load_and_carry_their_provenance():
    agents = list_agents()
    assert agents, "no shipped agents"
    for entry in agents:
        agent = load_agent(resolve(entry["id"]))
        assert agent.env_id == entry["env_id"] and agent.metadata["seed"] == entry["seed"]
        assert agent.metadata["steps"] == entry["steps"]
        assert entry["code_version"] == agent.metadata["code_version"]


def test_evaluate_and_certify_print_one_json_object(capsys, agent_file):
    code, out, _ = run(capsys, "evaluate", "--agent", str(agent_file), "--episodes", "3",
                       "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["episodes"] == 3 and {"mean_return", "std_return"} <= set(payload)
    for method in ("global", "local"):
        code, out, _ = run(capsys, "certify", "--agent", str(agent_file), "--eps", "0.05",
                           "--method", method, "--states", "50", "--json")
        assert code == 0
        payload = json.loads(out)
        assert {"certified_tv", "lipschitz", "sparsity"} <= set(payload)
        assert 0 <= payload["certified_tv"] <= 1 and payload["sparsity"] == 0.0


def test_train_refuses_to_overwrite_and_resumes_only_what_exists(capsys, agent_file):
    before = agent_file.read_bytes()
    result = run(capsys, "train", "--env", "CartPole-v1", "--steps", "256", "--out",
                 str(agent_file))
    assert_one_line_error(*result)
    assert agent_file.read_bytes() == before  # nothing already written is lost
    assert_one_line_error(*run(capsys, "train", "--env", "CartPole-v1", "--out",
                               str(agent_file), "--resume"))


@pytest.mark.parametrize("argv", [
    ["train", "--env", "NoSuchEnv-v9", "--out", "x.safetensors"],
    ["train", "--env", "CartPole-v1", "--steps", "0", "--out", "x.safetensors"],
    ["train", "--env", "CartPole-v1", "--steps", "-5", "--out", "x.safetensors"],
    ["train", "--env", "CartPole-v1", "--sa-reg", "0.1", "--out", "x.safetensors"],
    ["train", "--env", "CartPole-v1", "--eps", "0.1", "--out", "x.safetensors"],
    ["evaluate", "--agent", "NoSuchEnv-v9/ppo/seed0"],
    ["evaluate", "--agent", "no/such/file.safetensors"],
    ["evaluate", "--agent", "CartPole-v1/ppo/seed0", "--eps", "0.1"],
    ["evaluate", "--agent", "CartPole-v1/ppo/seed0", "--attack", "nonsense", "--eps", "0.1"],
    ["evaluate", "--agent", "CartPole-v1/ppo/seed0", "--attack", "mad", "--eps", "-0.1"],
    ["evaluate", "--agent", "CartPole-v1/ppo/seed0", "--attack", "mad", "--eps", "0.1",
     "--attack-budget", "1000"],
    ["evaluate", "--agent", "CartPole-v1/ppo/seed0", "--attack", "rs", "--eps", "0.1",
     "--attack-budget", "0"],
    ["evaluate", "--agent", "CartPole-v1/ppo/seed0", "--attack", "optimal", "--eps", "0.1",
     "--norm", "1"],
    ["certify", "--agent", "CartPole-v1/ppo/seed0", "--eps", "-0.1"],
    ["certify", "--agent", "CartPole-v1/ppo/seed0", "--eps", "0.1", "--method", "magic"],
    ["frobnicate"],
])
def test_bad_input_gets_one_line_and_status_2(capsys, argv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(*run(capsys, *argv))
    assert not (tmp_path / "x.safetensors").exists()


def test_corrupt_and_foreign_checkpoints_get_one_line(capsys, tmp_path):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"definitely not safetensors")
    assert_one_line_error(*run(capsys, "evaluate", "--agent", str(garbage)))
    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(3)}, str(foreign))
    assert_one_line_error(*run(capsys, "certify", "--agent", str(foreign), "--eps", "0.1"))


def test_python_dash_m_entry_point(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pruningrl", "evaluate", "--agent",
                           str(tmp_path / "nothing.safetensors")], capture_output=True, text=True)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("pruningrl: error:") and done.stderr.count("\n") == 1


# ----------------------------------------------------------------------------- attacks


def test_attacks_stay_in_the_ball_and_beat_random_noise(agent_file):
    from pruningrl.attacks import critic_attack, mad_attack, random_attack
    from pruningrl.ppo import policy_divergence

    agent = load_agent(agent_file)
    states = visited_states(agent, 200, seed=0)
    generator = torch.Generator().manual_seed(0)
    eps = 0.2
    noisy = random_attack(states, eps, generator=generator)
    low_value = critic_attack(agent.value, states, eps, generator=generator)
    far = mad_attack(agent.policy, states, eps, generator=generator)
    for attacked in (noisy, low_value, far):
        assert float((attacked - states).abs().max()) <= eps * (1 + 1e-6)
    with torch.no_grad():
        assert agent.value(low_value).mean() < agent.value(noisy).mean()
        clean = agent.policy(states)
        assert (policy_divergence(agent.policy, clean, agent.policy(far)).mean()
                > policy_divergence(agent.policy, clean, agent.policy(noisy)).mean())


def test_attack_wrapper_hands_the_agent_the_attacked_state(agent_file):
    import gymnasium as gym

    from pruningrl.attack_suite import make_attack
    from pruningrl.attacks import AttackWrapper

    agent = load_agent(agent_file)
    attack = make_attack("random", agent, 0.1, seed=3)
    reference = make_attack("random", agent, 0.1, seed=3)
    env = AttackWrapper(gym.make("CartPole-v1"), agent, attack)
    raw, _ = env.unwrapped.reset(seed=1)
    wrapped, _ = env.reset(seed=1)
    expected = reference(agent.normalize(raw[None]))
    torch.testing.assert_close(agent.normalize(wrapped[None]), expected, rtol=0, atol=1e-5)
    env.close()


def test_evaluate_under_attack_from_the_cli(capsys, agent_file):
    code, out, _ = run(capsys, "evaluate", "--agent", str(agent_file), "--episodes", "2",
                       "--attack", "mad", "--eps", "0.1", "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["attack"] == "mad" and payload["eps"] == 0.1 and payload["episodes"] == 2


def test_a_learned_attacker_is_trained_once_and_reported_with_its_budget(capsys, agent_file,
                                                                         tmp_path):
    victim = tmp_path / "victim.safetensors"
    victim.write_bytes(agent_file.read_bytes())
    argv = ["evaluate", "--agent", str(victim), "--episodes", "2", "--attack", "optimal",
            "--eps", "0.1", "--attack-budget", "512", "--json"]
    code, out, _ = run(capsys, *argv)
    assert code == 0
    first = json.loads(out)
    assert first["attacker"]["budget"] == {"adversary_steps": 512}
    cached = sorted((tmp_path / "victim.attackers").rglob("optimal-*.safetensors"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    code, out, _ = run(capsys, *argv)
    assert code == 0 and cached[0].stat().st_mtime_ns == stamp
    assert json.loads(out)["mean_return"] == first["mean_return"]
