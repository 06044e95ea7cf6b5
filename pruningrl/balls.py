"""The threat model's geometry: l_p balls B_p(s, eps), p in {2, inf}, on normalized states.

Projection, a membership assertion, and uniform sampling. Shared by the attacks, the SA-PPO
regularizer's inner maximization and the certificates' sanity checks.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from pruningrl.bounds import parse_norm

#: Slack allowed by ``assert_in_ball`` for floating-point round-off.
BALL_TOLERANCE = 1e-6


Array = torch.Tensor | np.ndarray


def project_to_ball(delta: Array, eps: float, norm: str | float = "inf") -> Array:
    """The Euclidean projection of each row of ``delta`` onto {d : ||d||_p <= eps}: clip for
    l_inf, rescale by min(1, eps / ||d||_2) for l_2. Tensors and numpy arrays alike."""
    p = parse_norm(norm)
    if isinstance(delta, np.ndarray):
        if p == math.inf:  # np.clip's value, without its wrappers (adversaries call this often)
            return np.minimum(np.maximum(delta, -eps), eps)
        length = np.linalg.norm(delta, axis=-1, keepdims=True)
        return delta * np.minimum(eps / np.maximum(length, 1e-30), 1.0)
    if p == math.inf:
        return delta.clamp(-eps, eps)
    length = delta.norm(dim=-1, keepdim=True)
    return delta * torch.clamp(eps / length.clamp_min(1e-30), max=1.0)


def ascent_direction(grad: Array, norm: str | float = "inf") -> Array:
    """The steepest unit step for a gradient in the l_p geometry: sign(g) for l_inf,
    g / ||g||_2 for l_2 (a zero row stays zero). Tensors and numpy arrays alike."""
    p = parse_norm(norm)
    if isinstance(grad, np.ndarray):
        if p == math.inf:
            return np.sign(grad)
        return grad / np.maximum(np.linalg.norm(grad, axis=-1, keepdims=True), 1e-12)
    if p == math.inf:
        return grad.sign()
    return grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def assert_in_ball(delta: torch.Tensor, eps: float, norm: str | float = "inf") -> None:
    """Raise AssertionError if any row of ``delta`` leaves the ball (up to round-off)."""
    p = parse_norm(norm)
    size = delta.abs().amax(-1) if p == math.inf else delta.norm(dim=-1)
    worst = float(size.max()) if size.numel() else 0.0
    if worst > eps * (1 + BALL_TOLERANCE) + BALL_TOLERANCE:
        raise AssertionError(f"perturbation of size {worst} leaves the eps={eps} ball")


def random_in_ball(
    shape: tuple[int, ...],
    eps: float,
    norm: str | float = "inf",
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Uniform samples from B_p(0, eps): a cube for inf, a ball (radius ~ U^{1/n}) for 2."""
    p = parse_norm(norm)
    if p == math.inf:
        return (2 * torch.rand(shape, generator=generator, dtype=dtype) - 1) * eps
    direction = torch.randn(shape, generator=generator, dtype=dtype)
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    radius = torch.rand((*shape[:-1], 1), generator=generator, dtype=dtype) ** (1 / shape[-1])
    return direction * radius * eps
