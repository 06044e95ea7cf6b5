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
SA-PPO's own code lets the regularizer reach the standard deviation).
"""

from __future__ import annotations

import torch

from pruningrl.bounds import mlp_view, pairwise_spec, parse_norm
from pruningrl.output_bounds import Network, crown_ibp_box, forward
from pruningrl.policies import CategoricalPolicy, GaussianPolicy

Policy = GaussianPolicy | CategoricalPolicy


def divergence_bound(policy: Policy, states: torch.Tensor, eps: float,
                     norm: str = "inf", detach_std: bool = True) -> torch.Tensor:
    """Per state, a sound upper bound on max_{s' in B_norm(s, eps)} D(pi(.|s), pi(.|s'))
    (float64, differentiable in the policy's weights and biases, and in a Gaussian's
    log-standard-deviation unless ``detach_std``)."""
    view = mlp_view(policy, differentiable=True)
    net, p = Network(view.weights, view.biases, view.activation), parse_norm(norm)
    x = states.detach().to(torch.float64)
    z = forward(net, x)
    if view.kind == "gaussian":
        low, high = crown_ibp_box(net, x, eps, p)
        deviation = torch.maximum(high - z, z - low)
        scale = view.scale if detach_std else torch.exp(-policy.log_std.to(torch.float64))
        return (deviation * scale).pow(2).sum(-1)
    n = z.shape[-1]
    lower, _ = crown_ibp_box(net, x, eps, p, pairwise_spec(n))  # lower(z_i - z_j), i != j
    upper = torch.zeros(x.shape[0], n, n, dtype=torch.float64)  # U_ij >= z'_j - z'_i
    rows, cols = (torch.tensor(v) for v in zip(*[(i, j) for i in range(n) for j in range(n)
                                                  if i != j], strict=True))
    upper = upper.index_put((torch.arange(x.shape[0])[:, None], rows, cols), -lower)
    clean = z.unsqueeze(-2) - z.unsqueeze(-1)  # clean[b, i, j] = z_j - z_i
    gap = torch.logsumexp(upper, -1) - torch.logsumexp(clean, -1)
    return (torch.softmax(z, -1) * gap).sum(-1)


def convex_sa_regularizer(policy: Policy, states: torch.Tensor, eps: float,
                          norm: str = "inf", detach_std: bool = True) -> torch.Tensor:
    """mean_s of ``divergence_bound``: SA-PPO's convex regularizer (without kappa), float32."""
    return divergence_bound(policy, states, eps, norm, detach_std).mean().to(torch.float32)

