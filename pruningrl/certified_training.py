"""SA-PPO's convex-relaxation regularizer: a sound upper bound on the worst-case divergence.

SA-PPO (Zhang et al. 2020) regularizes PPO with kappa E_s[max_{s' in B(s, eps)} D(pi(.|s),
pi(.|s'))]. Its SGLD variant estimates the inner maximum from below by gradient ascent; its
convex variant bounds it from above with a convex relaxation of the network (CROWN-IBP,
``pruningrl.output_bounds.crown_ibp_box``), so that minimizing the regularizer minimizes a
certificate. The bounds here, for every state s of a minibatch:

* Gaussian policy, D = ||Sigma^{-1/2}(mu(s') - mu(s))||^2 with Sigma held fixed: if
  l <= mu(s') <= u over the ball, then |mu_i(s') - mu_i(s)| <= max(u_i - mu_i(s),
  mu_i(s) - l_i) =: d_i, and D <= sum_i d_i^2 / sigma_i^2.
* Categorical policy, D = KL(pi(.|s) || pi(.|s')) = sum_i p_i (log p_i - log p'_i), where
  log p_i - log p'_i = log sum_j exp(z'_j - z'_i) - log sum_j exp(z_j - z_i). If U_ij bounds
  z'_j - z'_i from above over the ball (U_ii = 0; U_ij = -lower(z_i - z_j) from the pairwise
  specification), then D <= sum_i p_i [log sum_j exp(U_ij) - log sum_j exp(z_j - z_i)].

Both are 0 at eps = 0, and differentiable in the policy's weights (in Sigma too, if asked:
SA-PPO's own code lets the regularizer reach the standard deviation). The box [l, u] is
(1 - w) CROWN-IBP + w IBP for an IBP weight w in [0, 1]: a convex combination of two sound
boxes, so sound. Certified training moves w from 0 to 1 as eps grows (CROWN-IBP's schedule,
which SA-PPO's convex variant follows): the tight bound guides the start, and the policy ends
trained to make even IBP's loose box small. At w = 1 only the IBP pass is computed.
"""

from __future__ import annotations

import torch

from pruningrl.bounds import mlp_view, pairwise_spec, parse_norm
from pruningrl.output_bounds import Box, Network, crown_ibp_box, forward, ibp
from pruningrl.policies import CategoricalPolicy, GaussianPolicy

Policy = GaussianPolicy | CategoricalPolicy


def mixed_box(net: Network, states: torch.Tensor, eps: float, p: float, ibp_weight: float,
              spec: torch.Tensor | None = None) -> Box:
    """(1 - w) CROWN-IBP's box + w IBP's box of ``spec @ z`` over the ball (sound for w in
    [0, 1]); IBP's pass alone at w = 1, CROWN-IBP's alone at w = 0."""
    if not 0 <= ibp_weight <= 1:
        raise ValueError(f"ibp_weight must lie in [0, 1], got {ibp_weight}")
    if ibp_weight == 1:
        return ibp(net, states, eps, p, spec)[0]
    tight = crown_ibp_box(net, states, eps, p, spec)
    if ibp_weight == 0:
        return tight
    loose = ibp(net, states, eps, p, spec)[0]
    return tuple(ibp_weight * a + (1 - ibp_weight) * b
                 for a, b in zip(loose, tight, strict=True))


def divergence_bound(policy: Policy, states: torch.Tensor, eps: float,
                     norm: str = "inf", detach_std: bool = True,
                     ibp_weight: float = 0.0) -> torch.Tensor:
    """Per state, a sound upper bound on max_{s' in B_norm(s, eps)} D(pi(.|s), pi(.|s'))
    (float64, differentiable in the policy's weights and biases, and in a Gaussian's
    log-standard-deviation unless ``detach_std``), from ``mixed_box`` with IBP weight w."""
    view = mlp_view(policy, differentiable=True)
    net, p = Network(view.weights, view.biases, view.activation), parse_norm(norm)
    x = states.detach().to(torch.float64)
    z = forward(net, x)
    if view.kind == "gaussian":
        low, high = mixed_box(net, x, eps, p, ibp_weight)
        deviation = torch.maximum(high - z, z - low)
        scale = view.scale if detach_std else torch.exp(-policy.log_std.to(torch.float64))
        return (deviation * scale).pow(2).sum(-1)
    n = z.shape[-1]
    lower, _ = mixed_box(net, x, eps, p, ibp_weight, pairwise_spec(n))  # lower(z_i - z_j), i != j
    upper = torch.zeros(x.shape[0], n, n, dtype=torch.float64)  # U_ij >= z'_j - z'_i
    rows, cols = (torch.tensor(v) for v in zip(*[(i, j) for i in range(n) for j in range(n)
                                                  if i != j], strict=True))
    upper = upper.index_put((torch.arange(x.shape[0])[:, None], rows, cols), -lower)
    clean = z.unsqueeze(-2) - z.unsqueeze(-1)  # clean[b, i, j] = z_j - z_i
    gap = torch.logsumexp(upper, -1) - torch.logsumexp(clean, -1)
    return (torch.softmax(z, -1) * gap).sum(-1)


def convex_sa_regularizer(policy: Policy, states: torch.Tensor, eps: float,
                          norm: str = "inf", detach_std: bool = True,
                          ibp_weight: float = 0.0) -> torch.Tensor:
    """mean_s of ``divergence_bound``: SA-PPO's convex regularizer (without kappa), float32."""
    return divergence_bound(policy, states, eps, norm, detach_std,
                            ibp_weight).mean().to(torch.float32)

