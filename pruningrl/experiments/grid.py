"""Grids: a TOML file naming shipped agents x methods x scopes x sparsities x attacks.

A grid expands into jobs (``pruningrl.experiments.jobs``). The top-level keys apply to the whole
grid; optional ``[[part]]`` tables override any of them, and the grid is then the union of the
parts' products (so one file can give MuJoCo tasks two variants and CartPole one)::

    envs = ["CartPole-v1"]            # tasks with shipped agents
    variants = ["ppo"]                # shipped variants
    seeds = [0, 1, 2]                 # shipped seeds
    methods = ["magnitude", "micro"]  # random, magnitude, gradual, micro, in-training
    scope = "global"                  # "layer", or ["global", "layer"] for both
    sparsities = [0.0, 0.3, 0.6]      # target fractions of zeroed weight-matrix entries
    finetune_steps = 50000            # PPO steps after (one-shot) or during (schedules) pruning
    finetune_lr = 3e-5                # optional; default: the agent's own learning rate
    finetune_sa_ramp = 0.0            # optional; default: the agent's own SA-PPO schedule
    attacks = ["none", "random", "critic", "mad", "rs"]
    eps = 0.1                         # optional; default: the task's eps (MuJoCo)
    episodes = 50
    [budgets]                         # optional per-attack budgets
    rs = 100000

Further known keys: ``description``, ``norm`` ("inf" or "2"), ``rate`` (micro-pruning's
per-update fraction, 0.02), ``local_states`` (visited states for the local certificate, 1000),
``attack_seed`` (0), ``prune_window`` ([0.2, 0.75]: where in the run the "in-training" method's
sparsity ramps up), ``finetune_seeds`` (a list: each point is fine-tuned once per seed, which
seeds the fine-tuning's sampling; absent, the fine-tuning is seeded with the training seed),
``finetune_sa_ramp`` (for robustly trained agents: the share of the fine-tuning over which
the SA-PPO radius and the convex bound's IBP share grow again, ``pruningrl.ppo.sa_schedule``;
0 holds them at the end of the agent's training from the first step), ``[attempts]`` (per
learned attack, the attempts every point gets, for example
``paad = [{seed = 0}, {seed = 1, lr = 1e-4}, {seed = 2, ent = 0.01}]`` or
``"rs+mad" = [{ratio = 0.25}, {ratio = 0.75}]``; the score takes the worst of them).
The method "in-training" trains the base agent's run again from scratch,
pruning gradually as it trains (``pruningrl.finetune.prune_during_training``); it fine-tunes
nothing, so its dense control is the untouched base agent. Any other key is refused, as is
an unknown env, variant, seed, method or attack, a sparsity outside [0, 1), a negative eps
and an empty grid: ``load_grid`` raises a one-line ``ValueError`` before anything is run or
written.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

GRIDS_DIR = Path(__file__).resolve().parent.parent / "grids"

#: key -> (default, required). A part may override every key but ``description``.
KEYS: dict[str, tuple[object, bool]] = {
    "description": ("", False),
    "envs": (None, True),
    "variants": (["ppo"], False),
    "seeds": ([0, 1, 2], False),
    "methods": (None, True),
    "scope": ("global", False),
    "sparsities": (None, True),
    "finetune_steps": (50_000, False),
    "finetune_lr": (None, False),
    "finetune_sa_ramp": (None, False),
    "attacks": (["none"], False),
    "eps": (None, False),
    "norm": ("inf", False),
    "episodes": (50, False),
    "budgets": ({}, False),
    "rate": (0.02, False),
    "local_states": (1000, False),
    "attack_seed": (0, False),
    "prune_window": ([0.2, 0.75], False),
    "finetune_seeds": (None, False),
    "attempts": ({}, False),
}


@dataclass(frozen=True)
class GridPart:
    """One product of the grid, every key resolved."""

    envs: tuple[str, ...]
    variants: tuple[str, ...]
    seeds: tuple[int, ...]
    methods: tuple[str, ...]
    scopes: tuple[str, ...]
    sparsities: tuple[float, ...]
    finetune_steps: int
    attacks: tuple[str, ...]
    eps: float | None
    norm: str
    episodes: int
    budgets: dict = field(hash=False)
    rate: float
    local_states: int
    attack_seed: int
    prune_window: tuple[float, float] = (0.2, 0.75)
    finetune_lr: float | None = None
    finetune_seeds: tuple[int, ...] | None = None
    attempts: dict = field(default_factory=dict, hash=False)
    finetune_sa_ramp: float | None = None


@dataclass(frozen=True)
class Grid:
    """A named grid: its parts and where it came from."""

    name: str
    path: Path
    description: str
    parts: tuple[GridPart, ...]


def grid_path(name_or_path: str) -> Path:
    """A shipped grid's file (``smoke`` -> ``pruningrl/grids/smoke.toml``) or a TOML path."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.is_file():
        if not candidate.is_file():
            raise ValueError(f"no grid file {candidate}")
        return candidate
    shipped = GRIDS_DIR / f"{name_or_path}.toml"
    if not shipped.is_file():
        known = ", ".join(shipped_grids()) or "none"
        raise ValueError(f"no grid {name_or_path!r}: not a .toml file, nor a shipped grid "
                         f"(shipped: {known})")
    return shipped


def shipped_grids() -> list[str]:
    """The names of the grids that ship with the library."""
    return sorted(p.stem for p in GRIDS_DIR.glob("*.toml"))


def load_grid(name_or_path: str) -> Grid:
    """Read and check a grid; a one-line ``ValueError`` names the first problem."""
    path = grid_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid TOML ({str(error).splitlines()[0]})") from None
    raw_parts = data.pop("part", [{}])
    if not isinstance(raw_parts, list) or not all(isinstance(p, dict) for p in raw_parts):
        raise ValueError(f"{path}: 'part' must be an array of tables ([[part]])")
    _check_keys(data, f"{path}")
    parts = []
    for index, raw in enumerate(raw_parts):
        where = f"{path}, part {index + 1}" if len(raw_parts) > 1 else f"{path}"
        _check_keys(raw, where)
        if "description" in raw:
            raise ValueError(f"{where}: 'description' belongs at the top of the grid")
        parts.append(_part({**data, **raw}, where))
    return Grid(path.stem, path, str(data.get("description", "")), tuple(parts))


def _check_keys(data: dict, where: str) -> None:
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown grid key {unknown[0]!r} "
                         f"(known: {', '.join(KEYS)}, and [[part]] tables)")


def _list(data: dict, key: str, kind: type, where: str) -> tuple:
    value = data.get(key, KEYS[key][0])
    if value is None:
        raise ValueError(f"{where}: the grid needs {key!r}")
    if isinstance(value, kind) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where}: {key!r} must be a non-empty list")
    for item in value:
        if kind is float and isinstance(item, int) and not isinstance(item, bool):
            continue
        if not isinstance(item, kind) or isinstance(item, bool):
            raise ValueError(f"{where}: {key!r} holds {item!r}, not a {kind.__name__}")
    return tuple(float(v) for v in value) if kind is float else tuple(value)


def _number(data: dict, key: str, kind: type, where: str, minimum: float) -> float | int:
    value = data.get(key, KEYS[key][0])
    if isinstance(value, bool) or not isinstance(value, int | float) or (
            kind is int and not isinstance(value, int)):
        raise ValueError(f"{where}: {key!r} must be a {kind.__name__}, got {value!r}")
    if not math.isfinite(value) or value < minimum:
        raise ValueError(f"{where}: {key!r} must be >= {minimum}, got {value!r}")
    return kind(value)


def _part(data: dict, where: str) -> GridPart:
    from pruningrl.attack_suite import ATTACKS, LEARNED
    from pruningrl.finetune import IN_TRAINING
    from pruningrl.pruning import METHODS, SCOPES

    envs = _list(data, "envs", str, where)
    variants = _list(data, "variants", str, where)
    seeds = _list(data, "seeds", int, where)
    methods = _list(data, "methods", str, where)
    scopes = _list(data, "scope", str, where)
    sparsities = _list(data, "sparsities", float, where)
    attacks = _list(data, "attacks", str, where)
    for key, values, known in (("method", methods, (*METHODS, IN_TRAINING)),
                               ("scope", scopes, SCOPES),
                               ("attack", attacks, ATTACKS)):
        bad = [v for v in values if v not in known]
        if bad:
            raise ValueError(f"{where}: unknown {key} {bad[0]!r}; choose from {', '.join(known)}")
    bad = [s for s in sparsities if not 0.0 <= s < 1.0]
    if bad:
        raise ValueError(f"{where}: sparsity {bad[0]} lies outside [0, 1)")
    if "none" not in attacks:  # the clean return is part of every point
        attacks = ("none", *attacks)
    eps = data.get("eps")
    if eps is not None:
        eps = float(_number(data, "eps", float, where, 0.0))
    norm = str(data.get("norm", "inf"))
    if norm not in ("inf", "2"):
        raise ValueError(f"{where}: norm must be 'inf' or '2', got {norm!r}")
    budgets = data.get("budgets", {})
    if not isinstance(budgets, dict):
        raise ValueError(f"{where}: [budgets] must be a table of attack = positive integer")
    for name, budget in budgets.items():
        if name not in LEARNED:
            raise ValueError(f"{where}: a budget for {name!r}, which learns nothing "
                             f"(learned attacks: {', '.join(LEARNED)})")
        if isinstance(budget, bool) or not isinstance(budget, int) or budget <= 0:
            raise ValueError(f"{where}: the budget of {name!r} must be a positive integer")
    part = GridPart(
        envs, variants, seeds, methods, scopes, sparsities,
        int(_number(data, "finetune_steps", int, where, 0)), attacks, eps, norm,
        int(_number(data, "episodes", int, where, 1)), dict(budgets),
        float(_number(data, "rate", float, where, 0.0)),
        int(_number(data, "local_states", int, where, 1)),
        int(_number(data, "attack_seed", int, where, 0)), _window(data, where),
        _finetune_lr(data, where), _finetune_seeds(data, methods, where),
        _attempts(data, attacks, where), _finetune_sa_ramp(data, where))
    if not 0.0 < part.rate < 1.0:
        raise ValueError(f"{where}: rate must lie in (0, 1), got {part.rate}")
    if part.finetune_steps == 0 and any(m in ("gradual", "micro") for m in methods) and any(
            s > 0 for s in sparsities):
        raise ValueError(f"{where}: gradual and micro prune during fine-tuning: "
                         "finetune_steps must be positive")
    for key in ("finetune_lr", "finetune_sa_ramp"):
        if getattr(part, key) is not None and (part.finetune_steps == 0
                                               or IN_TRAINING in methods):
            raise ValueError(f"{where}: {key} sets the fine-tuning's schedule: it needs "
                             "finetune_steps > 0 and no in-training method")
    _check_agents(part, where)
    return part


def _finetune_lr(data: dict, where: str) -> float | None:
    if data.get("finetune_lr") is None:
        return None
    value = float(_number(data, "finetune_lr", float, where, 0.0))
    if value <= 0:
        raise ValueError(f"{where}: 'finetune_lr' must be positive, got {value!r}")
    return value


def _finetune_sa_ramp(data: dict, where: str) -> float | None:
    if data.get("finetune_sa_ramp") is None:
        return None
    value = float(_number(data, "finetune_sa_ramp", float, where, 0.0))
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{where}: 'finetune_sa_ramp' must lie in [0, 1], got {value!r}")
    return value


def _finetune_seeds(data: dict, methods: tuple[str, ...], where: str) -> tuple[int, ...] | None:
    from pruningrl.finetune import IN_TRAINING

    if data.get("finetune_seeds") is None:
        return None
    seeds = _list(data, "finetune_seeds", int, where)
    if any(seed < 0 for seed in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"{where}: 'finetune_seeds' must be distinct non-negative integers, "
                         f"got {list(seeds)!r}")
    if IN_TRAINING in methods:
        raise ValueError(f"{where}: finetune_seeds seed the fine-tuning; the in-training "
                         "method fine-tunes nothing")
    return seeds


#: what an attempt of each learned attack may set, each with its check and its rule in words
_SEED = (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0")
_LR = (lambda v: v > 0, "a number > 0")
_ENT = (lambda v: v >= 0, "a number >= 0")
_RATIO = (lambda v: 0 < v < 1, "a number in (0, 1)")
ATTEMPT_KEYS = {
    "rs": {"seed": _SEED},
    "rs+mad": {"seed": _SEED, "ratio": _RATIO},
    "optimal": {"seed": _SEED, "lr": _LR, "ent": _ENT},
    "paad": {"seed": _SEED, "lr": _LR, "ent": _ENT},
}


def _attempts(data: dict, attacks: tuple[str, ...], where: str) -> dict[str, tuple[dict, ...]]:
    """``[attempts]``: per learned attack, the list of its attempts at every point."""
    table = data.get("attempts", {})
    if not isinstance(table, dict):
        raise ValueError(f"{where}: [attempts] must be a table of attack = [{{...}}, ...]")
    out = {}
    for name, tried in table.items():
        if name not in ATTEMPT_KEYS or name not in attacks:
            raise ValueError(f"{where}: attempts of {name!r}, which is not a learned attack of "
                             f"this grid (learned: {', '.join(ATTEMPT_KEYS)})")
        if not isinstance(tried, list) or not tried or not all(isinstance(a, dict)
                                                                for a in tried):
            raise ValueError(f"{where}: the attempts of {name!r} must be a non-empty list of "
                             "tables such as {seed = 1, lr = 1e-4}")
        out[name] = tuple(_attempt(name, a, where) for a in tried)
        if len({tuple(sorted(a.items())) for a in out[name]}) != len(out[name]):
            raise ValueError(f"{where}: two attempts of {name!r} are the same")
    return out


def _attempt(name: str, attempt: dict, where: str) -> dict:
    allowed = ATTEMPT_KEYS[name]
    for key, value in attempt.items():
        if key not in allowed:
            raise ValueError(f"{where}: an attempt of {name!r} sets {key!r}; it may set "
                             f"{', '.join(allowed)}")
        check, rule = allowed[key]
        if not isinstance(value, int | float) or isinstance(value, bool) or not check(value):
            raise ValueError(f"{where}: an attempt of {name!r} has {key} = {value!r}; it must "
                             f"be {rule}")
    return {key: (v if key == "seed" else float(v)) for key, v in attempt.items()}


def _window(data: dict, where: str) -> tuple[float, float]:
    window = data.get("prune_window", KEYS["prune_window"][0])
    if (not isinstance(window, list) or len(window) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in window)
            or not 0.0 <= window[0] < window[1] <= 1.0):
        raise ValueError(f"{where}: 'prune_window' must be [start, end] with "
                         f"0 <= start < end <= 1 (fractions of the run), got {window!r}")
    return float(window[0]), float(window[1])


def _check_agents(part: GridPart, where: str) -> None:
    from pruningrl.envs import check_env_id, task_eps
    from pruningrl.zoo import agent_path

    for env in part.envs:
        try:
            check_env_id(env)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
        if part.eps is None and task_eps(env) is None:
            raise ValueError(f"{where}: {env} has no literature eps; give eps in the grid")
        for variant in part.variants:
            for seed in part.seeds:
                agent_id = f"{env}/{variant}/seed{seed}"
                if seed < 0 or not agent_path(agent_id).is_file():
                    raise ValueError(f"{where}: no shipped agent {agent_id} "
                                     "(`python -m pruningrl agents` lists them; "
                                     "scripts/train_agents.py --seeds trains more seeds)")
