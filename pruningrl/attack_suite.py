"""Every attack by name, the learned ones trained on first use and cached beside the victim.

``make_attack(name, agent, eps)`` returns an ``Attack``: a callable on batches of normalized
states (for ``pruningrl.evaluation.evaluate`` or ``attacks.AttackWrapper``) that also carries
``info``, the attacker's budget and training report.

* random: uniform noise in the ball;
* critic: PGD on the victim's value V(s');
* mad: SGLD on KL(pi(.|s) || pi(.|s'));
* rs: PGD on a robust-Sarsa Q(s, pi(s')) (learned: a grid of Q-functions);
* rs+mad: PGD on (1 - rho) Q(s, pi(s')) - rho ||pi(s') - pi(s)||^2 (the same Q-functions);
* optimal: ATLA's adversary policy, trained by PPO on the negated reward (learned: a policy);
* paad: PA-AD, a director policy (PPO on the negated reward) and a gradient actor.

RS follows SA-PPO's protocol: Q-functions are learned over a grid of smoothness settings
(action radius x weight), and the attack uses the one that hurts the victim most on a short
screening run (episode seeds disjoint from the evaluation's). Learned parts are cached in
``<victim checkpoint>.attackers/<victim fingerprint>/`` when that folder is writable (else in
``$PRUNINGRL_CACHE`` or ``~/.cache/pruningrl/attackers``), keyed by the victim's weights and
statistics, the attack, eps, the norm, the budget and the seed, so a second evaluation reuses
them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from pruningrl.agent import Agent, _atomic_write, load_agent, save_agent
from pruningrl.attacks import critic_attack, mad_attack, random_attack, robust_sarsa_attack
from pruningrl.bounds import _check_eps, parse_norm

ATTACKS = ("none", "random", "critic", "mad", "rs", "rs+mad", "optimal", "paad")
LEARNED = ("rs", "rs+mad", "optimal", "paad")

#: SA-PPO's RS grid was 6 action radii x 5 weights; ours is a 3 x 3 subgrid of it.
SARSA_GRID: tuple[tuple[float, float], ...] = tuple(
    (action_eps, reg) for action_eps in (0.02, 0.1, 0.3) for reg in (0.1, 1.0, 10.0)
)
#: RS+MAD's weight rho on the action change.
RS_MAD_RATIO = 0.5


@dataclass(frozen=True)
class AttackBudget:
    """How much a learned attacker may train (a part of its cache key)."""

    sarsa_samples: int = 100_000  # victim transitions for each robust-Sarsa Q-function
    sarsa_sweeps: int = 30  # Sarsa(lambda) target refreshes (one pass over the data each)
    screen_episodes: int = 5  # RS grid selection: episodes per Q-function
    adversary_steps: int = 1_000_000  # PPO samples for the optimal attack or PA-AD's director
    adversary_lr: float | None = None  # the adversary PPO's learning rate (None: PPO's default)
    adversary_ent: float | None = None  # its entropy coefficient (None: PPO's default)

    def for_attack(self, name: str) -> dict:
        if name in ("rs", "rs+mad"):
            return {"sarsa_samples": self.sarsa_samples, "sarsa_sweeps": self.sarsa_sweeps,
                    "sarsa_grid": len(SARSA_GRID), "screen_episodes": self.screen_episodes}
        if name in ("optimal", "paad"):
            return {"adversary_steps": self.adversary_steps, **self.adversary_settings()}
        return {}

    def adversary_settings(self) -> dict:
        """The adversary PPO's settings that differ from PPO's defaults."""
        return {key: value for key, value in (("learning_rate", self.adversary_lr),
                                              ("ent_coef", self.adversary_ent))
                if value is not None}


@dataclass
class Attack:
    """A named attack: call it on a batch of normalized states. ``model`` is its learned part
    (the chosen robust-Sarsa Q-function, or the adversary / director agent), if any."""

    name: str
    eps: float
    norm: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    info: dict = field(default_factory=dict)
    model: object = None

    def __call__(self, states: torch.Tensor) -> torch.Tensor:
        return self.fn(states)


def victim_fingerprint(agent: Agent) -> str:
    """sha256 of the victim's env id, effective policy weights and normalization statistics."""
    from pruningrl.policies import effective_weight

    digest = hashlib.sha256(agent.env_id.encode())
    for module in agent.policy.modules():
        if isinstance(module, torch.nn.Linear):
            digest.update(effective_weight(module).detach().double().numpy().tobytes())
            digest.update(module.bias.detach().double().numpy().tobytes())
    if hasattr(agent.policy, "log_std"):
        digest.update(agent.policy.log_std.detach().double().numpy().tobytes())
    digest.update(agent.obs_mean.tobytes())
    digest.update(agent.obs_var.tobytes())
    return digest.hexdigest()[:16]


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-probe"
        probe.write_text("")
        probe.unlink()
        return True
    except OSError:
        return False


def cache_dirs(agent: Agent, victim_path: str | os.PathLike | None) -> list[Path]:
    """Where this victim's attackers may be cached, the preferred (writable) one first."""
    fingerprint = victim_fingerprint(agent)
    user = Path(os.environ.get("PRUNINGRL_CACHE", Path.home() / ".cache" / "pruningrl"))
    folders = []
    if victim_path is not None:
        victim_path = Path(victim_path)
        folders.append(victim_path.with_name(victim_path.stem + ".attackers") / fingerprint)
    folders.append(user / "attackers" / fingerprint)
    return folders


def _find(folders: list[Path], name: str) -> Path | None:
    return next((folder / name for folder in folders if (folder / name).is_file()), None)


def _target(folders: list[Path], name: str) -> Path:
    for folder in folders:
        if _writable(folder):
            return folder / name
    raise ValueError(f"no writable cache folder for attackers (tried {folders[0]}, "
                     f"{folders[-1]}); set PRUNINGRL_CACHE")


def _fmt(x: float) -> str:
    return f"{x:g}"


# ------------------------------------------------------------------------------ robust Sarsa


def sarsa_q_functions(
    agent: Agent, folders: list[Path], budget: AttackBudget, seed: int, progress: bool = False,
) -> list[tuple[tuple[float, float], torch.nn.Module, dict]]:
    """The grid of robust-Sarsa Q-functions for the victim, trained once and cached."""
    from safetensors.torch import load_file, save_file

    from pruningrl.sarsa import QNetwork, SarsaConfig, collect_transitions, train_robust_sarsa

    out = []
    data = None
    for action_eps, reg in SARSA_GRID:
        name = (f"sarsa-n{budget.sarsa_samples}-sw{budget.sarsa_sweeps}-ae{_fmt(action_eps)}"
                f"-reg{_fmt(reg)}-s{seed}.safetensors")
        found = _find(folders, name)
        if found is not None:
            from safetensors import safe_open

            with safe_open(str(found), framework="pt") as handle:
                report = json.loads(handle.metadata()["report"])
            q = QNetwork(report["obs_dim"], report["act_dim"], tuple(report["hidden"]))
            q.load_state_dict(load_file(str(found)))
            out.append(((action_eps, reg), q.eval(), report))
            continue
        config = SarsaConfig(samples=budget.sarsa_samples, sweeps=budget.sarsa_sweeps,
                             action_eps=action_eps, reg=reg, seed=seed)
        if data is None:
            data = collect_transitions(agent, config)
        result = train_robust_sarsa(agent, config, data=data, progress=progress)
        report = {**result.report(), "obs_dim": result.q.obs_dim, "act_dim": result.q.act_dim,
                  "hidden": list(result.q.hidden), "config": asdict(config)}
        target = _target(folders, name)
        tensors = {k: v.contiguous() for k, v in result.q.state_dict().items()}
        _atomic_write(target, lambda tmp, t=tensors, r=report: save_file(
            t, tmp, metadata={"report": json.dumps(r)}))
        out.append(((action_eps, reg), result.q, report))
    return out


def _rs_attack(
    name: str, agent: Agent, eps: float, norm: str, steps: int, seed: int, folders: list[Path],
    budget: AttackBudget, progress: bool, ratio: float | None = None,
) -> Attack:
    from pruningrl.evaluation import evaluate

    if name == "rs+mad":
        ratio = RS_MAD_RATIO if ratio is None else ratio
    else:
        ratio = 0.0
    mixing = "" if ratio in (0.0, RS_MAD_RATIO) else f"-rho{_fmt(ratio)}"
    selection_name = (f"{name}-eps{_fmt(eps)}-{norm}-n{budget.sarsa_samples}"
                      f"-sw{budget.sarsa_sweeps}-screen{budget.screen_episodes}{mixing}"
                      f"-s{seed}.json")
    q_functions = sarsa_q_functions(agent, folders, budget, seed, progress)

    def attack_with(q: torch.nn.Module, attack_seed: int) -> Callable:
        generator = torch.Generator().manual_seed(attack_seed)
        return lambda states: robust_sarsa_attack(agent.policy, q, states, eps, norm, steps,
                                                  ratio, generator)

    found = _find(folders, selection_name)
    if found is not None:
        selection = json.loads(found.read_text())
    else:  # screen the grid on episode seeds disjoint from evaluation's
        screen = []
        for (action_eps, reg), q, _ in q_functions:
            result = evaluate(agent, episodes=budget.screen_episodes, seed=1_000_000 + seed,
                              attack=attack_with(q, seed))
            screen.append({"action_eps": action_eps, "reg": reg,
                           "screen_return": round(result.mean_return, 2)})
        best = min(range(len(screen)), key=lambda i: screen[i]["screen_return"])
        selection = {"chosen": best, "screen": screen, "action_ratio": ratio}
        target = _target(folders, selection_name)
        _atomic_write(target, lambda tmp: Path(tmp).write_text(json.dumps(selection, indent=1)))
    (action_eps, reg), q, report = q_functions[selection["chosen"]]
    info = {
        "budget": budget.for_attack(name), "action_ratio": ratio,
        "q_function": {k: report[k] for k in ("action_eps", "reg", "samples", "gradient_steps",
                                              "td_rmse", "td_rmse_relative", "wall_time_s",
                                              "samples_per_s")},
        "screen": selection["screen"],
        "training_wall_time_s": round(sum(r["wall_time_s"] for _, _, r in q_functions), 1),
    }
    return Attack(name, eps, norm, attack_with(q, seed), info, q)


# -------------------------------------------------------------------------- learned adversary


def train_adversary(
    name: str, victim_path: Path, eps: float, norm: str, steps: int, seed: int, out: Path,
    progress: bool = False, settings: dict | None = None,
) -> Agent:
    """PPO (SA-PPO's defaults, overridden by ``settings``: ``learning_rate``, ``ent_coef``) on
    the adversary MDP of ``pruningrl.adversaries``; resumable."""
    from pruningrl.adversaries import OPTIMAL_ENV_ID, PAAD_ENV_ID, adversary_env_kwargs
    from pruningrl.ppo import PPOConfig, train, train_state_path

    config = PPOConfig(
        env_id=OPTIMAL_ENV_ID if name == "optimal" else PAAD_ENV_ID,
        env_kwargs=adversary_env_kwargs(victim_path, eps, norm),
        total_steps=steps, seed=seed, checkpoint_every=10, **(settings or {}),
    )
    result = train(config, out=out, resume=train_state_path(out).is_file(), progress=progress,
                   extra_metadata={"attack": name, "victim": str(victim_path)})
    if result.interrupted:
        raise KeyboardInterrupt
    return load_agent(out)


def _learned_policy_attack(
    name: str, agent: Agent, eps: float, norm: str, seed: int, folders: list[Path],
    victim_path: str | os.PathLike | None, budget: AttackBudget, progress: bool,
) -> Attack:
    from pruningrl.adversaries import optimal_attack_fn, paad_attack_fn
    from pruningrl.ppo import train_state_path

    settings = budget.adversary_settings()
    tuned = "".join(f"-{'lr' if key == 'learning_rate' else 'ent'}{_fmt(value)}"
                    for key, value in settings.items())
    file_name = (f"{name}-eps{_fmt(eps)}-{norm}-n{budget.adversary_steps}{tuned}"
                 f"-s{seed}.safetensors")
    found = _find(folders, file_name)
    if found is not None and train_state_path(found).is_file():
        found = None  # an interrupted training: resume it, never use a half-trained adversary
    if found is None:
        target = _target(folders, file_name)
        if victim_path is None:  # the adversary's environment loads the victim from a file
            victim_path = target.parent / "victim.safetensors"
            if not victim_path.is_file():
                save_agent(agent, victim_path)
        train_adversary(name, Path(victim_path), eps, norm, budget.adversary_steps, seed,
                        target, progress, settings=settings)
        found = target
    adversary = load_agent(found)
    meta = adversary.metadata
    curve = meta.get("curve", {})
    info = {
        "budget": budget.for_attack(name), "adversary": str(found),
        "training_wall_time_s": meta.get("wall_time_s"),
        "samples_per_s": meta.get("samples_per_s"),
        "final_training_return": next((r for r in reversed(curve.get("return", []))
                                       if r is not None), None),
    }
    fn = (optimal_attack_fn(adversary, eps, norm) if name == "optimal"
          else paad_attack_fn(adversary, agent, eps, norm))
    return Attack(name, eps, norm, fn, info, adversary)


# ----------------------------------------------------------------------------------- by name


def make_attack(
    name: str,
    agent: Agent,
    eps: float,
    norm: str = "inf",
    steps: int = 10,
    seed: int = 0,
    victim_path: str | os.PathLike | None = None,
    budget: AttackBudget | None = None,
    progress: bool = False,
    ratio: float | None = None,
) -> Attack:
    """The attack ``name`` against ``agent`` within B_norm(s, eps) on normalized states.

    Learned attackers (rs, rs+mad, optimal, paad) are loaded from the cache or trained there
    first; ``victim_path`` (the agent's checkpoint) puts the cache beside it. ``ratio`` is
    RS+MAD's weight rho on the action change (default ``RS_MAD_RATIO``).
    """
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; choose one of {', '.join(ATTACKS)}")
    if ratio is not None and (name != "rs+mad" or not 0.0 < ratio < 1.0):
        raise ValueError(f"a mixing weight is RS+MAD's, in (0, 1); got {ratio!r} for {name}")
    eps = _check_eps(eps)
    parse_norm(norm)
    norm = str(norm)
    budget = budget or AttackBudget()
    generator = torch.Generator().manual_seed(seed)
    if name == "none":
        return Attack(name, eps, norm, lambda states: states)
    if name == "random":
        return Attack(name, eps, norm, lambda s: random_attack(s, eps, norm, generator))
    if name == "critic":
        return Attack(name, eps, norm, lambda s: critic_attack(agent.value, s, eps, norm, steps,
                                                               generator), {"steps": steps})
    if name == "mad":
        return Attack(name, eps, norm, lambda s: mad_attack(agent.policy, s, eps, norm, steps,
                                                            "sgld", generator), {"steps": steps})
    folders = cache_dirs(agent, victim_path)
    if name in ("rs", "rs+mad"):
        return _rs_attack(name, agent, eps, norm, steps, seed, folders, budget, progress, ratio)
    return _learned_policy_attack(name, agent, eps, norm, seed, folders, victim_path, budget,
                                  progress)
