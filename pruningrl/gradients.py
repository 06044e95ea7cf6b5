"""Hand-derived gradients of the PPO loss for MLP actor-critics: the trainer's fast path.

On a 2-core CPU a 64-sample minibatch is so small that autograd's bookkeeping costs more than
the arithmetic. For the loss of ``pruningrl.ppo`` (without the SA term) the gradient has a short
closed form, computed here with plain tensor operations and checked against autograd in
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


def _layers(net: nn.Sequential) -> tuple[list[tuple[nn.Linear, torch.Tensor]], str]:
    """(layer, effective weight) pairs and the activation name of an MLP ``nn.Sequential``."""
    pairs, activation = [], "tanh"
    for module in net:
        if isinstance(module, nn.Linear):
            mask = getattr(module, "weight_mask", None)
            weight = module.weight_orig * mask if mask is not None else module.weight
            pairs.append((module, weight))
        elif isinstance(module, nn.ReLU):
            activation = "relu"
        elif not isinstance(module, nn.Tanh):
            raise ValueError(f"the fast gradient handles Linear/Tanh/ReLU MLPs, not {module}")
    return pairs, activation


def _forward(net: nn.Sequential, x: torch.Tensor):
    pairs, activation = _layers(net)
    hidden = [x]
    for i, (layer, weight) in enumerate(pairs):
        x = torch.addmm(layer.bias, x, weight.t())
        if i < len(pairs) - 1:
            x = torch.tanh(x) if activation == "tanh" else torch.relu(x)
        hidden.append(x)
    return x, (pairs, activation, hidden)


def _add(grads: dict[torch.Tensor, torch.Tensor], key: torch.Tensor, value: torch.Tensor) -> None:
    grads[key] = grads[key] + value if key in grads else value


def _backward(
    cache, grad_out: torch.Tensor, grads: dict[torch.Tensor, torch.Tensor] | None
) -> torch.Tensor:
    """Backpropagate ``grad_out``; accumulate parameter gradients into ``grads`` (unless None)
    and return the gradient with respect to the network's input."""
    pairs, activation, hidden = cache
    g = grad_out
    for i in range(len(pairs) - 1, -1, -1):
        layer, weight = pairs[i]
        if grads is not None:
            grad_weight = g.t() @ hidden[i]
            mask = getattr(layer, "weight_mask", None)
            if mask is not None:
                _add(grads, layer.weight_orig, grad_weight * mask)
            else:
                _add(grads, layer.weight, grad_weight)
            _add(grads, layer.bias, g.sum(0))
        if i > 0:
            h = hidden[i]
            slope = 1.0 - h * h if activation == "tanh" else (h > 0).to(h.dtype)
            g = (g @ weight) * slope
        else:
            g = g @ weight
    return g


@torch.no_grad()
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
    batch = obs.shape[0]
    grads: dict[torch.Tensor, torch.Tensor] = {}
    out, actor_cache = _forward(policy.net, obs)
    if isinstance(policy, GaussianPolicy):
        log_std = policy.log_std
        inv_std = torch.exp(-log_std)
        z = (actions - out) * inv_std
        log_prob = -0.5 * (z * z).sum(-1) - log_std.sum()  # the constant cancels in the ratio
        old = old_log_prob + 0.5 * out.shape[-1] * 1.8378770664093453  # log(2 pi)
        ratio = torch.exp(log_prob - old)
        active = torch.where(advantages >= 0, ratio <= 1 + clip, ratio >= 1 - clip)
        d_log_prob = torch.where(active, -advantages * ratio / batch, 0.0)
        grad_out = d_log_prob[:, None] * z * inv_std
        grad_log_std = (d_log_prob[:, None] * (z * z - 1.0)).sum(0)
        if ent_coef:
            grad_log_std = grad_log_std - ent_coef
        grads[log_std] = grad_log_std
    else:
        log_p = torch.log_softmax(out, -1)
        p = log_p.exp()
        index = actions.long()[:, None]
        log_prob = log_p.gather(-1, index)[:, 0]
        ratio = torch.exp(log_prob - old_log_prob)
        active = torch.where(advantages >= 0, ratio <= 1 + clip, ratio >= 1 - clip)
        d_log_prob = torch.where(active, -advantages * ratio / batch, 0.0)
        grad_out = -d_log_prob[:, None] * p
        grad_out.scatter_add_(-1, index, d_log_prob[:, None])
        if ent_coef:
            entropy = -(p * log_p).sum(-1, keepdim=True)
            grad_out = grad_out + ent_coef * p * (log_p + entropy) / batch
    _backward(actor_cache, grad_out, grads)
    v, critic_cache = _forward(value.net, obs)
    _backward(critic_cache, (vf_coef / batch) * (v[:, 0] - returns)[:, None], grads)
    return grads


# ----------------------------------------------------------------------------- SA-PPO


def _divergence_grads(policy: Policy, clean_out: torch.Tensor, attacked_out: torch.Tensor):
    """D per row and dD/d(attacked output), dD/d(clean output), for D of ``policy_divergence``.

    Gaussian: D = sum_j (z'_j - z_j)^2 / sigma_j^2 (sigma held fixed), so dD/dz' = 2 (z' - z) /
    sigma^2 = -dD/dz. Categorical: D = KL(p || q) with p = softmax z, q = softmax z', so
    dD/dz' = q - p and dD/dz = p * (v - sum_k p_k v_k), v = log p - log q.
    """
    if isinstance(policy, GaussianPolicy):
        inv_var = torch.exp(-2 * policy.log_std.detach())
        diff = attacked_out - clean_out
        grad_attacked = 2.0 * diff * inv_var
        return (diff * diff * inv_var).sum(-1), grad_attacked, -grad_attacked
    log_p = torch.log_softmax(clean_out, -1)
    log_q = torch.log_softmax(attacked_out, -1)
    p, v = log_p.exp(), log_p - log_q
    divergence = (p * v).sum(-1)
    return divergence, log_q.exp() - p, p * (v - divergence[:, None])


class NumpyMLP:
    """A network z(s) in numpy, with the input gradient J_z(s)^T v.

    z = W_L h_{L-1} + b_L, h_l = sigma(W_l h_{l-1} + b_l), h_0 = s; for tanh,
    J^T v = W_1^T [(1 - h_1^2) * W_2^T [ ... (1 - h_{L-1}^2) * W_L^T v ]].
    Pruned layers compute with their effective weight W * M. The weights are copied, so the
    object is a snapshot. On a 64-row batch a numpy call costs a microsecond or two, torch's
    several: loops of many small steps (adversaries, the SA inner maximum) run here.
    """

    def __init__(self, net: nn.Sequential, dtype: type = np.float64) -> None:
        linears = [m for m in net if isinstance(m, nn.Linear)]
        activations = {type(m).__name__ for m in net if not isinstance(m, nn.Linear)}
        if activations - {"Tanh", "ReLU"}:
            raise ValueError(f"NumpyMLP supports tanh and ReLU networks, got {activations}")
        self.relu = "ReLU" in activations
        with torch.no_grad():
            self.weights = [np.array(effective_weight(m).detach().numpy(), dtype=dtype)
                            for m in linears]
            self.biases = [np.array(m.bias.detach().numpy(), dtype=dtype) for m in linears]

    def hidden(self, s: np.ndarray) -> list[np.ndarray]:
        """[h_0 = s, h_1, ..., h_{L-1}]: the input and every hidden activation."""
        hs = [s]
        for w, b in zip(self.weights[:-1], self.biases[:-1], strict=True):
            pre = hs[-1] @ w.T + b
            hs.append(np.maximum(pre, 0.0) if self.relu else np.tanh(pre))
        return hs

    def output(self, hs: list[np.ndarray]) -> np.ndarray:
        """z from the activations ``hidden`` returned."""
        return hs[-1] @ self.weights[-1].T + self.biases[-1]

    def __call__(self, s: np.ndarray) -> np.ndarray:
        return self.output(self.hidden(s))

    def vjp(self, s: np.ndarray, v: np.ndarray, hs: list[np.ndarray] | None = None) -> np.ndarray:
        """Rows of J_z(s)^T v for states s (b, n) and vectors v (b, m); ``hs`` reuses
        ``hidden(s)`` when the caller already has it."""
        hs = self.hidden(s) if hs is None else hs
        g = v @ self.weights[-1]
        for layer in range(len(self.weights) - 2, -1, -1):
            h = hs[layer + 1]
            g = g * ((h > 0) if self.relu else (1.0 - h * h))
            g = g @ self.weights[layer]
        return g


def divergence_output_gradient(
    policy: Policy, clean_out: np.ndarray, attacked_out: np.ndarray
) -> np.ndarray:
    """dD/d(attacked output) in numpy, for D of ``pruningrl.ppo.policy_divergence``:
    2 (z' - z) / sigma^2 (Gaussian), softmax(z') - softmax(z) (categorical KL(p || q))."""
    if isinstance(policy, GaussianPolicy):
        inv_var = np.exp(-2.0 * policy.log_std.detach().numpy()).astype(attacked_out.dtype)
        return 2.0 * (attacked_out - clean_out) * inv_var

    def softmax(z: np.ndarray) -> np.ndarray:
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    return softmax(attacked_out) - softmax(clean_out)


@torch.no_grad()
def sa_gradients(
    policy: Policy,
    states: torch.Tensor,
    attacked: torch.Tensor,
    weight: float,
    grads: dict[torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """Add d/dtheta of ``weight * mean_i D(pi(.|s_i), pi(.|s'_i))`` to ``grads``; return mean D.

    The worst-case states s' are held fixed (the inner maximum's envelope), and both ends of
    the divergence are differentiated, as autograd does for ``pruningrl.ppo.sa_regularizer``.
    """
    batch = states.shape[0]
    clean_out, clean_cache = _forward(policy.net, states)
    attacked_out, attacked_cache = _forward(policy.net, attacked)
    divergence, grad_attacked, grad_clean = _divergence_grads(policy, clean_out, attacked_out)
    _backward(attacked_cache, (weight / batch) * grad_attacked, grads)
    _backward(clean_cache, (weight / batch) * grad_clean, grads)
    return divergence.mean()
