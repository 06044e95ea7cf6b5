"""The certified return: a sound lower bound on the return under any eps-bounded attack."""

from __future__ import annotations

import numpy as np
import pytest

from pruningrl.attack_suite import make_attack
from pruningrl.certified_return import certified_return
from pruningrl.evaluation import evaluate
from pruningrl.zoo import list_agents, load

#: every shipped agent of the discrete-action tasks, PPO and certifiably trained alike
CATEGORICAL = [a["id"] for a in list_agents() if a["env_id"] in ("CartPole-v1", "Acrobot-v1")]
EPISODES = 4


@pytest.mark.parametrize("agent_id", CATEGORICAL)
@pytest.mark.parametrize("eps", [0.002, 0.05])
def test_certified_return_lies_below_every_attack_and_the_clean_return(agent_id, eps):
    agent = load(agent_id)
    bound = certified_return(agent, eps, episodes=EPISODES)
    clean = evaluate(agent, episodes=EPISODES)
    assert bound.clean == clean.returns  # the same episodes as the evaluation's
    for name in ("random", "critic", "mad"):
        attacked = evaluate(agent, episodes=EPISODES, attack=make_attack(name, agent, eps))
        assert all(c <= a for c, a in zip(bound.certified, attacked.returns, strict=True)), \
            (name, bound.certified, attacked.returns)
    for certified, returned, first in zip(bound.certified, bound.clean,
                                          bound.first_uncertified, strict=True):
        assert certified <= returned
        if first is None:  # every state certified: no attack can change the episode
            assert certified == returned


def test_a_small_radius_certifies_whole_episodes_and_a_large_one_none():
    agent = load("Acrobot-v1/ppo/seed0")
    tiny = certified_return(agent, 1e-4, episodes=3)
    assert tiny.fully_certified == 1.0 and tiny.certified == tiny.clean
    large = certified_return(agent, 0.5, episodes=3)
    assert large.first_uncertified == [0, 0, 0] and large.certified == [-500.0] * 3
    assert np.all(np.array(large.certified) <= np.array(tiny.certified))


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="discrete actions"):
        certified_return(load("Hopper-v5/ppo/seed0"), 0.01, episodes=1)
    with pytest.raises(ValueError, match="episodes must be positive"):
        certified_return(load("CartPole-v1/ppo/seed0"), 0.01, episodes=0)
    with pytest.raises(ValueError):
        certified_return(load("CartPole-v1/ppo/seed0"), -0.1, episodes=1)


def _shipped_bounds() -> list[tuple[str, dict, dict]]:
    """(record id, certified return, attacks) of every shipped sweep record that carries one."""
    from pruningrl.experiments import RecordStore
    from pruningrl.experiments.results import SHIPPED_RESULTS

    out = []
    for folder in sorted(p for p in SHIPPED_RESULTS.iterdir() if (p / "records").is_dir()):
        for record in RecordStore(folder).records():
            bound = ((record.get("result") or {}).get("crown") or {}).get("certified_return")
            if bound:
                out.append((record["id"], bound, record["result"]["attacks"]))
    return out


def test_shipped_certified_returns_never_exceed_an_attack_on_the_same_episodes():
    bounds = _shipped_bounds()
    assert len(bounds) >= 12  # the categorical pilots' dense controls, at least
    learned = 0
    for job, bound, attacks in bounds:
        assert bound["clean"] == attacks["none"]["returns"], job  # the same episodes
        for label, attack in attacks.items():
            learned += label.startswith(("optimal", "paad"))
            assert all(c <= a for c, a in zip(bound["certified"], attack["returns"],
                                               strict=True)), (job, label)
        for certified, clean, first in zip(bound["certified"], bound["clean"],
                                           bound["first_uncertified"], strict=True):
            assert certified <= clean and (first is not None or certified == clean), job
    assert learned > 0  # the bound is tested against learned adversaries too
