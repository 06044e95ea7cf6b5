"""pruningrl.widgets: the sweep behind the explorer, the shipped returns, the live widget and
the static page's grid."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pruningrl.agent import clone_policy
from pruningrl.policies import effective_weight
from pruningrl.pruning import one_shot_prune, prunable_layers
from pruningrl.widgets import SPARSITIES, explore, shipped_returns, sweep_sparsity
from pruningrl.widgets.model import agent_and_states
from pruningrl.widgets.static import export_grid

HOPPER = "Hopper-v5/ppo/seed0"


@pytest.fixture(scope="module")
def hopper():
    return agent_and_states(HOPPER)


@pytest.mark.parametrize(("method", "scope"), [("magnitude", "global"), ("random", "layer")])
def test_sweep_masks_are_the_library_masks(hopper, method, scope):
    agent, states = hopper
    sweep = sweep_sparsity(agent, method, scope, states=states[:32])
    for i in (0, 7, 19):
        policy = one_shot_prune(clone_policy(agent.policy), method, SPARSITIES[i], scope)
        kept = [(effective_weight(layer) != 0).numpy() for layer in prunable_layers(policy)]
        for mine, theirs in zip(sweep.masks(i), kept, strict=True):
            np.testing.assert_array_equal(mine, theirs)
        assert sweep.layer_sparsity[i] == pytest.approx([1 - m.mean() for m in kept])


def test_global_magnitude_pruning_kills_the_output_layer(hopper):
    agent, states = hopper
    glob = sweep_sparsity(agent, "magnitude", "global", states=states[:32])
    layer = sweep_sparsity(agent, "magnitude", "layer", states=states[:32])
    last = len(SPARSITIES) - 1
    assert glob.output_alive(0) and not glob.output_alive(last)
    assert glob.global_tv[last] == 0.0 and glob.radius[last] is None
    assert layer.output_alive(last) and layer.global_tv[last] > 0.0
    assert all(a >= b for a, b in zip(glob.global_bound, glob.global_bound[1:], strict=False))


def test_shipped_returns_say_where_they_are_missing():
    series = shipped_returns("Hopper-v5", "ppo", "magnitude", "global")
    assert series is not None and series.seeds == (0, 1, 2)
    clean, attacked = series.at(0.5)
    assert clean[1] <= clean[0] <= clean[2] and attacked[0] <= clean[2]
    assert series.at(0.35) == (None, None)
    assert shipped_returns("Hopper-v5", "ppo", "random", "global") is None


def test_live_explorer_redraws_and_flags_a_constant_policy():
    explorer = explore(HOPPER, sparsity=0.5)
    first = bytes(explorer.image.value)
    assert first.startswith(b"\x89PNG") and "alive" in explorer.text.value
    explorer.slider.value = SPARSITIES[-1]
    assert bytes(explorer.image.value) != first
    assert "fully pruned: a constant policy" in explorer.text.value
    assert explorer.last_update < 5.0  # a sanity bound; benchmarks/explorer_speed.py times it
    assert "text/plain" in explorer._repr_mimebundle_()


def _read_grid(path):
    text = path.read_text()
    return json.loads(text[text.index("=") + 1:].strip().rstrip(";"))


def test_static_grid_is_small_and_records_its_provenance(tmp_path):
    path = tmp_path / "grid.js"
    export_grid(path, (HOPPER,))
    data = _read_grid(path)
    assert path.stat().st_size < 150_000
    assert data["provenance"]["code_version"]
    series = data["agents"][HOPPER]["series"]["magnitude/global"]
    assert series["output_alive"][0] and not series["output_alive"][-1]
    assert data["agents"][HOPPER]["returns"]["random/global"] is None


def test_changing_the_task_keeps_the_controls_consistent(monkeypatch):
    from pruningrl.widgets import returns

    hopper_only = tuple(r for r in returns._rows() if r["env_id"] == "Hopper-v5")
    monkeypatch.setattr(returns, "_rows", lambda: hopper_only)  # CartPole: nothing measured
    explorer = explore("Hopper-v5/sappo/seed1")
    explorer.task.value = "CartPole-v1"
    assert explorer.agent_id == "CartPole-v1/ppo/seed1"
    assert explorer.sweep.agent_id == explorer.agent_id and explorer.eps.value == 0.1
    assert "No shipped sweet-spot results" in explorer.figure._returns_note(0.5)
    explorer.task.value = "Hopper-v5"
    explorer.variant.value, explorer.seed.value = "sappo", 4
    explorer.task.value = "Acrobot-v1"  # no SA-PPO (SGLD) nor PPO seed 4 there: the first
    assert explorer.agent_id == "Acrobot-v1/ppo/seed0"


def test_committed_grid_comes_from_this_code(hopper):
    from pathlib import Path

    grid = _read_grid(Path(__file__).resolve().parents[1] / "book" / "explorer" / "grid.js")
    assert grid["sparsities"] == list(SPARSITIES) and HOPPER in grid["agents"]
    agent, states = hopper
    sweep = sweep_sparsity(agent, "magnitude", "layer", states=states)
    shipped = grid["agents"][HOPPER]["series"]["magnitude/layer"]
    for mine, theirs in zip(sweep.prune_index, shipped["prune_index"], strict=True):
        assert mine.ravel().tolist() == theirs
    assert shipped["local_tv"] == pytest.approx(sweep.local_tv, rel=1e-3, abs=1e-6)
    assert shipped["crown_tv"] == pytest.approx(sweep.crown_tv, rel=1e-3, abs=1e-6)
    assert all(0.0 <= tv <= 1.0 for tv in sweep.crown_tv)


def test_the_returns_panel_takes_the_dense_control_of_its_own_budget(monkeypatch):
    from pruningrl.widgets import returns

    def row(method, scope, s, budget, value):
        return {"env_id": "Hopper-v5", "variant": "ppo", "method": method, "scope": scope,
                "target_sparsity": s, "seed": 0, "finetune_steps": budget, "certified_eps": 0.075,
                "finetune_lr": None, "attack": "none", "mean_return": value, "discrete": False}

    rows = (row("dense", None, 0.0, 51200, 3000.0), row("dense", None, 0.0, 0, 100.0),
            row("magnitude", "global", 0.5, 51200, 2500.0),
            row("in-training", "layer", 0.5, 0, 9.0))
    monkeypatch.setattr(returns, "_rows", lambda: rows)
    series = returns.shipped_returns("Hopper-v5", "ppo", "magnitude", "global")
    assert series.clean == {0.0: (3000.0, 3000.0, 3000.0), 0.5: (2500.0, 2500.0, 2500.0)}
    assert returns.shipped_returns("Hopper-v5", "ppo", "micro", "global") is None
