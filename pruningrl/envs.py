"""Environments: a checked factory, and a fast vectorized environment for training and evaluation.

``make_env`` is the reader-facing factory: a plain ``gymnasium.make`` env, with a one-line
``ValueError`` for an unknown id. ``VectorEnv`` steps ``num_envs`` copies with ``num_workers``
threads or processes (or inline with ``num_workers=0``). Each worker holds a *slice* of the
envs and steps them in a plain loop, so one hand-off per worker per step carries many env steps.

Episodes reset automatically in the same step (the "same-step" convention): when an episode ends,
``step`` returns the first observation of the next episode and reports the last observation of
the finished one in ``final_obs``, so a truncated episode can be bootstrapped with V(final_obs).
"""

from __future__ import annotations

import multiprocessing as mp
import signal
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

#: The attack radius per task on normalized observations (SA-PPO, ATLA).
TASK_EPS: dict[str, float] = {"Hopper": 0.075, "Walker2d": 0.05, "HalfCheetah": 0.15, "Ant": 0.15}


def task_eps(env_id: str) -> float | None:
    """The literature's eps for a MuJoCo task id (``Hopper-v5`` -> 0.075), else None."""
    return TASK_EPS.get(env_id.split("-")[0])


def check_env_id(env_id: str) -> str:
    """Return ``env_id`` if gymnasium knows it, else raise a one-line ``ValueError``."""
    if env_id not in gym.envs.registry:
        stem = env_id.split("-")[0].lower()
        close = [k for k in gym.envs.registry if k.split("-")[0].lower() == stem]
        hint = f"; did you mean {', '.join(sorted(close))}?" if close else ""
        raise ValueError(f"unknown environment id {env_id!r}{hint}")
    return env_id


def make_env(env_id: str, **kwargs) -> gym.Env:
    """``gymnasium.make(env_id, **kwargs)`` after checking the id.

    A registered env whose own dependency is missing (``CarRacing-v3`` without Box2D) raises a
    one-line ``ValueError`` that says what to install, as an unknown id does.
    """
    check_env_id(env_id)
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.DependencyNotInstalled as error:
        hint = str(error).strip().splitlines()[0] if str(error).strip() else "a dependency"
        raise ValueError(f"{env_id} cannot be made here: {hint}") from None


def check_seed(seed: int) -> int:
    """Return ``seed`` if it is an integer >= 0 (gymnasium's rule), else a ``ValueError``."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)


@dataclass(frozen=True)
class EnvSpec:
    """What a policy needs to know about an environment."""

    env_id: str
    obs_dim: int
    discrete: bool
    act_dim: int  # number of actions if discrete, else the action vector's length
    action_low: np.ndarray = field(repr=False)
    action_high: np.ndarray = field(repr=False)
    max_episode_steps: int


def env_spec(env_id: str, env_kwargs: dict | None = None) -> EnvSpec:
    """Observation and action shapes of ``env_id`` (flat Box observations only)."""
    env = make_env(env_id, **(env_kwargs or {}))
    try:
        obs_space, act_space = env.observation_space, env.action_space
        if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
            raise ValueError(f"{env_id}: only flat Box observation spaces are supported")
        if isinstance(act_space, gym.spaces.Discrete):
            discrete, act_dim = True, int(act_space.n)
            low = high = np.zeros(0, dtype=np.float32)
        elif isinstance(act_space, gym.spaces.Box) and len(act_space.shape) == 1:
            discrete, act_dim = False, int(act_space.shape[0])
            low, high = act_space.low.astype(np.float32), act_space.high.astype(np.float32)
        else:
            raise ValueError(f"{env_id}: only Discrete and flat Box action spaces are supported")
        limit = env.spec.max_episode_steps if env.spec is not None else None
        return EnvSpec(env_id, int(obs_space.shape[0]), discrete, act_dim, low, high,
                       int(limit or 1000))
    finally:
        env.close()


class _EnvSlice:
    """A few raw (unwrapped) envs stepped in a loop, with their own time limit and statistics."""

    def __init__(
        self, env_id: str, seeds: list[int], max_episode_steps: int, env_kwargs: dict | None = None
    ) -> None:
        # The unwrapped env skips gymnasium's checker and order-enforcing wrappers (tens of
        # microseconds a step); the time limit is applied here instead.
        kwargs = env_kwargs or {}
        self.envs = [gym.make(env_id, disable_env_checker=True, **kwargs).unwrapped
                     for _ in seeds]
        self.seeds = seeds
        self.limit = max_episode_steps
        n = len(seeds)
        self.lengths = np.zeros(n, dtype=np.int64)
        self.returns = np.zeros(n, dtype=np.float64)

    def reset(self, seeds: list[int] | None = None) -> np.ndarray:
        seeds = seeds if seeds is not None else self.seeds
        self.lengths[:] = 0
        self.returns[:] = 0.0
        return np.stack([env.reset(seed=s)[0] for env, s in zip(self.envs, seeds, strict=True)])

    def step(self, actions: np.ndarray):
        n = len(self.envs)
        prepare = getattr(self.envs[0], "prepare_steps", None)
        if prepare is not None:  # an env whose per-step arithmetic batches across the slice
            prepare(self.envs, actions)
        obs = [None] * n
        rewards = np.empty(n, dtype=np.float64)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        final_obs: dict[int, np.ndarray] = {}
        episodes: list[tuple[float, int]] = []
        for i, env in enumerate(self.envs):
            o, r, term, trunc, _ = env.step(actions[i])
            self.lengths[i] += 1
            self.returns[i] += r
            trunc = trunc or self.lengths[i] >= self.limit
            rewards[i], terminated[i], truncated[i] = r, term, trunc and not term
            if term or trunc:
                final_obs[i] = o
                episodes.append((float(self.returns[i]), int(self.lengths[i])))
                self.lengths[i], self.returns[i] = 0, 0.0
                o, _ = env.reset()
            obs[i] = o
        return np.stack(obs), rewards, terminated, truncated, final_obs, episodes

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _worker(
    conn, env_id: str, seeds: list[int], max_episode_steps: int, env_kwargs: dict | None
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle
    envs = _EnvSlice(env_id, seeds, max_episode_steps, env_kwargs)
    try:
        while True:
            command, data = conn.recv()
            if command == "step":
                conn.send(envs.step(data))
            elif command == "reset":
                conn.send(envs.reset(data))
            elif command == "close":
                break
    except (KeyboardInterrupt, EOFError):
        pass
    finally:
        envs.close()
        conn.close()


@dataclass
class StepResult:
    obs: np.ndarray  # (n, obs_dim), after any automatic reset
    rewards: np.ndarray  # (n,) raw rewards
    terminated: np.ndarray  # (n,) bool: a terminal state (no bootstrap)
    truncated: np.ndarray  # (n,) bool: cut by the time limit (bootstrap from final_obs)
    final_obs: dict[int, np.ndarray]  # env index -> last observation of the finished episode
    episodes: list[tuple[float, int]]  # (return, length) of each episode that finished


class VectorEnv:
    """``num_envs`` copies of ``env_id`` stepped by ``num_workers`` workers (0: inline).

    Workers are threads by default (``backend="thread"``: MuJoCo releases the GIL while it
    simulates, and a thread needs no message passing) or processes (``backend="process"``,
    for environments that hold the GIL). Env ``i`` is seeded with ``seed + i`` on the first
    reset; ``env_kwargs`` go to ``gymnasium.make``. ``groups`` lists the env slices held by
    each worker; ``step_group``/``recv_group`` start one group's step and wait for it;
    ``step`` steps every env.
    """

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        seed: int = 0,
        num_workers: int = 0,
        backend: str = "thread",
        env_kwargs: dict | None = None,
    ) -> None:
        self.spec = env_spec(env_id, env_kwargs)
        if num_envs < 1:
            raise ValueError(f"num_envs must be positive, got {num_envs}")
        if backend not in ("thread", "process"):
            raise ValueError(f"unknown backend {backend!r}; use 'thread' or 'process'")
        self.num_envs = num_envs
        self.num_workers = max(0, min(num_workers, num_envs))
        self.backend = backend if self.num_workers else "inline"
        seeds = [seed + i for i in range(num_envs)]
        n_groups = max(1, self.num_workers)
        bounds = np.linspace(0, num_envs, n_groups + 1).round().astype(int)
        self.groups = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        limit = self.spec.max_episode_steps
        self._slices: list[_EnvSlice] = []
        self._results: list = [None] * len(self.groups)
        self._pool = None
        self._conns = []
        self._procs = []
        if self.backend == "process":
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            for group in self.groups:
                parent, child = ctx.Pipe()
                proc = ctx.Process(
                    target=_worker, args=(child, env_id, seeds[group], limit, env_kwargs),
                    daemon=True,
                )
                proc.start()
                child.close()
                self._conns.append(parent)
                self._procs.append(proc)
        else:
            self._slices = [_EnvSlice(env_id, seeds[group], limit, env_kwargs)
                            for group in self.groups]
            if self.backend == "thread":
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(max_workers=self.num_workers)
        self._pending: list[bool] = [False] * len(self.groups)

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Reset every env (env ``i`` with ``seed + i`` if a seed is given) and return obs."""
        seeds = None if seed is None else [seed + i for i in range(self.num_envs)]
        if self.backend != "process":
            return np.concatenate([
                part.reset(None if seeds is None else seeds[group])
                for part, group in zip(self._slices, self.groups, strict=True)])
        for group, conn in zip(self.groups, self._conns, strict=True):
            conn.send(("reset", None if seeds is None else seeds[group]))
        return np.concatenate([conn.recv() for conn in self._conns])

    def step_group(self, g: int, actions: np.ndarray) -> None:
        """Start group ``g``'s step (asynchronously unless the envs are stepped inline)."""
        if self.backend == "inline":
            self._results[g] = self._slices[g].step(actions)
        elif self.backend == "thread":
            self._results[g] = self._pool.submit(self._slices[g].step, actions)
        else:
            self._conns[g].send(("step", actions))
        self._pending[g] = True

    def recv_group(self, g: int) -> StepResult:
        """Wait for group ``g``'s step; env indices in ``final_obs`` are global."""
        if not self._pending[g]:
            raise RuntimeError(f"group {g} was not stepped")
        self._pending[g] = False
        if self.backend == "inline":
            result = self._results[g]
        elif self.backend == "thread":
            result = self._results[g].result()
        else:
            result = self._conns[g].recv()
        self._results[g] = None
        obs, rewards, terminated, truncated, final_obs, episodes = result
        offset = self.groups[g].start
        return StepResult(obs, rewards, terminated, truncated,
                          {offset + i: o for i, o in final_obs.items()}, episodes)

    def step(self, actions: np.ndarray) -> StepResult:
        """Step every env with ``actions`` of shape ``(num_envs, ...)``."""
        for g, group in enumerate(self.groups):
            self.step_group(g, actions[group])
        parts = [self.recv_group(g) for g in range(len(self.groups))]
        final: dict[int, np.ndarray] = {}
        episodes: list[tuple[float, int]] = []
        for part in parts:
            final.update(part.final_obs)
            episodes.extend(part.episodes)
        return StepResult(
            np.concatenate([p.obs for p in parts]),
            np.concatenate([p.rewards for p in parts]),
            np.concatenate([p.terminated for p in parts]),
            np.concatenate([p.truncated for p in parts]),
            final,
            episodes,
        )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for part in self._slices:
            part.close()
        self._slices = []
        for conn in self._conns:
            try:
                conn.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
        self._conns, self._procs = [], []

    def __enter__(self) -> VectorEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - best effort at interpreter shutdown
            pass
