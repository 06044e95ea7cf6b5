"""What the explorer shows at each sparsity: masks, per-layer sparsity, certificates, bounds.

One-shot pruning of a shipped agent (no fine-tuning), from the dense agent at every grid point.
Both pruning methods give nested masks along the grid (magnitude: a rising threshold; random:
one fixed permutation per layer), so every layer's masks are stored as one integer per entry:
the index of the first grid sparsity that prunes it (``len(sparsities)`` if none does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from pruningrl.agent import Agent, clone_policy
from pruningrl.bounds import (
    certified_statistic,
    certified_tv,
    is_constant,
    lipschitz_abs_product,
    lipschitz_spectral_product,
    local_lipschitz,
    mlp_view,
    tv_from_statistic,
)
from pruningrl.envs import task_eps
from pruningrl.evaluation import visited_states
from pruningrl.experiments.jobs import certified_radius
from pruningrl.policies import effective_weight
from pruningrl.pruning import layer_sparsity, one_shot_prune, prunable_layers, sparsity
from pruningrl.zoo import load

#: The slider's grid: 0, 0.05, ..., 0.95.
SPARSITIES: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(20))
#: eps for tasks without a literature value (the classic-control tasks)
FALLBACK_EPS = 0.1
#: one-shot methods the explorer offers (schedules need fine-tuning)
METHODS = ("magnitude", "random")
#: visited states the local bound averages over
LOCAL_STATES = 256


@lru_cache(maxsize=8)
def agent_and_states(agent_id: str) -> tuple[Agent, torch.Tensor]:
    """A shipped agent and ``LOCAL_STATES`` states its policy visits (episodes from seed 0)."""
    agent = load(agent_id)
    return agent, visited_states(agent, LOCAL_STATES, seed=0)


def default_eps(env_id: str) -> float:
    """The task's eps (``pruningrl.envs.task_eps``), or 0.1 where the literature names none."""
    eps = task_eps(env_id)
    return FALLBACK_EPS if eps is None else eps


@dataclass
class Sweep:
    """One agent pruned to every sparsity of ``sparsities`` by one method and scope."""

    agent_id: str
    method: str
    scope: str
    eps: float
    norm: str
    sparsities: list[float]
    weights: list[np.ndarray]          # dense weight matrices, input to output
    prune_index: list[np.ndarray]      # per layer: first grid index that prunes each entry
    sparsity: list[float] = field(default_factory=list)
    layer_sparsity: list[list[float]] = field(default_factory=list)
    # bounds on the statistic (Delta for a Gaussian, osc for a categorical policy) over the
    # eps-ball: eps times a Lipschitz bound; the local one is a mean over visited states
    global_bound: list[float] = field(default_factory=list)
    local_bound: list[float] = field(default_factory=list)
    crown_bound: list[float] = field(default_factory=list)   # from CROWN's output box
    spectral_bound: list[float] = field(default_factory=list)
    global_tv: list[float] = field(default_factory=list)     # the certified TV at eps
    local_tv: list[float] = field(default_factory=list)      # its local mean over the states
    crown_tv: list[float] = field(default_factory=list)      # CROWN's mean over the states
    radius: list[float | None] = field(default_factory=list)
    constant: list[bool] = field(default_factory=list)

    def index(self, target: float) -> int:
        """The grid point nearest to ``target``."""
        return int(np.argmin([abs(s - target) for s in self.sparsities]))

    def masks(self, i: int) -> list[np.ndarray]:
        """The keep-masks (True: kept) at grid point ``i``."""
        return [index > i for index in self.prune_index]

    def output_alive(self, i: int) -> bool:
        """False if the output layer is fully pruned: the policy is then a constant."""
        return self.layer_sparsity[i][-1] < 1.0


def _keep_masks(policy: torch.nn.Module) -> list[np.ndarray]:
    return [(effective_weight(layer) != 0).detach().numpy() for layer in prunable_layers(policy)]


def _prune_index(masks: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Masks per grid point -> first pruning index per entry; checks that they are nested."""
    out = []
    for layer_masks in zip(*masks, strict=True):
        stack = np.stack(layer_masks)                       # (points, out, in), True: kept
        pruned = ~stack
        first = np.where(pruned.any(0), pruned.argmax(0), len(stack))
        rebuilt = np.stack([first > i for i in range(len(stack))])
        if not np.array_equal(rebuilt, stack):
            raise ValueError("the masks along the grid are not nested")
        out.append(first.astype(np.int16))
    return out


def sweep_sparsity(
    agent: Agent, method: str = "magnitude", scope: str = "global", eps: float | None = None,
    states: torch.Tensor | None = None, sparsities: tuple[float, ...] = SPARSITIES,
    norm: str = "inf", seed: int = 0, agent_id: str = "",
) -> Sweep:
    """Prune ``agent`` to every sparsity (one shot, from dense) and certify each point.

    ``states``: the visited states the local bound averages over (None: no local bound).
    """
    eps = default_eps(agent.env_id) if eps is None else float(eps)
    weights = [effective_weight(layer).detach().numpy().copy()
               for layer in prunable_layers(agent.policy)]
    points, masks = [], []
    for target in sparsities:
        policy = clone_policy(agent.policy)
        one_shot_prune(policy, method, target, scope, seed)
        masks.append(_keep_masks(policy))
        points.append(_certify(policy, eps, norm, states))
    sweep = Sweep(agent_id or agent.env_id, method, scope, eps, norm, list(sparsities), weights,
                  _prune_index(masks))
    for name in ("sparsity", "layer_sparsity", "global_bound", "local_bound", "crown_bound",
                 "spectral_bound", "global_tv", "local_tv", "crown_tv", "radius", "constant"):
        setattr(sweep, name, [point[name] for point in points])
    return sweep


def _certify(policy: torch.nn.Module, eps: float, norm: str,
             states: torch.Tensor | None) -> dict:
    """Sparsity, certificates and bounds of one pruned policy."""
    view = mlp_view(policy)
    local_bound = local_tv = crown_bound = crown_tv = math.nan
    if states is not None:
        with torch.no_grad():
            local = eps * local_lipschitz(view, states, eps, norm)
        local_bound = float(local.mean())
        local_tv = float(tv_from_statistic(local, view.kind).mean())
        crown = certified_statistic(view, states, eps, norm, "crown")
        crown_bound = float(crown.mean())
        crown_tv = float(tv_from_statistic(crown, view.kind).mean())
    return {
        "sparsity": sparsity(policy), "layer_sparsity": layer_sparsity(policy),
        "global_bound": eps * lipschitz_abs_product(view, norm), "local_bound": local_bound,
        "crown_bound": crown_bound,
        "spectral_bound": eps * lipschitz_spectral_product(view, norm),
        "global_tv": float(certified_tv(view, eps, norm)), "local_tv": local_tv,
        "crown_tv": crown_tv,
        "radius": certified_radius(view, norm), "constant": is_constant(view),
    }
