"""Hand-derived gradients of the PPO loss for MLP actor-critics: the trainer's fast path.

On a 2-core CPU a 64-sample minibatch is so small that autograd's bookkeeping, and even torch's
per-operation dispatch, cost more than the arithmetic. For the loss of ``pruningrl.ppo`` and
the SA-PPO term the gradient has a short closed form, computed here in numpy on views of the
parameters' memory (``NumpyGradients``) and checked against autograd in
``tests/test_gradients.py``. With r = exp(log pi - log pi_old) and B the minibatch size:

    dL/d log pi_i = -(A_i r_i / B) [A_i >= 0 and r_i <= 1 + c  or  A_i < 0 and r_i >= 1 - c]
    Gaussian:     d log pi / d mu = (a - mu) / sigma^2,   d log pi / d log sigma = z^2 - 1
                  (z = (a - mu) / sigma), and dH / d log sigma = 1
    categorical:  d log pi / d logits = onehot(a) - p,   dH_i / d logits = -p (log p + H_i)
    critic:       dL/dV_i = c_v (V_i - R_i) / B

and backpropagation through Linear -> tanh/ReLU -> ... -> Linear layers:
dW_l = g_l^T h_{l-1}, db_l = sum_rows g_l, g_{l-1} = (g_l W_l) * sigma'(z_{l-1}), with
tanh' = 1 - h^2. A pruned layer (``torch.nn.utils.prune``: W = W_orig * M) gets dW_orig = dW * M,
so pruned entries receive no gradient, as with autograd.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pruningrl.policies import GaussianPolicy, Policy, effective_weight

LOG_2PI = 1.8378770664093453


def _linears_and_activation(net: nn.Sequential) -> tuple[list[nn.Linear], bool]:
    """The Linear layers of an MLP ``nn.Sequential`` and whether it uses ReLU (else tanh)."""
    linears = [m for m in net if isinstance(m, nn.Linear)]
    activations = {type(m).__name__ for m in net if not isinstance(m, nn.Linear)}
    if activations - {"Tanh", "ReLU"}:
        raise ValueError(f"the numpy path handles Linear/Tanh/ReLU MLPs, got {activations}")
    return linears, "ReLU" in activations


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _hidden(x: np.ndarray, weights: list[np.ndarray], biases: list[np.ndarray],
            relu: bool) -> list[np.ndarray]:
    """[h_0 = x, h_1, ..., h_{L-1}], h_l = sigma(W_l h_{l-1} + b_l)."""
    hs = [x]
    for w, b in zip(weights[:-1], biases[:-1], strict=True):
        pre = hs[-1] @ w.T + b
        hs.append(np.maximum(pre, 0.0) if relu else np.tanh(pre))
    return hs


def _backward(
    hs: list[np.ndarray],
    weights: list[np.ndarray],
    g: np.ndarray,
    relu: bool,
    param_grads: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] | None = None,
) -> np.ndarray | None:
    """Backpropagate g = dL/dz. With ``param_grads`` ((dW, db, mask) per layer) accumulate
    dW_l += (g_l^T h_{l-1}) * M, db_l += sum_rows g_l and return None; without, return the
    input gradient J_z^T g."""
    for i in range(len(weights) - 1, -1, -1):
        if param_grads is not None:
            grad_w, grad_b, mask = param_grads[i]
            grad_weight = g.T @ hs[i]
            grad_w += grad_weight if mask is None else grad_weight * mask
            grad_b += g.sum(0)
            if i == 0:
                return None
        g = g @ weights[i]
        if i > 0:
            h = hs[i]
            g = g * ((h > 0) if relu else (1.0 - h * h))
    return g


def divergence_gradients(
    policy: Policy, clean_out: np.ndarray, attacked_out: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """D per row of ``pruningrl.ppo.policy_divergence``, dD/dz' and dD/dz, in numpy.

    Gaussian (sigma held fixed): D = sum_j (z'_j - z_j)^2 / sigma_j^2, dD/dz' = -dD/dz =
    2 (z' - z) / sigma^2. Categorical: D = KL(p || q), p = softmax z, q = softmax z',
    dD/dz' = q - p and dD/dz = p * (v - D), v = log p - log q.
    """
    if isinstance(policy, GaussianPolicy):
        inv_var = np.exp(-2.0 * policy.log_std.detach().numpy()).astype(attacked_out.dtype)
        diff = attacked_out - clean_out
        grad_attacked = 2.0 * diff * inv_var
        return (diff * diff * inv_var).sum(-1), grad_attacked, -grad_attacked
    log_p = np.log(_softmax(clean_out))
    log_q = np.log(_softmax(attacked_out))
    p, v = np.exp(log_p), log_p - log_q
    divergence = (p * v).sum(-1)
    return divergence, np.exp(log_q) - p, p * (v - divergence[:, None])


class _NetView:
    """An MLP's parameters as numpy views (updated in place by the optimizer), with gradient
    buffers that the parameters' ``.grad`` tensors share."""

    def __init__(self, net: nn.Sequential, buffers: dict[torch.Tensor, np.ndarray]) -> None:
        linears, self.relu = _linears_and_activation(net)
        self.raw, self.masks, self.biases, self.grads = [], [], [], []
        for layer in linears:
            mask = getattr(layer, "weight_mask", None)
            weight = layer.weight_orig if mask is not None else layer.weight
            w, b = weight.detach().numpy(), layer.bias.detach().numpy()
            self.raw.append(w)
            self.masks.append(None if mask is None else mask.detach().numpy())
            self.biases.append(b)
            self.grads.append((buffers.setdefault(weight, np.zeros_like(w)),
                               buffers.setdefault(layer.bias, np.zeros_like(b)),
                               self.masks[-1]))

    def weights(self) -> list[np.ndarray]:
        """The effective weights W * M, read now (after the latest optimizer step)."""
        return [w if m is None else w * m for w, m in zip(self.raw, self.masks, strict=True)]

    def forward(self, x: np.ndarray, weights: list[np.ndarray]) -> list[np.ndarray]:
        """[h_0 = x, h_1, ..., h_{L-1}, z]."""
        hs = _hidden(x, weights, self.biases, self.relu)
        hs.append(hs[-1] @ weights[-1].T + self.biases[-1])
        return hs

    def backward(self, hs: list[np.ndarray], weights: list[np.ndarray], g: np.ndarray) -> None:
        """Accumulate d/dtheta of sum(g * z) into the gradient buffers (pruned entries get 0)."""
        _backward(hs, weights, g, self.relu, self.grads)


class NumpyGradients:
    """The trainer's fast path: d loss / d theta for an actor-critic, in numpy.

    Gradient buffers are float32 arrays whose memory the parameters' ``.grad`` tensors share
    (``attach``), so ``zero``, ``add_ppo``, ``add_sa`` (or ``add_autograd``) and ``clip`` are
    followed directly by ``optimizer.step()``. Build a new one whenever pruning masks change.
    """

    def __init__(self, policy: Policy, value: nn.Module | None = None) -> None:
        self.policy = policy
        self.buffers: dict[torch.Tensor, np.ndarray] = {}
        self.actor = _NetView(policy.net, self.buffers)
        self.critic = None if value is None else _NetView(value.net, self.buffers)
        self.gaussian = isinstance(policy, GaussianPolicy)
        if self.gaussian:
            self.log_std = policy.log_std.detach().numpy()
            self.grad_log_std = self.buffers.setdefault(policy.log_std, np.zeros_like(self.log_std))

    def attach(self) -> None:
        """Make every parameter's ``.grad`` a tensor view of its buffer."""
        for param, buffer in self.buffers.items():
            param.grad = torch.from_numpy(buffer)

    def zero(self) -> None:
        for buffer in self.buffers.values():
            buffer.fill(0.0)

    def add_ppo(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        old_log_prob: np.ndarray,
        advantages: np.ndarray,
        returns: np.ndarray,
        clip: float,
        vf_coef: float,
        ent_coef: float = 0.0,
    ) -> None:
        """Add d/dtheta of ``L_clip + vf_coef * 1/2 mean((V - R)^2) - ent_coef * H``."""
        batch = obs.shape[0]
        weights = self.actor.weights()
        hs = self.actor.forward(obs, weights)
        out = hs[-1]
        if self.gaussian:
            inv_std = np.exp(-self.log_std)
            z = (actions - out) * inv_std
            log_prob = -0.5 * (z * z).sum(-1) - self.log_std.sum() - 0.5 * out.shape[-1] * LOG_2PI
            ratio = np.exp(log_prob - old_log_prob)
            active = np.where(advantages >= 0, ratio <= 1 + clip, ratio >= 1 - clip)
            d_log_prob = np.where(active, -advantages * ratio / batch, 0.0).astype(out.dtype)
            grad_out = d_log_prob[:, None] * z * inv_std
            self.grad_log_std += (d_log_prob[:, None] * (z * z - 1.0)).sum(0) - ent_coef
        else:
            log_p = out - out.max(-1, keepdims=True)
            log_p = log_p - np.log(np.exp(log_p).sum(-1, keepdims=True))
            p = np.exp(log_p)
            rows, index = np.arange(batch), actions.astype(np.int64)
            ratio = np.exp(log_p[rows, index] - old_log_prob)
            active = np.where(advantages >= 0, ratio <= 1 + clip, ratio >= 1 - clip)
            d_log_prob = np.where(active, -advantages * ratio / batch, 0.0).astype(out.dtype)
            grad_out = -d_log_prob[:, None] * p
            grad_out[rows, index] += d_log_prob
            if ent_coef:
                entropy = -(p * log_p).sum(-1, keepdims=True)
                grad_out += ent_coef * p * (log_p + entropy) / batch
        self.actor.backward(hs, weights, grad_out)
        if self.critic is None:
            raise ValueError("add_ppo needs the value network: NumpyGradients(policy, value)")
        critic_weights = self.critic.weights()
        hs = self.critic.forward(obs, critic_weights)
        self.critic.backward(hs, critic_weights, (vf_coef / batch) * (hs[-1] - returns[:, None]))

    def add_sa(self, states: np.ndarray, attacked: np.ndarray, weight: float,
               detach_std: bool = True) -> float:
        """Add d/dtheta of ``weight * mean_i D(pi(.|s_i), pi(.|s'_i))``; return mean D.

        The worst-case states s' are held fixed (the inner maximum's envelope) and both ends of
        the divergence are differentiated (``divergence_gradients``), as autograd does for
        ``pruningrl.ppo.sa_regularizer``. Unless ``detach_std``, a Gaussian's log-std gets
        dD/dlog sigma_j = -2 (z'_j - z_j)^2 / sigma_j^2 too.
        """
        scale = weight / states.shape[0]
        weights = self.actor.weights()
        clean = self.actor.forward(states, weights)
        worst = self.actor.forward(attacked, weights)
        divergence, grad_worst, grad_clean = divergence_gradients(self.policy, clean[-1], worst[-1])
        self.actor.backward(worst, weights, scale * grad_worst)
        self.actor.backward(clean, weights, scale * grad_clean)
        if self.gaussian and not detach_std:
            diff = worst[-1] - clean[-1]
            inv_var = np.exp(-2.0 * self.log_std)
            self.grad_log_std += (scale * -2.0 * (diff * diff * inv_var).sum(0)).astype(
                self.grad_log_std.dtype)
        return float(divergence.mean())

    def add_autograd(self, loss: torch.Tensor) -> None:
        """Add d loss / d theta, by autograd, for a scalar ``loss`` of the parameters (a term
        with no closed form here, such as a certified bound's backward pass)."""
        params = [p for p in self.buffers if p.requires_grad]
        for param, grad in zip(params, torch.autograd.grad(loss, params, allow_unused=True),
                               strict=True):
            if grad is not None:
                self.buffers[param] += grad.numpy()

    def clip(self, max_norm: float) -> float:
        """Scale all gradients by min(1, max_norm / (||g||_2 + 1e-6)), as
        ``torch.nn.utils.clip_grad_norm_``; return the norm before clipping."""
        total = float(np.sqrt(sum(float(np.vdot(b, b)) for b in self.buffers.values())))
        coef = max_norm / (total + 1e-6)
        if coef < 1.0:
            for buffer in self.buffers.values():
                buffer *= coef
        return total

    def as_dict(self) -> dict[torch.Tensor, torch.Tensor]:
        """The current gradients, keyed by parameter (copies)."""
        return {param: torch.from_numpy(buffer.copy()) for param, buffer in self.buffers.items()}


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().numpy().astype(np.float32, copy=False)


def ppo_gradients(
    policy: Policy,
    value: nn.Module,
    obs: torch.Tensor,
    actions: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    clip: float,
    vf_coef: float,
    ent_coef: float = 0.0,
) -> dict[torch.Tensor, torch.Tensor]:
    """d loss / d parameter for every parameter of ``policy`` and ``value`` (keyed by tensor).

    ``loss = L_clip + vf_coef * 1/2 mean((V - R)^2) - ent_coef * H``, with ``advantages``
    already normalized if the trainer normalizes them.
    """
    grads = NumpyGradients(policy, value)
    grads.add_ppo(_numpy(obs), _numpy(actions), _numpy(old_log_prob), _numpy(advantages),
                  _numpy(returns), clip, vf_coef, ent_coef)
    return grads.as_dict()


def sa_gradients(
    policy: Policy, states: torch.Tensor, attacked: torch.Tensor, weight: float,
    detach_std: bool = True,
) -> tuple[dict[torch.Tensor, torch.Tensor], float]:
    """d/dtheta of ``weight * mean_i D(pi(.|s_i), pi(.|s'_i))`` for the actor's parameters
    (keyed by tensor; the log-std is held fixed unless ``detach_std`` is False), and mean D."""
    grads = NumpyGradients(policy)
    divergence = grads.add_sa(_numpy(states), _numpy(attacked), weight, detach_std)
    log_std = getattr(policy, "log_std", None)
    return {p: g for p, g in grads.as_dict().items()
            if p is not log_std or not detach_std}, divergence


class NumpyMLP:
    """A network z(s) in numpy, with the input gradient J_z(s)^T v.

    z = W_L h_{L-1} + b_L, h_l = sigma(W_l h_{l-1} + b_l), h_0 = s; for tanh,
    J^T v = W_1^T [(1 - h_1^2) * W_2^T [ ... (1 - h_{L-1}^2) * W_L^T v ]].
    Pruned layers compute with their effective weight W * M. The weights are copied, so the
    object is a snapshot. On a 64-row batch a numpy call costs a microsecond or two, torch's
    several: loops of many small steps (adversaries, the SA inner maximum) run here.
    """

    def __init__(self, net: nn.Sequential, dtype: type = np.float64) -> None:
        linears, self.relu = _linears_and_activation(net)
        with torch.no_grad():
            self.weights = [np.array(effective_weight(m).detach().numpy(), dtype=dtype)
                            for m in linears]
            self.biases = [np.array(m.bias.detach().numpy(), dtype=dtype) for m in linears]

    def hidden(self, s: np.ndarray) -> list[np.ndarray]:
        """[h_0 = s, h_1, ..., h_{L-1}]: the input and every hidden activation."""
        return _hidden(s, self.weights, self.biases, self.relu)

    def output(self, hs: list[np.ndarray]) -> np.ndarray:
        """z from the activations ``hidden`` returned."""
        return hs[-1] @ self.weights[-1].T + self.biases[-1]

    def __call__(self, s: np.ndarray) -> np.ndarray:
        return self.output(self.hidden(s))

    def vjp(self, s: np.ndarray, v: np.ndarray, hs: list[np.ndarray] | None = None) -> np.ndarray:
        """Rows of J_z(s)^T v for states s (b, n) and vectors v (b, m); ``hs`` reuses
        ``hidden(s)`` when the caller already has it."""
        return _backward(self.hidden(s) if hs is None else hs, self.weights, v, self.relu)
