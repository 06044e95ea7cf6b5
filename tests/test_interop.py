"""Readers' agents: SB3, CleanRL and nn.Sequential agents load, act as their source, and go
through the command line (certify, prune, evaluate, attack). SB3's agents are trained here, in
seconds; no binary of theirs is shipped."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from pruningrl.agent import load_agent
from pruningrl.bounds import certified_tv
from pruningrl.cli import main
from pruningrl.interop import (
    InteropWarning,
    from_cleanrl,
    from_sequential,
    read_agent,
    read_vecnormalize,
    sniff,
)
from pruningrl.zoo import load

sb3 = pytest.importorskip("stable_baselines3", reason="SB3 is in the test extras")
# What a conversion assumed is a warning; the tests that care check it with pytest.warns.
pytestmark = pytest.mark.filterwarnings("ignore::pruningrl.interop.InteropWarning")


def observations(env_id: str, n: int = 3000, spread: float = 3.0, seed: int = 0) -> np.ndarray:
    """Many observations, well beyond what a short training run visits."""
    dim = gym.make(env_id).observation_space.shape[0]
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, dim)) * spread).astype(np.float32)


# ------------------------------------------------------------------ Stable-Baselines3 agents


@pytest.fixture(scope="module")
def sb3_files(tmp_path_factory):
    """Three SB3 agents trained for a few hundred steps: Gaussian (PPO, tanh, Pendulum),
    categorical (PPO, ReLU, CartPole), and A2C under VecNormalize with an uneven net_arch."""
    from stable_baselines3 import A2C, PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    folder = tmp_path_factory.mktemp("sb3")
    gaussian = PPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=64, n_epochs=1, seed=0,
                   device="cpu")
    gaussian.learn(128)
    with torch.no_grad():  # large means, so that predict's clipping to [-2, 2] is exercised
        gaussian.policy.action_net.weight.mul_(300.0)
    gaussian.save(folder / "pendulum_ppo.zip")
    categorical = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, n_epochs=1,
                      seed=0, device="cpu",
                      policy_kwargs={"activation_fn": nn.ReLU, "net_arch": [32, 16]})
    categorical.learn(128)
    categorical.save(folder / "cartpole_ppo.zip")
    venv = VecNormalize(make_vec_env("CartPole-v1", n_envs=2, seed=0))
    normalized = A2C("MlpPolicy", venv, n_steps=8, seed=0, device="cpu",
                     policy_kwargs={"activation_fn": nn.ReLU,
                                    "net_arch": {"pi": [32], "vf": [16, 16]}})
    normalized.learn(256)
    normalized.save(folder / "cartpole_a2c.zip")
    venv.save(str(folder / "vecnormalize.pkl"))
    return folder


@pytest.mark.parametrize("name,env_id", [("pendulum_ppo.zip", "Pendulum-v1"),
                                         ("cartpole_ppo.zip", "CartPole-v1")])
def test_sb3_agents_act_exactly_as_predict(sb3_files, name, env_id):
    from stable_baselines3 import PPO

    path = sb3_files / name
    model = PPO.load(path, device="cpu")
    with pytest.warns(InteropWarning, match="identity normalization"):
        agent = load(path, env_id)
    obs = observations(env_id)
    expected, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(agent.act(obs), expected)
    if not agent.discrete:  # the comparison covered clipped actions, and unclipped ones
        clipped = np.abs(expected) == 2.0
        assert 0.05 < clipped.mean() < 0.95
    else:
        assert 0 < expected.mean() < 1  # both actions occur
    assert agent.metadata["source"]["format"] == "stable-baselines3"
    assert agent.metadata["source"]["algorithm"] == "PPO"


def test_an_sb3_agent_keeps_its_architecture_and_critic(sb3_files):
    from stable_baselines3 import A2C

    path = sb3_files / "cartpole_a2c.zip"
    agent = load(path, "CartPole-v1", sb3_files / "vecnormalize.pkl")
    config = agent.policy.config()
    assert config["hidden"] == [32] and config["activation"] == "relu"
    assert agent.metadata["source"]["algorithm"] == "A2C"
    model = A2C.load(path, device="cpu")
    obs = torch.randn(50, 4)
    with torch.no_grad():
        expected = model.policy.predict_values(obs).squeeze(-1)
    torch.testing.assert_close(agent.value(obs), expected, rtol=0, atol=0)


def test_vecnormalize_statistics_make_the_agent_act_as_it_did_in_training(sb3_files):
    from stable_baselines3 import A2C
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    path, stats = sb3_files / "cartpole_a2c.zip", sb3_files / "vecnormalize.pkl"
    model = A2C.load(path, device="cpu")
    venv = VecNormalize.load(str(stats), make_vec_env("CartPole-v1", n_envs=1))
    agent = load(path, "CartPole-v1", stats)
    obs = observations("CartPole-v1", spread=1.0)
    expected, _ = model.predict(venv.normalize_obs(obs), deterministic=True)
    np.testing.assert_array_equal(agent.act(obs), expected)
    assert 0 < expected.mean() < 1
    read = read_vecnormalize(stats)
    np.testing.assert_array_equal(read.mean, venv.obs_rms.mean)
    np.testing.assert_array_equal(read.var, venv.obs_rms.var)
    with pytest.warns(InteropWarning, match="trained under VecNormalize"):
        load(path, "CartPole-v1")  # without them: said, and identity normalization


class _Boom:
    """An object whose unpickling would run a command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_vecnormalize_files_are_read_without_running_code(sb3_files, tmp_path):
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    marker = tmp_path / "ran"
    saved = VecNormalize.load(str(sb3_files / "vecnormalize.pkl"), make_vec_env("CartPole-v1"))
    saved.payload = _Boom(marker)
    saved.obs_rms.payload = _Boom(marker)
    poisoned = tmp_path / "poisoned.pkl"
    saved.save(str(poisoned))
    pickle.loads(poisoned.read_bytes())  # an ordinary unpickler runs it
    assert marker.exists()
    marker.unlink()
    stats = read_vecnormalize(poisoned)
    assert not marker.exists() and stats.mean.shape == (4,)
    outright = tmp_path / "outright.pkl"
    outright.write_bytes(pickle.dumps(_Boom(marker)))
    with pytest.raises(ValueError, match="not a VecNormalize save"):
        read_vecnormalize(outright)
    assert not marker.exists()


def test_an_sb3_zip_is_read_without_unpickling_code(sb3_files, tmp_path):
    marker = tmp_path / "ran"
    source = sb3_files / "cartpole_ppo.zip"
    poisoned = tmp_path / "poisoned.zip"
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(poisoned, "w") as new:
        for name in old.namelist():
            data = old.read(name)
            if name == "policy.pth":
                state = torch.load(io.BytesIO(data), weights_only=True)
                buffer = io.BytesIO()
                torch.save({**state, "extra": _Boom(marker)}, buffer)
                data = buffer.getvalue()
            new.writestr(name, data)
    with pytest.raises(ValueError, match="never unpickles code"):
        read_agent(poisoned, "CartPole-v1")
    assert not marker.exists()


def test_sb3_files_are_recognised_by_content_and_checked_against_the_env(sb3_files, tmp_path):
    renamed = tmp_path / "agent.bin"
    renamed.write_bytes((sb3_files / "cartpole_ppo.zip").read_bytes())
    assert sniff(renamed) == "stable-baselines3"
    assert read_agent(renamed, "CartPole-v1").discrete
    with pytest.raises(ValueError, match="does not record its environment"):
        read_agent(renamed)
    with pytest.raises(ValueError, match="continuous actions"):
        read_agent(renamed, "Pendulum-v1")
    with pytest.raises(ValueError, match="trained on"):
        read_agent(sb3_files / "pendulum_ppo.zip", "MountainCarContinuous-v0")
    with pytest.raises(ValueError, match="Stable-Baselines3 agent only"):
        load("CartPole-v1/ppo/seed0", vecnormalize=sb3_files / "vecnormalize.pkl")


def test_an_sb3_agent_with_nan_weights_is_refused(sb3_files, tmp_path):
    source, damaged = sb3_files / "cartpole_ppo.zip", tmp_path / "nan.zip"
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(damaged, "w") as new:
        for name in old.namelist():
            data = old.read(name)
            if name == "policy.pth":
                state = torch.load(io.BytesIO(data), weights_only=True)
                state["action_net.bias"][0] = float("nan")
                buffer = io.BytesIO()
                torch.save(state, buffer)
                data = buffer.getvalue()
            new.writestr(name, data)
    with pytest.raises(ValueError, match="NaN"):
        read_agent(damaged, "CartPole-v1")


# ------------------------------------------------------------------------ CleanRL's agents


def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias_const: float = 0.0) -> nn.Linear:
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class CleanRLContinuous(nn.Module):
    """The ``Agent`` of CleanRL's ppo_continuous_action.py, as written there."""

    def __init__(self, obs_dim: int, act_dim: int) -> None:
        super().__init__()
        self.critic = nn.Sequential(
            layer_init(nn.Linear(obs_dim, 64)), nn.Tanh(), layer_init(nn.Linear(64, 64)),
            nn.Tanh(), layer_init(nn.Linear(64, 1), std=1.0))
        self.actor_mean = nn.Sequential(
            layer_init(nn.Linear(obs_dim, 64)), nn.Tanh(), layer_init(nn.Linear(64, 64)),
            nn.Tanh(), layer_init(nn.Linear(64, act_dim), std=0.01))
        self.actor_logstd = nn.Parameter(torch.zeros(1, act_dim))


class CleanRLDiscrete(nn.Module):
    """The ``Agent`` of CleanRL's ppo.py, as written there."""

    def __init__(self, obs_dim: int, n_actions: int) -> None:
        super().__init__()
        self.critic = nn.Sequential(
            layer_init(nn.Linear(obs_dim, 64)), nn.Tanh(), layer_init(nn.Linear(64, 64)),
            nn.Tanh(), layer_init(nn.Linear(64, 1), std=1.0))
        self.actor = nn.Sequential(
            layer_init(nn.Linear(obs_dim, 64)), nn.Tanh(), layer_init(nn.Linear(64, 64)),
            nn.Tanh(), layer_init(nn.Linear(64, n_actions), std=0.01))


@pytest.fixture(scope="module")
def cleanrl_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cleanrl")
    torch.manual_seed(0)
    continuous = CleanRLContinuous(3, 1)
    with torch.no_grad():
        continuous.actor_mean[-1].weight.mul_(3000.0)  # reach the action bounds
        continuous.actor_logstd.fill_(-0.7)
    discrete = CleanRLDiscrete(4, 2)
    with torch.no_grad():
        discrete.actor[-1].weight.mul_(100.0)
    torch.save(continuous.state_dict(), folder / "ppo_continuous_action.cleanrl_model")
    torch.save(discrete.state_dict(), folder / "ppo.cleanrl_model")
    return folder, continuous, discrete


def test_cleanrl_agents_act_exactly_as_their_source(cleanrl_files):
    folder, continuous, discrete = cleanrl_files
    obs = observations("Pendulum-v1")
    with pytest.warns(InteropWarning, match="identity normalization"):
        agent = load(folder / "ppo_continuous_action.cleanrl_model", "Pendulum-v1")
    with torch.no_grad():
        expected = np.clip(continuous.actor_mean(torch.from_numpy(obs)).numpy(), -2.0, 2.0)
    np.testing.assert_array_equal(agent.act(obs), expected)
    assert 0.05 < (np.abs(expected) == 2.0).mean() < 0.95
    torch.testing.assert_close(agent.policy.log_std, continuous.actor_logstd.detach()[0])
    obs = observations("CartPole-v1")
    agent = load(folder / "ppo.cleanrl_model", "CartPole-v1")
    with torch.no_grad():
        expected = discrete.actor(torch.from_numpy(obs)).argmax(-1).numpy()
        values = discrete.critic(torch.from_numpy(obs)).squeeze(-1)
    np.testing.assert_array_equal(agent.act(obs), expected)
    assert 0 < expected.mean() < 1
    torch.testing.assert_close(agent.value(torch.from_numpy(obs)), values, rtol=0, atol=0)


def test_cleanrl_observation_statistics_when_given(cleanrl_files):
    folder, continuous, _ = cleanrl_files
    mean, var = np.array([0.5, -0.2, 1.0]), np.array([0.3, 2.0, 4.0])
    agent = from_cleanrl(continuous.state_dict(), "Pendulum-v1", obs_mean=mean, obs_var=var)
    obs = observations("Pendulum-v1", n=200)
    normalized = np.clip((obs.astype(np.float64) - mean) / np.sqrt(var + 1e-8), -10, 10)
    with torch.no_grad():
        expected = continuous.actor_mean(torch.from_numpy(normalized.astype(np.float32)))
    np.testing.assert_array_equal(agent.act(obs), np.clip(expected.numpy(), -2.0, 2.0))


# ------------------------------------------------------------------------ a bare nn.Sequential


def test_a_sequential_acts_as_itself_and_certifies_as_stated():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                        nn.Linear(16, 1))
    with pytest.warns(InteropWarning, match="no critic"):
        agent = from_sequential(net, "Pendulum-v1", "gaussian", log_std=-0.5)
    obs = observations("Pendulum-v1")
    with torch.no_grad():
        expected = np.clip(net(torch.from_numpy(obs)).numpy(), -2.0, 2.0)
    np.testing.assert_array_equal(agent.act(obs), expected)
    assert certified_tv(net, 0.05, kind="gaussian", log_std=-0.5) == certified_tv(
        agent.policy, 0.05)
    logits = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    agent = from_sequential(logits, "CartPole-v1", "categorical", value=nn.Sequential(
        nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 1)))
    obs = observations("CartPole-v1")
    with torch.no_grad():
        np.testing.assert_array_equal(agent.act(obs), logits(torch.from_numpy(obs)).argmax(-1))
    with pytest.raises(ValueError, match="log_std"):
        from_sequential(net, "Pendulum-v1", "gaussian")
    with pytest.raises(ValueError, match="discrete actions"):
        from_sequential(net, "CartPole-v1", "gaussian", log_std=0.0)
    with pytest.raises(ValueError, match="Sigmoid"):
        from_sequential(nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 2)),
                        "CartPole-v1", "categorical")


def test_a_pickled_module_is_refused_not_unpickled(tmp_path):
    path = tmp_path / "module.pt"
    torch.save(nn.Sequential(nn.Linear(4, 2)), path)
    with pytest.raises(ValueError, match="never unpickles code"):
        read_agent(path, "CartPole-v1")
    state = tmp_path / "state.pt"
    torch.save(nn.Sequential(nn.Linear(4, 2)).state_dict(), state)
    with pytest.raises(ValueError, match="convert it"):
        read_agent(state, "CartPole-v1")


# ------------------------------------------------------------------------ the command line


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def foreign_agents(sb3_files, cleanrl_files, tmp_path_factory):
    """(argv naming the agent, env id) for each kind of reader's agent."""
    folder = tmp_path_factory.mktemp("sequential")
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2))
    torch.save(net.state_dict(), folder / "net.pt")
    return {
        "sb3-gaussian": ["--agent", sb3_files / "pendulum_ppo.zip", "--env", "Pendulum-v1"],
        "sb3-categorical": ["--agent", sb3_files / "cartpole_a2c.zip", "--env", "CartPole-v1",
                            "--vecnormalize", sb3_files / "vecnormalize.pkl"],
        "cleanrl-continuous": ["--agent", cleanrl_files[0] / "ppo_continuous_action.cleanrl_model",
                               "--env", "Pendulum-v1"],
        "cleanrl-discrete": ["--agent", cleanrl_files[0] / "ppo.cleanrl_model", "--env",
                             "CartPole-v1"],
        "sequential": folder / "net.pt",
    }


@pytest.mark.parametrize("kind", ["sb3-gaussian", "sb3-categorical", "cleanrl-continuous",
                                  "cleanrl-discrete", "sequential"])
def test_readers_agents_go_through_every_command(capsys, tmp_path, foreign_agents, kind):
    agent_args = foreign_agents[kind]
    if kind == "sequential":  # a bare network says nothing of its kind: convert it once
        converted = tmp_path / "converted.safetensors"
        code, out, err = run(capsys, "convert", agent_args, "--env", "CartPole-v1", "--kind",
                             "categorical", "--out", converted, "--json")
        assert code == 0, err
        assert json.loads(out)["source"]["format"] == "nn.Sequential"
        agent_args = ["--agent", converted]
    source = load(agent_args[1], *agent_args[3:4], *agent_args[5:6])
    code, out, err = run(capsys, "certify", *agent_args, "--eps", "0.05", "--json")
    assert code == 0, err
    certificate = json.loads(out)
    assert certificate["certified_tv"] == certified_tv(source.policy, 0.05)
    assert 0 < certificate["certified_tv"] <= 1 and certificate["constant_policy"] is False
    code, out, err = run(capsys, "certify", *agent_args, "--eps", "0.05", "--method", "local",
                         "--states", "100", "--json")
    assert code == 0 and json.loads(out)["certified_tv"] <= certificate["certified_tv"], err
    pruned = tmp_path / "pruned.safetensors"
    code, out, err = run(capsys, "prune", *agent_args, "--method", "magnitude", "--sparsity",
                         "0.5", "--scope", "layer", "--out", pruned, "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert payload["certified_tv"] <= payload["certified_tv_before"]
    assert abs(payload["sparsity"] - 0.5) < 0.02
    for agent in (agent_args, ["--agent", pruned]):
        code, out, err = run(capsys, "evaluate", *agent, "--episodes", "2", "--json")
        assert code == 0, err
        clean = json.loads(out)
        code, out, err = run(capsys, "evaluate", *agent, "--episodes", "2", "--attack", "mad",
                             "--eps", "0.05", "--json")
        assert code == 0, err
        assert json.loads(out)["attack"] == "mad" and json.loads(out)["episodes"] == 2
    assert clean["episodes"] == 2
    reloaded = load_agent(pruned)
    assert reloaded.normalize_obs == source.normalize_obs
    np.testing.assert_array_equal(reloaded.obs_mean, source.obs_mean)
    if not source.discrete:  # act keeps clipping to the action bounds after pruning
        np.testing.assert_array_equal(reloaded.action_high, source.action_high)


def test_an_sb3_agent_fine_tunes_after_pruning_as_it_was_built(capsys, tmp_path, sb3_files):
    out = tmp_path / "tuned.safetensors"
    code, stdout, err = run(capsys, "prune", "--agent", sb3_files / "cartpole_ppo.zip", "--env",
                            "CartPole-v1", "--method", "magnitude", "--sparsity", "0.3",
                            "--finetune-steps", "256", "--no-progress", "--out", out, "--json")
    assert code == 0, err
    tuned = load_agent(out)
    assert tuned.policy.config()["hidden"] == [32, 16]
    assert tuned.policy.config()["activation"] == "relu" and not tuned.normalize_obs


@pytest.mark.parametrize("argv,message", [
    (["certify", "--eps", "0.1"], "does not record its environment"),
    (["certify", "--eps", "0.1", "--env", "Hopper-v5"], "trained on"),
    (["certify", "--eps", "0.1", "--env", "CartPole-v1", "--vecnormalize", "missing.pkl"],
     "no VecNormalize statistics at"),
])
def test_readers_agents_bad_input_is_one_line(capsys, sb3_files, argv, message):
    code, out, err = run(capsys, argv[0], "--agent", sb3_files / "cartpole_ppo.zip", *argv[1:])
    assert code == 2 and out == "" and message in err
    assert err.count("\n") == 1


def test_an_sb3_policy_object_points_to_the_conversion(sb3_files):
    from stable_baselines3 import PPO

    policy = PPO.load(sb3_files / "cartpole_ppo.zip", device="cpu").policy
    with pytest.raises(ValueError, match="pruningrl.interop"):
        certified_tv(policy, 0.1)
    agent = load(sb3_files / "cartpole_ppo.zip", "CartPole-v1")
    assert 0 < certified_tv(agent.policy, 0.1) < 1
