"""The command line and agent checkpoints: the command-line contract, bad input, safe loading."""

import json
import os
import stat
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


def test_certify_with_output_bounds_reports_the_fraction_certified(capsys):
    means = {}
    for method in ("local", "ibp", "crown", "alpha-crown"):
        code, out, _ = run(capsys, "certify", "--agent", "Hopper-v5/sappo/seed0", "--eps",
                           "0.075", "--method", method, "--states", "200", "--json")
        payload = json.loads(out)
        assert code == 0 and payload["states"] == 200 and 0 <= payload["certified_fraction"] <= 1
        means[method] = payload["certified_tv"]
    assert means["alpha-crown"] <= means["crown"] < 0.5 < means["local"]
    assert payload["action_deviation"] <= payload["action_deviation_max"]
    code, out, _ = run(capsys, "certify", "--agent", "CartPole-v1/ppo/seed0", "--eps", "0.1",
                       "--method", "crown", "--states", "100", "--json")
    assert 0 < json.loads(out)["certified_action_fraction"] < 1


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
    ["prune", "--agent", "CartPole-v1/ppo/seed0", "--method", "magnitude", "--sparsity", "0.5",
     "--finetune-steps", "2048", "--finetune-lr", "-1e-4", "--out", "x.safetensors"],
    ["prune", "--agent", "CartPole-v1/ppo/seed0", "--method", "magnitude", "--sparsity", "0.5",
     "--finetune-steps", "2048", "--finetune-lr", "nan", "--out", "x.safetensors"],
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


# ----------------------------------------------------------------------------- reliability
# One test per defect found on the command line; each fails without its fix.


@pytest.mark.parametrize("argv", [
    ["evaluate", "--agent", "CartPole-v1/ppo/seed0", "--episodes", "1", "--seed", "-1"],
    ["certify", "--agent", "CartPole-v1/ppo/seed0", "--eps", "0.1", "--method", "local",
     "--seed", "-1"],
    ["prune", "--agent", "CartPole-v1/ppo/seed0", "--method", "magnitude", "--sparsity", "0.5",
     "--seed", "-1", "--out", "x.safetensors"],
    ["train", "--env", "CartPole-v1", "--seed", "-1", "--out", "x.safetensors"],
])
def test_a_negative_seed_is_bad_input(capsys, argv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(*run(capsys, *argv))
    assert not (tmp_path / "x.safetensors").exists()


def test_the_api_refuses_a_negative_seed(agent_file):
    agent = load_agent(agent_file)
    for call in (lambda: evaluate(agent, episodes=1, seed=-1),
                 lambda: visited_states(agent, 10, seed=-1),
                 lambda: PPOConfig(seed=-1, **TINY).validate()):
        with pytest.raises(ValueError, match="seed"):
            call()


def _missing_dependency(**kwargs):
    import gymnasium as gym

    raise gym.error.DependencyNotInstalled("the simulator is not installed: pip install simx")


@pytest.fixture()
def env_with_missing_dependency():
    import gymnasium as gym

    gym.register("MissingDependency-v0", entry_point=_missing_dependency)
    yield "MissingDependency-v0"
    del gym.envs.registry["MissingDependency-v0"]


def test_an_env_whose_dependency_is_missing_is_bad_input(capsys, tmp_path, monkeypatch,
                                                         env_with_missing_dependency):
    monkeypatch.chdir(tmp_path)
    for env_id in ("CarRacing-v3", env_with_missing_dependency):  # CarRacing: Box2D or pixels
        code, out, err = run(capsys, "train", "--env", env_id, "--steps", "256", "--out",
                             "x.safetensors")
        assert_one_line_error(code, out, err)
    assert "pip install simx" in err
    assert not (tmp_path / "x.safetensors").exists()


def test_an_unexpected_failure_is_one_line_with_a_hint(capsys, monkeypatch):
    from pruningrl import cli

    def broken(args):
        raise RuntimeError("something inside broke\nsecond line")

    monkeypatch.setitem(cli.COMMANDS, "agents", broken)
    monkeypatch.delenv("PRUNINGRL_DEBUG", raising=False)
    code, out, err = run(capsys, "agents")
    assert code == 1 and out == "" and err.count("\n") == 1
    assert "RuntimeError: something inside broke" in err and "PRUNINGRL_DEBUG=1" in err
    monkeypatch.setenv("PRUNINGRL_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main(["agents"])


@pytest.mark.parametrize("bad", [["--env", "CarRacing-v3"], ["--env", "NoSuchEnv-v9"],
                                 ["--env", "CartPole-v1", "--seed", "-1"],
                                 ["--env", "CartPole-v1", "--set", "no_such_setting=1"],
                                 ["--env", "CartPole-v1", "--sparsity", "0.5"],
                                 ["--env", "CartPole-v1", "--prune-window", "0.2", "0.75"],
                                 ["--env", "CartPole-v1", "--prune-method", "gradual",
                                  "--sparsity", "0.5", "--prune-window", "0.8", "0.2"],
                                 ["--env", "CartPole-v1", "--prune-method", "gradual",
                                  "--sparsity", "0.5", "--prune-window", "nan", "0.5"]])
def test_train_force_checks_everything_before_deleting_the_training_state(capsys, tmp_path,
                                                                          bad):
    from pruningrl.ppo import train_state_path

    out = tmp_path / "run.safetensors"
    out.write_bytes(b"an interrupted run's checkpoint")
    train_state_path(out).write_bytes(b"its training state")
    assert_one_line_error(*run(capsys, "train", *bad, "--steps", "256", "--force", "--out",
                               str(out)))
    assert train_state_path(out).read_bytes() == b"its training state"
    assert out.read_bytes() == b"an interrupted run's checkpoint"


def _damaged_copy(source, target, **changes):
    from safetensors import safe_open
    from safetensors.torch import load_file

    tensors = load_file(str(source))
    with safe_open(str(source), framework="pt") as handle:
        metadata = handle.metadata()
    for name, (index, value) in changes.items():
        tensors[name].view(-1)[index] = value
    save_file(tensors, str(target), metadata=metadata)
    return target


@pytest.mark.parametrize("name,value", [("policy.net.0.weight", float("nan")),
                                        ("value.net.2.bias", float("inf")),
                                        ("obs_norm.var", float("nan")),
                                        ("obs_norm.mean", float("-inf")),
                                        ("policy.log_std", float("nan"))])
def test_non_finite_weights_and_statistics_are_refused_at_load(capsys, tmp_path, monkeypatch,
                                                               name, value):
    monkeypatch.chdir(tmp_path)
    bad = _damaged_copy(resolve("Hopper-v5/ppo/seed0"), tmp_path / "nan.safetensors",
                        **{name: (0, value)})
    with pytest.raises(ValueError, match="NaN or infinite"):
        load_agent(bad)
    assert_one_line_error(*run(capsys, "certify", "--agent", str(bad), "--eps", "0.05",
                               "--json"))
    assert_one_line_error(*run(capsys, "evaluate", "--agent", str(bad), "--episodes", "1"))
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()


def test_json_output_is_strict(capsys):
    from pruningrl.cli import _emit

    with pytest.raises(ValueError):
        _emit({"certified_tv": float("nan")}, True, [])


def test_a_dead_policy_is_flagged(capsys, tmp_path):
    out = tmp_path / "dead.safetensors"
    code, stdout, err = run(capsys, "prune", "--agent", "CartPole-v1/ppo/seed0", "--method",
                            "magnitude", "--sparsity", "0.95", "--out", str(out), "--json")
    assert code == 0
    payload = json.loads(stdout)
    assert payload["constant_policy"] is True and payload["certified_tv"] == 0.0
    assert err.count("pruningrl: warning: the policy is constant") == 1
    code, stdout, err = run(capsys, "certify", "--agent", str(out), "--eps", "0.1", "--json")
    assert code == 0 and json.loads(stdout)["constant_policy"] is True and "constant" in err
    code, stdout, err = run(capsys, "certify", "--agent", "CartPole-v1/ppo/seed0", "--eps",
                            "0.1", "--json")
    assert json.loads(stdout)["constant_policy"] is False and err == ""


def test_the_readme_first_snippet_keeps_a_live_policy():
    import contextlib
    import io
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", readme, re.S)[1]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(snippet, "README.md", "exec"), {})  # the README's own code
    lines = printed.getvalue().splitlines()
    pruned_sparsity, pruned_tv = map(float, lines[1].split())
    assert pruned_sparsity == pytest.approx(0.5, abs=0.01) and pruned_tv > 0, lines
    assert lines[2] == "False", lines


def test_attack_none_is_no_attack(capsys):
    code, out, _ = run(capsys, "evaluate", "--agent", "CartPole-v1/ppo/seed0", "--episodes",
                       "1", "--attack", "none", "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["attack"] == "none" and payload["eps"] is None and payload["norm"] is None
    assert_one_line_error(*run(capsys, "evaluate", "--agent", "CartPole-v1/ppo/seed0",
                               "--attack", "none", "--eps", "0.1"))


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_checkpoints_follow_the_umask(agent_file, tmp_path, umask):
    previous = os.umask(umask)
    try:
        path = save_agent(load_agent(agent_file), tmp_path / f"mode{umask:o}.safetensors")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_train_out_on_a_directory_says_so(capsys, tmp_path):
    code, out, err = run(capsys, "train", "--env", "CartPole-v1", "--out", str(tmp_path))
    assert_one_line_error(code, out, err)
    assert "is a directory" in err


def test_no_file_cites_a_design_document():
    root = Path(__file__).resolve().parents[1]
    listed = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True)
    files = ([root / f for f in listed.stdout.splitlines()] if listed.returncode == 0
             else [p for p in root.rglob("*") if ".venv" not in p.parts and ".git" not in p.parts])
    word = "DES" + "IGN"  # spelled apart so that this file does not cite it itself
    citing = [str(p.relative_to(root)) for p in files if p.is_file() and p.suffix in
              {".py", ".md", ".ipynb", ".toml", ".yml", ".txt", ".sh", ".cfg", ""}
              and word in p.read_text(errors="ignore")]
    assert not citing, f"files cite a document readers do not have: {citing}"


@pytest.fixture()
def interrupting_train(monkeypatch):
    """``pruningrl.ppo.train`` as if Ctrl-C came after the first update."""
    from pruningrl import ppo

    real = ppo.train

    def interrupted(config, out=None, hooks=(), **kwargs):
        def ctrl_c(policy, step, total):
            raise KeyboardInterrupt

        return real(config, out, hooks=[*hooks, ctrl_c], **kwargs)

    monkeypatch.setattr(ppo, "train", interrupted)


def test_an_interrupted_train_or_prune_still_prints_its_json(capsys, tmp_path, agent_file,
                                                            interrupting_train):
    argvs = [
        ["train", "--env", "CartPole-v1", "--steps", "1024", "--num-envs", "4", "--workers",
         "0", "--set", "steps_per_iteration=256", "--set", "minibatches=4", "--set",
         "epochs=1", "--no-progress", "--json", "--out", str(tmp_path / "t.safetensors")],
        ["prune", "--agent", str(agent_file), "--method", "magnitude", "--sparsity", "0.5",
         "--finetune-steps", "512", "--no-progress", "--json", "--out",
         str(tmp_path / "p.safetensors")],
    ]
    for argv in argvs:
        code, out, err = run(capsys, *argv)
        assert code == 130
        assert err.count("\n") == 1 and err.startswith("pruningrl: interrupted")
        payload = json.loads(out)
        assert payload["interrupted"] is True and payload["out"] == argv[-1]
