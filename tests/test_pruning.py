"""Pruning: masks against torch's own, exact sparsity targets, schedules, masks that survive
fine-tuning and saving, and the certificate along every method's path."""

import copy
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.utils import prune

from pruningrl.agent import load_agent
from pruningrl.bounds import certified_tv
from pruningrl.cli import main
from pruningrl.policies import CategoricalPolicy, GaussianPolicy
from pruningrl.ppo import PPOConfig, train
from pruningrl.pruning import (
    GradualPruning,
    MicroPruning,
    cubic_sparsity,
    layer_sparsity,
    magnitude_prune,
    one_shot_prune,
    prunable_layers,
    random_prune,
    schedule,
    sparsity,
)


def trained_like(seed=0, kind="gaussian"):
    torch.manual_seed(seed)
    policy = GaussianPolicy(11, 3) if kind == "gaussian" else CategoricalPolicy(11, 4)
    with torch.no_grad():
        for layer in prunable_layers(policy):
            layer.weight.normal_(0, 1.5 / math.sqrt(layer.weight.shape[1]))
    return policy


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 1000), st.floats(0.0, 0.99))
def test_global_magnitude_masks_equal_torch_global_unstructured(seed, level):
    ours, reference = trained_like(seed), trained_like(seed)
    magnitude_prune(ours, level, scope="global")
    layers = prunable_layers(reference)
    prune.global_unstructured([(layer, "weight") for layer in layers],
                              pruning_method=prune.L1Unstructured,
                              amount=round(level * sum(layer.weight.numel() for layer in layers)))
    for mine, theirs in zip(prunable_layers(ours), layers, strict=True):
        assert torch.equal(mine.weight_mask, theirs.weight_mask)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 1000), st.floats(0.0, 0.99))
def test_layer_scope_hits_the_target_in_every_layer(seed, level):
    policy = magnitude_prune(trained_like(seed), level, scope="layer")
    for layer, fraction in zip(prunable_layers(policy), layer_sparsity(policy), strict=True):
        assert abs(fraction * layer.weight.numel() - level * layer.weight.numel()) <= 1


def test_repeated_calls_reach_the_total_target_and_never_unprune():
    policy = trained_like()
    magnitude_prune(policy, 0.3)
    first = [layer.weight_mask.clone() for layer in prunable_layers(policy)]
    magnitude_prune(policy, 0.6)
    assert abs(sparsity(policy) - 0.6) < 1e-3
    for before, layer in zip(first, prunable_layers(policy), strict=True):
        assert torch.all(layer.weight_mask[before == 0] == 0)  # nested masks
    with pytest.raises(ValueError, match="already pruned"):
        magnitude_prune(policy, 0.5)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan")])
def test_sparsity_outside_the_unit_interval_is_refused(bad):
    for method in ("random", "magnitude"):
        with pytest.raises(ValueError, match="sparsity"):
            one_shot_prune(trained_like(), method, bad)


def test_unknown_method_and_scope_are_refused():
    with pytest.raises(ValueError, match="unknown pruning method"):
        one_shot_prune(trained_like(), "snip", 0.5)
    with pytest.raises(ValueError, match="unknown scope"):
        magnitude_prune(trained_like(), 0.5, scope="row")
    with pytest.raises(ValueError, match="needs fine-tuning"):
        one_shot_prune(trained_like(), "gradual", 0.5)
    with pytest.raises(ValueError, match="unknown pruning schedule"):
        schedule("cubic", 0.5)


@pytest.mark.parametrize("updates", [10, 25, 200])
def test_micro_pruning_takes_small_even_steps_within_any_budget(updates):
    hook, policy = MicroPruning(0.7, rate=0.02), trained_like()
    for update in range(1, updates + 1):
        hook(policy, update * 2048, updates * 2048)
    levels = [0.0] + [s for _, s in hook.history]
    steps = np.diff(levels)
    assert abs(levels[-1] - 0.7) < 1e-3
    ramp = int(0.75 * updates)  # the updates before `end`
    # never a jump: each step prunes at most max(2%, the needed constant rate) of what is left
    needed = 1 - 0.3 ** (1 / max(ramp, 1))
    remaining = 1 - np.array(levels[:-1])
    assert np.all(steps <= max(0.02, needed) * remaining + 2 / 4992)


def test_cubic_ramp_matches_zhu_and_gupta():
    assert cubic_sparsity(0.0, 0.8) == 0.0
    assert cubic_sparsity(0.75, 0.8) == 0.8 and cubic_sparsity(1.0, 0.8) == 0.8
    # half-way through the ramp: s_f (1 - (1/2)^3) = 7/8 s_f
    assert math.isclose(cubic_sparsity(0.375, 0.8), 0.8 * 7 / 8)
    values = [cubic_sparsity(i / 100, 0.9, start=0.1, end=0.6) for i in range(101)]
    assert all(b >= a for a, b in zip(values[:-1], values[1:], strict=True))


@pytest.mark.parametrize("hook", [
    lambda: GradualPruning(0.85), lambda: GradualPruning(0.7, scope="layer"),
    lambda: MicroPruning(0.9, rate=0.02), lambda: MicroPruning(0.6, rate=0.05, scope="layer"),
])
def test_schedules_reach_exactly_the_final_sparsity_and_only_rise(hook):
    schedule_hook, policy = hook(), trained_like()
    total, tvs = 100 * 2048, []
    for update in range(1, 101):
        schedule_hook(policy, update * 2048, total)
        tvs.append(certified_tv(policy, 0.075))
    levels = [s for _, s in schedule_hook.history]
    assert all(b >= a for a, b in zip(levels[:-1], levels[1:], strict=True))
    weights = sum(layer.weight.numel() for layer in prunable_layers(policy))
    assert abs(levels[-1] - schedule_hook.final) <= 1.5 * len(prunable_layers(policy)) / weights
    # pruning cannot hurt
    assert all(b <= a + 1e-12 for a, b in zip(tvs[:-1], tvs[1:], strict=True))


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(["random", "magnitude-global", "magnitude-layer"]),
       st.sampled_from(["gaussian", "categorical"]), st.integers(0, 500))
def test_certified_global_tv_never_rises_along_a_path(method, kind, seed):
    policy = trained_like(seed, kind)
    previous = certified_tv(policy, 0.05)
    for level in [0.1 * i for i in range(1, 10)]:
        pruned = copy.deepcopy(policy)
        if method == "random":
            random_prune(pruned, level, seed=seed)
        else:
            magnitude_prune(pruned, level, scope=method.split("-")[1])
        tv = certified_tv(pruned, 0.05)
        assert tv <= previous + 1e-12
        previous = tv


def test_pruned_entries_stay_zero_through_finetuning_and_saving(tmp_path):
    tiny = dict(env_id="CartPole-v1", steps_per_iteration=256, num_envs=4, minibatches=4,
                epochs=2)
    dense = train(PPOConfig(total_steps=512, **tiny), progress=False).agent
    # layer scope: at 70% global magnitude pruning would remove the whole (small-weight) output
    # layer of this young agent, and a constant policy has no gradient left to fine-tune
    magnitude_prune(dense.policy, 0.7, scope="layer")
    masks = [layer.weight_mask.clone() for layer in prunable_layers(dense.policy)]
    out = tmp_path / "finetuned.safetensors"
    tuned = train(PPOConfig(total_steps=768, freeze_obs_norm=True, **tiny), out,
                  init=dense, progress=False).agent
    for agent in (tuned, load_agent(out)):
        for mask, layer in zip(masks, prunable_layers(agent.policy), strict=True):
            assert torch.all(layer.weight[mask == 0] == 0)
    assert (tuned.obs_mean == dense.obs_mean).all()  # frozen statistics: the same threat model
    # fine-tuning did move the surviving weights
    assert not torch.equal(prunable_layers(tuned.policy)[0].weight,
                           prunable_layers(dense.policy)[0].weight)


# ----------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def agent_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("prune") / "dense.safetensors"
    train(PPOConfig(env_id="CartPole-v1", total_steps=512, steps_per_iteration=256, num_envs=4,
                    minibatches=4, epochs=2), out, progress=False)
    return out


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("method,extra", [("magnitude", []), ("random", []),
                                          ("magnitude", ["--finetune-steps", "512"]),
                                          ("gradual", ["--finetune-steps", "1024"]),
                                          ("micro", ["--finetune-steps", "1024"])])
def test_prune_command_writes_an_agent_that_evaluate_and_certify_accept(
        capsys, agent_file, tmp_path, method, extra):
    out = tmp_path / f"{method}.safetensors"
    code, stdout, stderr = run(capsys, "prune", "--agent", str(agent_file), "--method", method,
                               "--sparsity", "0.6", "--out", str(out), "--no-progress",
                               "--json", *extra)
    assert code == 0, stderr
    payload = json.loads(stdout)
    assert abs(payload["sparsity"] - 0.6) < 0.01
    assert payload["certified_tv"] <= payload["certified_tv_before"] + 1e-12
    assert load_agent(out).metadata["pruning"]["method"] == method
    code, stdout, _ = run(capsys, "certify", "--agent", str(out), "--eps", "0.05", "--json")
    assert code == 0 and abs(json.loads(stdout)["sparsity"] - 0.6) < 0.01
    code, stdout, _ = run(capsys, "evaluate", "--agent", str(out), "--episodes", "2", "--json")
    assert code == 0 and json.loads(stdout)["episodes"] == 2


@pytest.mark.parametrize("argv", [
    ["--method", "magnitude", "--sparsity", "1.0"],
    ["--method", "magnitude", "--sparsity", "-0.2"],
    ["--method", "snip", "--sparsity", "0.5"],
    ["--method", "magnitude", "--sparsity", "0.5", "--scope", "row"],
    ["--method", "gradual", "--sparsity", "0.5"],
    ["--method", "magnitude", "--sparsity", "0.5", "--finetune-steps", "-3"],
])
def test_prune_bad_input_gets_one_line_and_status_2(capsys, agent_file, tmp_path, argv):
    out = tmp_path / "out.safetensors"
    code, stdout, stderr = run(capsys, "prune", "--agent", str(agent_file), *argv,
                               "--out", str(out))
    assert code == 2 and stdout == "" and stderr.count("\n") == 1
    assert not out.exists()


def test_prune_never_overwrites_without_force(capsys, agent_file, tmp_path):
    out = tmp_path / "kept.safetensors"
    out.write_bytes(b"precious")
    code, _, stderr = run(capsys, "prune", "--agent", str(agent_file), "--method", "random",
                          "--sparsity", "0.5", "--out", str(out))
    assert code == 2 and "--force" in stderr and out.read_bytes() == b"precious"
    code, _, _ = run(capsys, "prune", "--agent", str(agent_file), "--method", "random",
                     "--sparsity", "0.5", "--out", str(out), "--force")
    assert code == 0 and load_agent(out).metadata["pruning"]["method"] == "random"


def test_train_with_a_schedule(capsys, tmp_path):
    out = tmp_path / "scheduled.safetensors"
    code, stdout, stderr = run(capsys, "train", "--env", "CartPole-v1", "--steps", "4096",
                               "--prune-method", "micro", "--sparsity", "0.5", "--out", str(out),
                               "--no-progress", "--json")
    assert code == 0, stderr
    assert abs(sparsity(load_agent(out).policy) - 0.5) < 0.01
    code, _, stderr = run(capsys, "train", "--env", "CartPole-v1", "--sparsity", "0.5",
                          "--out", str(tmp_path / "x.safetensors"))
    assert code == 2 and "--prune-method" in stderr


def test_a_pruning_run_resumes_with_its_masks(tmp_path):
    class StopAfter:
        def __init__(self, at):
            self.at, self.calls = at, 0

        def __call__(self, policy, step, total):
            self.calls += 1
            if self.calls == self.at:
                raise KeyboardInterrupt

    out = tmp_path / "scheduled.safetensors"
    config = PPOConfig(env_id="CartPole-v1", total_steps=256 * 6, steps_per_iteration=256,
                       num_envs=4, minibatches=4, epochs=2, checkpoint_every=1)
    first = train(config, out, hooks=[MicroPruning(0.5, rate=0.1), StopAfter(3)],
                  progress=False)
    assert first.interrupted and sparsity(load_agent(out).policy) > 0
    resumed = train(config, out, hooks=[MicroPruning(0.5, rate=0.1)], resume=True,
                    progress=False)
    assert resumed.steps == 256 * 6
    assert abs(sparsity(load_agent(out).policy) - 0.5) < 0.01
