"""Elementwise pruning of policy networks, and sparsity accounting.

Definitions (the book's chapter "Pruning cannot hurt"):

* **Elementwise pruning** replaces every weight matrix W_l of the policy network by M_l o W_l,
  for a 0/1 mask M_l of the same shape. Biases and the Gaussian log-std are never pruned.
* **Sparsity** is the fraction of weight-matrix entries that are zero:
  sum_l #{(i, j): W_l[i, j] = 0} / sum_l #W_l globally, and the same ratio per layer. A weight
  that is zero counts as pruned whatever zeroed it (a ``torch.nn.utils.prune`` mask, an
  in-place multiply, or training).

Masks are ``torch.nn.utils.prune`` masks (``weight_orig`` and ``weight_mask``), so they survive
optimiser steps and serialise with the state dict.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn
from torch.nn.utils import prune

from pruningrl.policies import CategoricalPolicy, GaussianPolicy, effective_weight


def prunable_layers(policy: nn.Module) -> list[nn.Linear]:
    """The ``nn.Linear`` layers of the policy network, input to output.

    For a Gaussian or categorical policy that is ``policy.net``; for any other module, all its
    ``nn.Linear`` submodules in registration order.
    """
    net = policy.net if isinstance(policy, GaussianPolicy | CategoricalPolicy) else policy
    layers = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise ValueError(f"{type(policy).__name__} has no nn.Linear layers to prune")
    return layers


def layer_sparsity(policy: nn.Module) -> list[float]:
    """Fraction of zero entries in each weight matrix, input to output."""
    return [float((effective_weight(layer) == 0).double().mean())
            for layer in prunable_layers(policy)]


def sparsity(policy: nn.Module) -> float:
    """Global sparsity: zero weight-matrix entries over all weight-matrix entries."""
    layers = prunable_layers(policy)
    zeros = sum(int((effective_weight(layer) == 0).sum()) for layer in layers)
    return zeros / sum(layer.weight.numel() for layer in layers)


def _check_sparsity(target: float) -> float:
    target = float(target)
    if not 0.0 <= target < 1.0:
        raise ValueError(f"sparsity must lie in [0, 1), got {target}")
    return target


def _masked_count(layer: nn.Linear) -> int:
    """How many entries of the layer's weight a ``torch.nn.utils.prune`` mask already removes."""
    mask = getattr(layer, "weight_mask", None)
    return 0 if mask is None else int((mask == 0).sum())


def magnitude_prune(
    policy: nn.Module, sparsity: float, scope: Literal["global", "layer"] = "global"
) -> nn.Module:
    """Zero the smallest-magnitude weights in place (Han et al. 2015) until ``sparsity``.

    ``sparsity`` is the *total* fraction of masked entries afterwards, already-pruned ones
    included, so repeated calls with rising targets make a schedule. scope="global": one
    threshold over all weight matrices (``prune.global_unstructured`` with L1); scope="layer":
    the same fraction in every layer (``prune.l1_unstructured``). Pruned entries stay pruned;
    a target below the current masked fraction raises ``ValueError``. Returns ``policy``.
    """
    target = _check_sparsity(sparsity)
    if scope not in ("global", "layer"):
        raise ValueError(f"unknown scope {scope!r}; use 'global' or 'layer'")
    layers = prunable_layers(policy)
    if scope == "global":
        total = sum(layer.weight.numel() for layer in layers)
        masked = sum(_masked_count(layer) for layer in layers)
        extra = round(target * total) - masked
        if extra < 0:
            raise ValueError(
                f"the policy is already pruned to {masked / total:.4f}; cannot prune to {target}"
            )
        # amount counts among the entries not yet masked (torch's PruningContainer)
        prune.global_unstructured(
            [(layer, "weight") for layer in layers],
            pruning_method=prune.L1Unstructured,
            amount=extra,
        )
    else:
        for layer in layers:
            extra = round(target * layer.weight.numel()) - _masked_count(layer)
            if extra < 0:
                raise ValueError(f"a layer is already pruned beyond {target}")
            prune.l1_unstructured(layer, "weight", amount=extra)
    return policy


def random_masks(
    policy: nn.Module, sparsity: float, generator: torch.Generator | None = None
) -> list[torch.Tensor]:
    """Independent Bernoulli(1 - sparsity) keep-masks, one per weight matrix."""
    target = _check_sparsity(sparsity)
    return [
        (torch.rand(layer.weight.shape, generator=generator) >= target).to(layer.weight.dtype)
        for layer in prunable_layers(policy)
    ]


def apply_masks(policy: nn.Module, masks: list[torch.Tensor]) -> nn.Module:
    """Attach 0/1 masks to the weight matrices with ``prune.custom_from_mask``. Returns policy."""
    layers = prunable_layers(policy)
    if len(masks) != len(layers):
        raise ValueError(f"got {len(masks)} masks for {len(layers)} weight matrices")
    for layer, mask in zip(layers, masks, strict=True):
        if mask.shape != layer.weight.shape:
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} does not fit weight {tuple(layer.weight.shape)}"
            )
        prune.custom_from_mask(layer, "weight", mask)
    return policy


def random_prune(policy: nn.Module, sparsity: float, seed: int = 0) -> nn.Module:
    """Zero a uniformly random ``sparsity`` fraction of each weight matrix (in place)."""
    target = _check_sparsity(sparsity)
    generator = torch.Generator().manual_seed(seed)
    masks = []
    for layer in prunable_layers(policy):
        n = layer.weight.numel()
        keep = torch.ones(n)
        keep[torch.randperm(n, generator=generator)[: round(target * n)]] = 0.0
        masks.append(keep.view_as(layer.weight))
    return apply_masks(policy, masks)


def make_permanent(policy: nn.Module) -> nn.Module:
    """Fold every ``torch.nn.utils.prune`` mask into its weight (for export). Returns policy."""
    for layer in prunable_layers(policy):
        if prune.is_pruned(layer) and hasattr(layer, "weight_mask"):
            prune.remove(layer, "weight")
    return policy


# ---------------------------------------------------------------------------------------------
# Schedules: pruning during training, as ``pruningrl.ppo`` update hooks
# ---------------------------------------------------------------------------------------------

METHODS = ("random", "magnitude", "gradual", "micro")
SCOPES = ("global", "layer")


def cubic_sparsity(
    progress: float, final: float, initial: float = 0.0, start: float = 0.0, end: float = 0.75
) -> float:
    """Zhu & Gupta (2017): s(t) = s_f + (s_i - s_f) (1 - (t - t_0) / (t_1 - t_0))^3 on [t_0, t_1].

    ``progress`` is t as a fraction of training; before ``start`` the sparsity is ``initial``,
    after ``end`` it is ``final``. It rises fast at first, while the network has redundancy to
    lose, and slowly near the end.
    """
    if not 0.0 <= start < end <= 1.0:
        raise ValueError(f"need 0 <= start < end <= 1, got start={start}, end={end}")
    if progress <= start:
        return initial
    if progress >= end:
        return final
    fraction = (progress - start) / (end - start)
    return final + (initial - final) * (1.0 - fraction) ** 3


class GradualPruning:
    """Magnitude pruning along the cubic ramp, applied between PPO updates (a ``UpdateHook``).

    At every update the policy is pruned (by magnitude, ``scope``) to
    ``cubic_sparsity(step / total, final, start=start, end=end)``; from ``end`` on it sits at
    exactly ``final``, so the remaining updates fine-tune the final mask.
    """

    def __init__(
        self,
        final: float,
        scope: Literal["global", "layer"] = "global",
        start: float = 0.0,
        end: float = 0.75,
    ) -> None:
        self.final = _check_sparsity(final)
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}; use 'global' or 'layer'")
        cubic_sparsity(0.0, self.final, start=start, end=end)  # validates start and end
        self.scope, self.start, self.end = scope, start, end
        self.history: list[tuple[int, float]] = []

    def target(self, step: int, total: int) -> float:
        return cubic_sparsity(step / total, self.final, start=self.start, end=self.end)

    def __call__(self, policy: nn.Module, step: int, total: int) -> None:
        target = self.target(step, total)
        if target > _masked_fraction(policy, self.scope, target):
            magnitude_prune(policy, target, self.scope)
        self.history.append((step, sparsity(policy)))


class MicroPruning:
    """Many small magnitude steps: after each update, prune a fraction of the remaining weights.

    The fraction is ``rate`` (for example 2%), or the smallest constant fraction that still
    reaches ``final`` by ``end`` (a fraction of training) if the budget is too short for
    ``rate``: a geometric ramp s_k = 1 - (1 - s_0)(1 - r)^k that the network follows update by
    update, never a late jump. From ``end`` on the policy sits at exactly ``final``.
    """

    def __init__(
        self,
        final: float,
        rate: float = 0.02,
        scope: Literal["global", "layer"] = "global",
        start: float = 0.0,
        end: float = 0.75,
    ) -> None:
        self.final = _check_sparsity(final)
        if not 0.0 < rate < 1.0:
            raise ValueError(f"rate must lie in (0, 1), got {rate}")
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}; use 'global' or 'layer'")
        cubic_sparsity(0.0, self.final, start=start, end=end)  # validates start and end
        self.rate, self.scope, self.start, self.end = rate, scope, start, end
        self.history: list[tuple[int, float]] = []
        self._last_step = 0

    def __call__(self, policy: nn.Module, step: int, total: int) -> None:
        per_update = max(step - self._last_step, 1)
        self._last_step = step
        current = _masked_fraction(policy, self.scope, self.final)
        target = current
        if step >= self.end * total:
            target = self.final
        elif step > self.start * total and current < self.final:
            # updates left before `end`, this one included
            left = max(1, math.floor((self.end * total - step) / per_update) + 1)
            needed = 1.0 - ((1.0 - self.final) / (1.0 - current)) ** (1.0 / left)
            rate = max(self.rate, needed)
            target = min(self.final, current + rate * (1.0 - current))
        if target > current:
            magnitude_prune(policy, target, self.scope)
        self.history.append((step, sparsity(policy)))


def _masked_fraction(policy: nn.Module, scope: str, target: float) -> float:
    """The masked fraction that ``magnitude_prune`` would compare ``target`` with."""
    layers = prunable_layers(policy)
    if scope == "global":
        total = sum(layer.weight.numel() for layer in layers)
        return sum(_masked_count(layer) for layer in layers) / total
    # layer scope: the least-pruned layer decides whether there is anything left to do
    return min(_masked_count(layer) / layer.weight.numel() for layer in layers)


def one_shot_prune(
    policy: nn.Module,
    method: str,
    sparsity: float,
    scope: Literal["global", "layer"] = "global",
    seed: int = 0,
) -> nn.Module:
    """Prune once by ``method`` ("random" or "magnitude"). Returns ``policy``."""
    if method == "magnitude":
        return magnitude_prune(policy, sparsity, scope)
    if method == "random":
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}; use 'global' or 'layer'")
        return random_prune(policy, sparsity, seed)
    if method in ("gradual", "micro"):
        raise ValueError(f"{method!r} pruning is a schedule: it needs fine-tuning steps")
    raise ValueError(f"unknown pruning method {method!r}; choose one of {', '.join(METHODS)}")


def schedule(
    method: str,
    final: float,
    scope: Literal["global", "layer"] = "global",
    rate: float = 0.02,
    window: tuple[float, float] = (0.0, 0.75),
) -> GradualPruning | MicroPruning:
    """The update hook of a scheduled method ("gradual" or "micro"), pruning from
    ``window[0]`` to ``window[1]`` of the run (fractions of its steps)."""
    start, end = window
    if method == "gradual":
        return GradualPruning(final, scope, start, end)
    if method == "micro":
        return MicroPruning(final, rate, scope, start, end)
    raise ValueError(f"unknown pruning schedule {method!r}; use 'gradual' or 'micro'")
