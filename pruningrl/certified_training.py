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
* Categorical policy, margin objective: the regularizer bounds the worst-case negative
  log-likelihood of the clean greedy action a* = argmax_a z_a(s), max_{s'} -log pi(a*|s'),
  instead of a divergence. With U_j as above for i = a*, -log pi(a*|s') = log sum_j
  exp(z'_j - z'_a*) <= log sum_j exp(U_a*j). This is the robust cross-entropy of certified
  classifier training (Gowal et al. 2018; Zhang et al. 2020, CROWN-IBP) with the policy's own
  greedy action as the label: it is small only where every logit margin z_a* - z_j stays wide
  over the whole ball, so it trains a certified *action* (and with it the certified return,
  ``pruningrl.certified_return``), which a small divergence does not: a policy can make its
  divergence small by becoming undecided, and then any perturbation flips its action.

The divergence bounds are 0 at eps = 0 (the margin bound is the clean greedy action's loss),
and all are differentiable in the policy's weights (the divergence in Sigma too, if asked:
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


def action_margin_bound(policy: Policy, states: torch.Tensor, eps: float, norm: str = "inf",
                        ibp_weight: float = 0.0) -> torch.Tensor:
    """Per state, a sound upper bound on max_{s' in B_norm(s, eps)} -log pi(a*|s') for the
    clean greedy action a* (float64, differentiable in the weights and biases), from
    ``mixed_box`` with IBP weight w; categorical policies only."""
    view = mlp_view(policy, differentiable=True)
    if view.kind != "categorical":
        raise ValueError("the margin objective is for categorical policies: a Gaussian policy "
                         "has no action to certify; use the divergence objective")
    net, p = Network(view.weights, view.biases, view.activation), parse_norm(norm)
    x = states.detach().to(torch.float64)
    n = view.weights[-1].shape[0]
    greedy = forward(net, x).detach().argmax(-1)
    lower, _ = mixed_box(net, x, eps, p, ibp_weight, pairwise_spec(n))  # lower(z_i - z_j)
    rows = {pair: k for k, pair in enumerate((i, j) for i in range(n) for j in range(n)
                                             if i != j)}
    index = torch.tensor([[rows[(a, j)] if j != a else 0 for j in range(n)] for a in range(n)])
    upper = -lower.gather(1, index[greedy])  # U_j >= z'_j - z'_a*, for j != a*
    upper = upper.masked_fill(torch.nn.functional.one_hot(greedy, n).bool(), 0.0)
    return torch.logsumexp(upper, -1)


#: what the convex regularizer bounds: the divergence (SA-PPO) or the greedy action's loss
SA_OBJECTIVES = ("divergence", "margin")


def convex_sa_regularizer(policy: Policy, states: torch.Tensor, eps: float,
                          norm: str = "inf", detach_std: bool = True,
                          ibp_weight: float = 0.0, objective: str = "divergence"
                          ) -> torch.Tensor:
    """mean_s of ``divergence_bound`` (SA-PPO's convex regularizer) or, for the margin
    objective, of ``action_margin_bound``; without kappa, float32."""
    if objective == "margin":
        bound = action_margin_bound(policy, states, eps, norm, ibp_weight)
    elif objective == "divergence":
        bound = divergence_bound(policy, states, eps, norm, detach_std, ibp_weight)
    else:
        raise ValueError(f"unknown objective {objective!r}; use one of {', '.join(SA_OBJECTIVES)}")
    return bound.mean().to(torch.float32)

