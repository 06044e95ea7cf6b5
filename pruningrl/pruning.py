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

from typing import Literal

import torch
from torch import nn
from torch.nn.utils import prune

from pruningrl.policies import CategoricalPolicy, GaussianPolicy


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
    return [float((layer.weight == 0).double().mean()) for layer in prunable_layers(policy)]


def sparsity(policy: nn.Module) -> float:
    """Global sparsity: zero weight-matrix entries over all weight-matrix entries."""
    layers = prunable_layers(policy)
    zeros = sum(int((layer.weight == 0).sum()) for layer in layers)
    return zeros / sum(layer.weight.numel() for layer in layers)


def _check_sparsity(target: float) -> float:
    target = float(target)
    if not 0.0 <= target < 1.0:
        raise ValueError(f"sparsity must lie in [0, 1), got {target}")
    return target


def magnitude_prune(
    policy: nn.Module, sparsity: float, scope: Literal["global", "layer"] = "global"
) -> nn.Module:
    """Zero the smallest-magnitude weights in place (Han et al. 2015) until ``sparsity``.

    scope="global": one threshold over all weight matrices (``prune.global_unstructured`` with
    L1); scope="layer": the same fraction in every layer. Already-pruned entries stay pruned.
    Returns ``policy``.
    """
    target = _check_sparsity(sparsity)
    layers = prunable_layers(policy)
    if scope == "global":
        prune.global_unstructured(
            [(layer, "weight") for layer in layers],
            pruning_method=prune.L1Unstructured,
            amount=round(target * sum(layer.weight.numel() for layer in layers)),
        )
    elif scope == "layer":
        for layer in layers:
            prune.l1_unstructured(layer, "weight", amount=round(target * layer.weight.numel()))
    else:
        raise ValueError(f"unknown scope {scope!r}; use 'global' or 'layer'")
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
