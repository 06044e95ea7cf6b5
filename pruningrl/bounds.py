"""Certified robustness of MLP policies: operator norms, Lipschitz bounds and total variation.

Pure torch, batched over states, no environment. The book derives every statement here
(chapters "Lipschitz policies and total variation", "Pruning cannot hurt" and "Local bounds").

The certified quantity is sup_{s' in B_p(s, eps)} TV(pi(.|s), pi(.|s')). It is bounded through a
*statistic* of the output change whose Lipschitz constant we bound:

* Gaussian policy, N(mu(s), Sigma):  Delta = ||Sigma^{-1/2}(mu(s') - mu(s))||_2 and
  TV = 2 Phi(Delta / 2) - 1 exactly (T1);
* categorical policy, softmax(z(s)):  osc(z(s') - z(s)) and TV <= min(1, osc / 4) (T2);
* a bare ``nn.Sequential``: ||f(s') - f(s)||_2 (Lipschitz constants only), or, with a stated
  policy kind, either of the above: ``kind="categorical"`` reads its outputs as logits,
  ``kind="gaussian", log_std=...`` as the mean of a Gaussian with that log-standard-deviation.
  Every function below takes ``kind`` and ``log_std`` for this case.

Bounds on the Lipschitz constant of the statistic, from loosest to tightest:

* ``lipschitz_spectral_product``: prod_l ||W_l||_2 with norm conversions. Sound, but NOT
  monotone under pruning; never used where monotonicity is claimed.
* ``lipschitz_layerwise``: prod_l || |W_l| ||, absolute per-layer norms. Monotone.
* ``lipschitz_abs_product``: || |W_L| ... |W_1| ||, the global bound of T3. Monotone:
  zeroing any weight can only lower it. ``certified_tv(method="global")`` uses it.
* ``local_lipschitz``: the same product with each activation's slope replaced by its maximum
  over interval bounds of the eps-ball (T4). Tighter, state-dependent, NOT monotone.

Output bounds (``pruningrl.output_bounds``: IBP, CROWN, alpha-CROWN) certify the statistic
directly from a box [l, u] of the outputs over the ball, per state, NOT monotone either:

* Gaussian: Delta <= ||Sigma^{-1/2} max(u - mu(s), mu(s) - l)||_2, then T1's exact form;
* categorical: a box of the logit *differences* z_i - z_j (a specification matrix), then
  osc(z(s') - z(s)) <= max_{i != j} (u_ij - (z_i(s) - z_j(s))) and T2;
* the deterministic policy the book evaluates: the certified action deviation
  max(u - mu(s), mu(s) - l) (its largest entry bounds ||mu(s') - mu(s)||_inf), and for a
  categorical policy the certified action: the argmax a cannot change while every lower
  bound of z_a - z_j is > 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from pruningrl.output_bounds import METHODS as OUTPUT_METHODS
from pruningrl.output_bounds import Network, forward, ibp, output_box
from pruningrl.policies import CategoricalPolicy, GaussianPolicy, effective_weight

Kind = Literal["gaussian", "categorical", "raw"]

SUPPORTED_ACTIVATIONS = {nn.Tanh: "tanh", nn.ReLU: "relu"}

#: Which Lipschitz bounds are monotone (nonincreasing) under elementwise pruning.
MONOTONE_UNDER_PRUNING: dict[str, bool] = {
    "abs_product": True,
    "layerwise": True,
    "spectral_product": False,
    "local": False,
}


# ---------------------------------------------------------------------------------------------
# Reading a module as an MLP
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MLPView:
    """A module read as z(s) = W_L act(... act(W_1 s + b_1) ...) + b_L, in float64.

    ``scale`` is the fixed last diagonal layer Sigma^{-1/2} of a Gaussian policy (None
    otherwise); ``kind`` names the statistic the certificate bounds.
    """

    weights: tuple[torch.Tensor, ...]
    biases: tuple[torch.Tensor, ...]
    activation: str | None
    scale: torch.Tensor | None
    kind: Kind

    @property
    def in_dim(self) -> int:
        return self.weights[0].shape[1]


def parse_norm(norm: str | float | int) -> float:
    """Map "inf" / "2" (or math.inf / 2) to the input norm p in {2, inf}."""
    if norm == "inf" or norm == math.inf:  # the common case first: attacks parse it per step
        return math.inf
    key = str(norm).strip().lower().removeprefix("l")
    if key in {"inf", "infinity", "linf"}:
        return math.inf
    if key in {"2", "2.0"}:
        return 2.0
    raise ValueError(f"unsupported norm {norm!r}; use 'inf' or '2'")


def _check_eps(eps: float) -> float:
    eps = float(eps)
    if not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps}")
    return eps


def mlp_view(
    module: nn.Module | MLPView,
    kind: str | None = None,
    log_std: float | torch.Tensor | None = None,
    differentiable: bool = False,
) -> MLPView:
    """Read a policy (or a bare ``nn.Sequential``) as an MLP of Linear layers.

    Raises ``ValueError`` naming the offending piece when the module is not
    ``Linear, act, Linear, act, ..., Linear`` with one supported activation (tanh or ReLU).
    Weights are read through ``layer.weight``, so masks from ``torch.nn.utils.prune`` count.
    A bare ``nn.Sequential`` is read as ``kind`` ("raw" by default; "categorical"; or
    "gaussian" with ``log_std``, a number or one per output). A view passes through unchanged.
    ``differentiable``: the weights and biases stay attached to the module's parameters, so a
    bound computed from the view can be backpropagated (certified training).
    """
    if isinstance(module, MLPView):
        if kind is not None or log_std is not None:
            raise ValueError("kind and log_std describe a bare nn.Sequential, not a view")
        return module
    scale = None
    if isinstance(module, GaussianPolicy | CategoricalPolicy):
        own = "gaussian" if isinstance(module, GaussianPolicy) else "categorical"
        if kind not in (None, own) or log_std is not None:
            raise ValueError(f"a {type(module).__name__} carries its own kind ({own}) and "
                             "log-std; kind and log_std are for a bare nn.Sequential")
        net, kind = module.net, own
        if own == "gaussian":
            scale = torch.exp(-module.log_std.detach().to(torch.float64))
    elif isinstance(module, nn.Sequential):
        net, kind = module, _stated_kind(kind, log_std)
    else:
        raise ValueError(
            f"cannot certify a {type(module).__name__}: expected a GaussianPolicy, a "
            "CategoricalPolicy or an nn.Sequential of Linear layers and tanh/ReLU activations "
            "(another library's agent: convert it with pruningrl.interop, or load its file "
            "with pruningrl.zoo.load)"
        )
    weights, biases, activation = _read_layers(list(net.children()), not differentiable)
    if kind == "gaussian" and scale is None:
        scale = _gaussian_scale(log_std, weights[-1].shape[0])
    return MLPView(tuple(weights), tuple(biases), activation, scale, kind)


def _read_layers(children: list[nn.Module], detach: bool = True) -> tuple[list, list, str | None]:
    """Weights, biases (float64) and the one activation of ``Linear, act, ..., Linear``."""
    if not children:
        raise ValueError("cannot certify an empty network")
    weights, biases, activations = [], [], set()
    for position, child in enumerate(children):
        expect_linear = position % 2 == 0
        if expect_linear:
            if not isinstance(child, nn.Linear):
                raise ValueError(
                    f"layer {position} is {type(child).__name__}, expected nn.Linear: the "
                    "network must alternate Linear layers and elementwise activations"
                )
            weight = effective_weight(child).to(torch.float64)
            bias = (
                child.bias.to(torch.float64)
                if child.bias is not None
                else torch.zeros(weight.shape[0], dtype=torch.float64)
            )
            if detach:
                weight, bias = weight.detach(), bias.detach()
            if weights and weight.shape[1] != weights[-1].shape[0]:
                raise ValueError(f"layer {position} does not fit the previous layer's width")
            weights.append(weight)
            biases.append(bias)
        else:
            name = SUPPORTED_ACTIVATIONS.get(type(child))
            if name is None:
                raise ValueError(
                    f"layer {position} is {type(child).__name__}; supported activations are "
                    "nn.Tanh and nn.ReLU (slopes in [0, 1])"
                )
            activations.add(name)
    if not isinstance(children[-1], nn.Linear):
        raise ValueError("the network must end with an nn.Linear layer")
    if len(activations) > 1:
        raise ValueError(f"mixed activations {sorted(activations)} are not supported")
    return weights, biases, activations.pop() if activations else None


def _stated_kind(kind: str | None, log_std: float | torch.Tensor | None) -> Kind:
    """The kind a bare nn.Sequential is read as, checked against ``log_std``."""
    kind = "raw" if kind is None else kind
    if kind not in ("raw", "categorical", "gaussian"):
        raise ValueError(f"unknown kind {kind!r}; use 'gaussian', 'categorical' or 'raw'")
    if kind == "gaussian" and log_std is None:
        raise ValueError("kind='gaussian' needs log_std, the policy's log-standard-deviation")
    if kind != "gaussian" and log_std is not None:
        raise ValueError("log_std belongs to kind='gaussian'")
    return kind


def _gaussian_scale(log_std: float | torch.Tensor, out_dim: int) -> torch.Tensor:
    """Sigma^{-1/2} = exp(-log_std) as a float64 vector of the output's length."""
    log_std = torch.as_tensor(log_std, dtype=torch.float64).detach().reshape(-1)
    if log_std.numel() == 1:
        log_std = log_std.expand(out_dim)
    if log_std.shape != (out_dim,) or not torch.isfinite(log_std).all():
        raise ValueError(f"log_std must be one finite number or {out_dim} of them (one per "
                         f"output), got shape {tuple(log_std.shape)}")
    return torch.exp(-log_std)


def is_constant(
    module: nn.Module | MLPView, *, kind: str | None = None, log_std: float | None = None
) -> bool:
    """True if the network's output cannot depend on its input: |W_L| ... |W_1| = 0.

    Every Jacobian is bounded entrywise by that product (activation slopes lie in [0, 1]), so
    a zero product means a constant policy, whose certificate is 0 for a trivial reason: it
    ignores the state (pruning removed every path from input to output).
    """
    return bool((abs_product(mlp_view(module, kind, log_std)) == 0).all())


# ---------------------------------------------------------------------------------------------
# Operator norms
# ---------------------------------------------------------------------------------------------


def _vector_norm(x: torch.Tensor, p: float, dim: int = -1) -> torch.Tensor:
    return torch.linalg.vector_norm(x, ord=p, dim=dim)


def dual_exponent(p: float) -> float:
    """p* with 1/p + 1/p* = 1, for p in {1, 2, inf}."""
    return {1.0: math.inf, 2.0: 2.0, math.inf: 1.0}[float(p)]


def operator_norm(a: torch.Tensor, p: float, q: float) -> torch.Tensor:
    """||A||_{p->q} = sup_{x != 0} ||A x||_q / ||x||_p, exactly, for the tractable cases.

    Exact cases: p = 1 (largest column q-norm), q = inf (largest row p*-norm) and p = q = 2
    (largest singular value). The remaining cases (inf->2, inf->1, 2->1) are NP-hard for a
    general matrix; use ``abs_operator_norm`` for an upper bound. Batched over leading dims.
    """
    p, q = float(p), float(q)
    if p == 1.0:
        return _vector_norm(a, q, dim=-2).amax(-1)
    if q == math.inf:
        return _vector_norm(a, dual_exponent(p), dim=-1).amax(-1)
    if p == 2.0 and q == 2.0:
        return torch.linalg.matrix_norm(a, ord=2)
    raise ValueError(
        f"||A||_{{{p}->{q}}} is not tractable for a general matrix; use abs_operator_norm"
    )


def abs_operator_norm(a: torch.Tensor, p: float, q: float) -> torch.Tensor:
    """|| |A| ||_{p->q} for the entrywise absolute value, exactly, for p, q in {1, 2, inf}.

    For a nonnegative B the supremum is attained at a nonnegative x, so: p = inf gives
    ||B 1||_q; p = 1 gives the largest column q-norm; 2->2 is the spectral norm; 2->inf the
    largest row 2-norm; 2->1 is ||B^T 1||_2. It upper-bounds ||A||_{p->q} and is monotone:
    shrinking any entry of |A| cannot increase it.
    """
    b, p, q = a.abs(), float(p), float(q)
    if p == math.inf:
        return _vector_norm(b.sum(-1), q)
    if p == 1.0 or q == math.inf or (p == 2.0 and q == 2.0):
        return operator_norm(b, p, q)
    if p == 2.0 and q == 1.0:
        return _vector_norm(b.sum(-2), 2.0)
    raise ValueError(f"unsupported norms p={p}, q={q}; use 1, 2 or inf")


def _statistic_norm(b: torch.Tensor, p: float, kind: Kind) -> torch.Tensor:
    """Operator norm of a nonnegative (batched) matrix B into the certificate's statistic.

    gaussian / raw: sup ||B x||_2 over ||x||_p <= 1.  categorical: an upper bound on
    sup osc(J x) for every J with |J| <= B, namely max_{i != j} ||B_i + B_j||_{p*}.
    """
    if kind != "categorical":
        return abs_operator_norm(b, p, 2.0)
    n_out = b.shape[-2]
    if n_out < 2:
        return torch.zeros(b.shape[:-2], dtype=b.dtype)
    if p == math.inf:
        top2 = b.sum(-1).topk(2, dim=-1).values
        return top2.sum(-1)
    pair = b.unsqueeze(-2) + b.unsqueeze(-3)  # (..., k, k, n): rows B_i + B_j
    norms = _vector_norm(pair, dual_exponent(p))
    off_diag = ~torch.eye(n_out, dtype=torch.bool)
    return norms[..., off_diag].amax(-1)


# ---------------------------------------------------------------------------------------------
# Global Lipschitz bounds
# ---------------------------------------------------------------------------------------------


def abs_product(
    module: nn.Module | MLPView, *, kind: str | None = None, log_std: float | None = None
) -> torch.Tensor:
    """P = diag(scale) |W_L| |W_{L-1}| ... |W_1|, the entrywise bound on every Jacobian (T3)."""
    view = mlp_view(module, kind, log_std)
    product = view.weights[0].abs()
    for weight in view.weights[1:]:
        product = weight.abs() @ product
    return product if view.scale is None else view.scale[:, None] * product


def lipschitz_abs_product(
    module: nn.Module | MLPView, norm: str | float = "inf", *, kind: str | None = None,
    log_std: float | None = None,
) -> float:
    """The global bound of T3: || diag(scale) |W_L| ... |W_1| || into the statistic.

    Monotone: an elementwise mask can only lower it.
    """
    view = mlp_view(module, kind, log_std)
    return float(_statistic_norm(abs_product(view), parse_norm(norm), view.kind))


def lipschitz_layerwise(
    module: nn.Module | MLPView, norm: str | float = "inf", *, kind: str | None = None,
    log_std: float | None = None,
) -> float:
    """Product of absolute per-layer norms, prod_l || |W_l| ||_{p->p}, closed by the statistic.

    Looser than ``lipschitz_abs_product`` (submultiplicativity) and also monotone.
    """
    view, p = mlp_view(module, kind, log_std), parse_norm(norm)
    last = view.weights[-1].abs()
    if view.scale is not None:
        last = view.scale[:, None] * last
    bound = _statistic_norm(last, p, view.kind)
    for weight in view.weights[:-1]:
        bound = bound * abs_operator_norm(weight, p, p)
    return float(bound)


def lipschitz_spectral_product(
    module: nn.Module | MLPView, norm: str | float = "inf", *, kind: str | None = None,
    log_std: float | None = None,
) -> float:
    """The popular bound prod_l ||W_l||_2 (with ||x||_2 <= sqrt(n) ||x||_inf for the l_inf
    ball and osc(v) <= sqrt(2) ||v||_2 for categorical policies).

    Sound, but NOT monotone under pruning: zeroing an entry can raise a spectral norm.
    """
    view, p = mlp_view(module, kind, log_std), parse_norm(norm)
    weights = list(view.weights)
    if view.scale is not None:
        weights[-1] = view.scale[:, None] * weights[-1]
    bound = math.prod(float(torch.linalg.matrix_norm(w, ord=2)) for w in weights)
    if p == math.inf:
        bound *= math.sqrt(view.in_dim)
    if view.kind == "categorical":
        bound *= math.sqrt(2.0)
    return bound


# ---------------------------------------------------------------------------------------------
# Local bounds: interval bound propagation with slope bounds (T4)
# ---------------------------------------------------------------------------------------------


def _as_states(states: torch.Tensor, in_dim: int) -> torch.Tensor:
    states = torch.as_tensor(states)
    if states.dim() == 1:
        states = states.unsqueeze(0)
    if states.dim() != 2 or states.shape[1] != in_dim:
        raise ValueError(
            f"states must have shape (batch, {in_dim}) for this network, got {tuple(states.shape)}"
        )
    if not torch.isfinite(states).all():
        raise ValueError("states contain NaN or infinite values")
    return states.to(torch.float64)


def max_slope(lower: torch.Tensor, upper: torch.Tensor, activation: str | None) -> torch.Tensor:
    """The largest derivative of the activation on [lower, upper], elementwise.

    tanh: 1 - tanh(x*)^2 at the point x* of the interval nearest 0. ReLU: 1 if upper > 0, else 0.
    """
    if activation == "tanh":
        nearest_zero = torch.clamp(torch.zeros_like(lower), lower, upper)
        return 1.0 - torch.tanh(nearest_zero) ** 2
    if activation == "relu":
        return (upper > 0).to(lower.dtype)
    return torch.ones_like(lower)


def interval_bounds(
    module: nn.Module | MLPView, states: torch.Tensor, eps: float, norm: str | float = "inf"
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Sound pre-activation intervals [lower, upper] of every hidden layer over B_p(s, eps).

    The first layer is exact for the ball: W_1 s + b_1 +- eps ||row_i(W_1)||_{p*}. Later layers
    use interval arithmetic: centre W c + b, radius |W| r. Returns one (lower, upper) pair of
    shape (batch, width) per hidden layer.
    """
    view, p, eps = mlp_view(module), parse_norm(norm), _check_eps(eps)
    _, intervals = ibp(_network(view), _as_states(states, view.in_dim), eps, p)
    return intervals


def local_lipschitz(
    module: nn.Module | MLPView, states: torch.Tensor, eps: float, norm: str | float = "inf",
    *, kind: str | None = None, log_std: float | None = None,
) -> torch.Tensor:
    """Per-state Lipschitz bound of the statistic over B_p(s, eps) (T4), shape (batch,).

    |J(x)| <= diag(scale) |W_L| D_{L-1} ... D_1 |W_1| for every x in the ball, where D_l holds
    the activation's largest slope on layer l's interval. Sound and tighter than the global
    bound, but not monotone under pruning.
    """
    view, p = mlp_view(module, kind, log_std), parse_norm(norm)
    intervals = interval_bounds(view, states, eps, norm)
    if not intervals:  # a single affine layer: the Jacobian is the same everywhere
        batch = _as_states(states, view.in_dim).shape[0]
        return torch.full((batch,), lipschitz_abs_product(view, norm), dtype=torch.float64)
    slopes = [max_slope(lo, hi, view.activation) for lo, hi in intervals]
    last = view.weights[-1].abs()
    if view.scale is not None:
        last = view.scale[:, None] * last
    if p == math.inf:
        # Nonnegative product times the all-ones vector, propagated input-to-output:
        # row sums of every row are all the inf-norm statistics need.
        vector = view.weights[0].abs().sum(-1).expand(slopes[0].shape[0], -1)
        for slope, weight in zip(slopes, [*view.weights[1:-1], None], strict=True):
            vector = slope * vector
            vector = vector @ (last if weight is None else weight.abs()).T
        if view.kind != "categorical":
            return _vector_norm(vector, 2.0)
        if vector.shape[-1] < 2:
            return torch.zeros(vector.shape[0], dtype=vector.dtype)
        return vector.topk(2, dim=-1).values.sum(-1)
    product = last.expand(slopes[0].shape[0], -1, -1)  # output-to-input, (batch, out, width)
    for slope, weight in zip(reversed(slopes), reversed(view.weights[:-1]), strict=True):
        product = (product * slope.unsqueeze(1)) @ weight.abs()
    return _statistic_norm(product, p, view.kind)


# ---------------------------------------------------------------------------------------------
# Total variation (T1, T2)
# ---------------------------------------------------------------------------------------------


def gaussian_tv(mahalanobis: torch.Tensor | float) -> torch.Tensor:
    """TV(N(m1, Sigma), N(m2, Sigma)) = 2 Phi(Delta/2) - 1 = erf(Delta / (2 sqrt 2)) (T1)."""
    delta = torch.as_tensor(mahalanobis, dtype=torch.float64)
    return torch.erf(delta / (2.0 * math.sqrt(2.0)))


def gaussian_tv_linear_bound(mahalanobis: torch.Tensor | float) -> torch.Tensor:
    """min(1, Delta / sqrt(2 pi)): the tangent of 2 Phi(Delta/2) - 1 at 0 (concave, so above)."""
    return torch.clamp(torch.as_tensor(mahalanobis, dtype=torch.float64) / math.sqrt(2 * math.pi),
                       max=1.0)


def gaussian_tv_pinsker_bound(mahalanobis: torch.Tensor | float) -> torch.Tensor:
    """min(1, Delta / 2): Pinsker, TV <= sqrt(KL / 2) with KL = Delta^2 / 2."""
    return torch.clamp(torch.as_tensor(mahalanobis, dtype=torch.float64) / 2.0, max=1.0)


def categorical_tv(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Exact TV(softmax a, softmax b) = 1/2 ||softmax a - softmax b||_1, over the last dim."""
    pa = torch.softmax(logits_a.to(torch.float64), -1)
    pb = torch.softmax(logits_b.to(torch.float64), -1)
    return 0.5 * (pa - pb).abs().sum(-1)


def oscillation(v: torch.Tensor) -> torch.Tensor:
    """osc(v) = max_i v_i - min_i v_i over the last dim."""
    return v.amax(-1) - v.amin(-1)


def softmax_tv_bound(osc: torch.Tensor | float) -> torch.Tensor:
    """TV(softmax z, softmax z') <= min(1, osc(z - z') / 4) (T2)."""
    return torch.clamp(torch.as_tensor(osc, dtype=torch.float64) / 4.0, max=1.0)


def policy_tv(
    policy: nn.Module, states_a: torch.Tensor, states_b: torch.Tensor, *,
    kind: str | None = None, log_std: float | None = None,
) -> torch.Tensor:
    """Exact TV(pi(.|s_a), pi(.|s_b)) per row, for Gaussian and categorical policies (or a bare
    ``nn.Sequential`` with a stated ``kind``)."""
    view = mlp_view(policy, kind, log_std)
    if view.kind == "gaussian":
        shift = (policy(states_a).to(torch.float64) - policy(states_b).to(torch.float64))
        return gaussian_tv((shift * view.scale).norm(dim=-1))
    if view.kind == "categorical":
        return categorical_tv(policy(states_a), policy(states_b))
    raise ValueError("policy_tv of a bare nn.Sequential needs its kind: kind='categorical', "
                     "or kind='gaussian' with log_std")


def tv_from_statistic(statistic: torch.Tensor | float, kind: Kind) -> torch.Tensor:
    """Turn a bound on Delta (Gaussian) or on osc (categorical) into a bound on TV, capped at 1."""
    if kind == "gaussian":
        return gaussian_tv(statistic)
    if kind == "categorical":
        return softmax_tv_bound(statistic)
    raise ValueError("total variation needs a GaussianPolicy or a CategoricalPolicy")


# ---------------------------------------------------------------------------------------------
# Certificates (T3, T4, T5)
# ---------------------------------------------------------------------------------------------


def certified_tv(
    policy: nn.Module | MLPView,
    eps: float | torch.Tensor,
    norm: str | float = "inf",
    method: Literal["global", "local", "ibp", "crown", "alpha-crown"] = "global",
    states: torch.Tensor | None = None,
    *,
    kind: str | None = None,
    log_std: float | torch.Tensor | None = None,
) -> float | torch.Tensor:
    """An upper bound on sup_{s' in B_p(s, eps)} TV(pi(.|s), pi(.|s')).

    ``method="global"``: a float valid for every state, from ``lipschitz_abs_product``;
    nonincreasing under any elementwise pruning mask. ``method="local"``: one value per row of
    ``states`` (float64 tensor), from ``local_lipschitz``; tighter, not monotone.
    ``method="ibp" | "crown" | "alpha-crown"``: one value per row of ``states``, from the
    output box of ``pruningrl.output_bounds`` (``certified_statistic``); tighter still, not
    monotone. A bare
    ``nn.Sequential`` needs ``kind`` ("categorical", or "gaussian" with ``log_std``).
    A constant policy (``is_constant``) certifies 0: it ignores its input. The output-bound
    methods also take one eps per state (a tensor).
    """
    view = mlp_view(policy, kind, log_std)
    if not (method in OUTPUT_METHODS and torch.is_tensor(eps) and eps.dim() == 1):
        eps = _check_eps(eps)  # a tensor of one radius per state is checked by output_box
    if view.kind == "raw":
        raise ValueError("certified_tv of a bare nn.Sequential needs its policy kind: "
                         "kind='categorical' (its outputs are logits) or kind='gaussian' with "
                         "log_std (its outputs are a Gaussian's mean)")
    if method in OUTPUT_METHODS:
        if states is None:
            raise ValueError(f"method={method!r} needs states, a (batch, obs_dim) tensor")
        return tv_from_statistic(certified_statistic(view, states, eps, norm, method), view.kind)
    with torch.no_grad():
        if method == "global":
            return float(tv_from_statistic(eps * lipschitz_abs_product(view, norm), view.kind))
        if method == "local":
            if states is None:
                raise ValueError("method='local' needs states, a (batch, obs_dim) tensor")
            return tv_from_statistic(eps * local_lipschitz(view, states, eps, norm), view.kind)
    raise ValueError(f"unknown method {method!r}; use one of {', '.join(CERTIFY_METHODS)}")


#: every method of ``certified_tv``: the Lipschitz bounds, then the output bounds
CERTIFY_METHODS = ("global", "local", *OUTPUT_METHODS)


# ---------------------------------------------------------------------------------------------
# Certificates from output bounds (IBP, CROWN, alpha-CROWN)
# ---------------------------------------------------------------------------------------------


def _network(view: MLPView) -> Network:
    return Network(view.weights, view.biases, view.activation)


def _outputs(view: MLPView, x: torch.Tensor) -> torch.Tensor:
    """z(x) of the view, float64."""
    return forward(_network(view), x)


def pairwise_spec(n: int) -> torch.Tensor:
    """The specification matrix of every logit difference z_i - z_j, i != j: (n(n-1), n)."""
    rows = [(i, j) for i in range(n) for j in range(n) if i != j]
    spec = torch.zeros(len(rows), n, dtype=torch.float64)
    for k, (i, j) in enumerate(rows):
        spec[k, i], spec[k, j] = 1.0, -1.0
    return spec


def output_deviation(
    policy: nn.Module | MLPView, states: torch.Tensor, eps: float | torch.Tensor,
    norm: str | float = "inf", method: str = "crown", *, kind: str | None = None,
    log_std: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """max(u - z(s), z(s) - l) per output, (batch, out): how far each output (the Gaussian's
    mean, or a logit) can move over B_p(s, eps), from the ``method``'s output box."""
    view, p = mlp_view(policy, kind, log_std), parse_norm(norm)
    x = _as_states(states, view.in_dim)
    lower, upper = output_box(_network(view), x, eps, p, method)
    centre = _outputs(view, x)
    return torch.maximum(upper - centre, centre - lower).clamp(min=0.0)


def certified_statistic(
    policy: nn.Module | MLPView, states: torch.Tensor, eps: float | torch.Tensor,
    norm: str | float = "inf", method: str = "crown",
) -> torch.Tensor:
    """A per-state bound on Delta (Gaussian) or on osc(z(s') - z(s)) (categorical) over the
    ball, from the ``method``'s output box (of the logit differences, for a categorical)."""
    view, p = mlp_view(policy), parse_norm(norm)
    x = _as_states(states, view.in_dim)
    if view.kind == "gaussian":
        return (view.scale * output_deviation(view, x, eps, norm, method)).norm(dim=-1)
    if view.kind != "categorical":
        raise ValueError("a statistic needs a GaussianPolicy or a CategoricalPolicy")
    spec = pairwise_spec(view.weights[-1].shape[0])
    if spec.shape[0] == 0:
        return torch.zeros(x.shape[0], dtype=torch.float64)
    _, upper = output_box(_network(view), x, eps, p, method, spec)
    return (upper - _outputs(view, x) @ spec.T).amax(-1).clamp(min=0.0)


def certified_action_deviation(
    policy: nn.Module | MLPView, eps: float | torch.Tensor, norm: str | float = "inf",
    states: torch.Tensor | None = None, method: str = "crown",
) -> torch.Tensor:
    """A per-state bound on ||mu(s') - mu(s)||_inf over the ball: the guarantee of the
    deterministic (mean) action the book evaluates, whatever the log-std."""
    if states is None:
        raise ValueError("the certified action deviation needs states")
    return output_deviation(policy, states, eps, norm, method).amax(-1)


def certified_action(
    policy: nn.Module | MLPView, eps: float | torch.Tensor, norm: str | float = "inf",
    states: torch.Tensor | None = None, method: str = "crown", margin: float = 0.0,
) -> torch.Tensor:
    """Per state, whether the most likely action a = argmax z(s) provably stays the argmax over
    the ball: min_{j != a} lower(z_a - z_j) > margin (bool tensor). A positive ``margin``
    leaves room for the rounding of a float32 forward pass (the bounds are float64)."""
    view, p = mlp_view(policy), parse_norm(norm)
    if view.kind != "categorical":
        raise ValueError("the certified action is for categorical policies (discrete actions); "
                         "a Gaussian's mean action has the certified action deviation")
    if states is None:
        raise ValueError("the certified action needs states")
    x = _as_states(states, view.in_dim)
    n = view.weights[-1].shape[0]
    chosen = _outputs(view, x).argmax(-1)
    spec = pairwise_spec(n).view(n, n - 1, n)  # rows grouped by i: z_i - z_j, j != i
    margins, _ = output_box(_network(view), x, eps, p, method, spec[chosen])
    return margins.amin(-1) > margin


def expected_certified_tv(
    policy: nn.Module | MLPView, states: torch.Tensor, eps: float, norm: str | float = "inf",
    *, kind: str | None = None, log_std: float | torch.Tensor | None = None,
) -> float:
    """The mean of the local certificate over the rows of ``states`` (T5).

    For i.i.d. draws from d^pi (``pruningrl.evaluation.discounted_visitation_states``) it is an
    unbiased estimate of E_{s ~ d^pi}[local certificate], an upper bound on
    F = E_{s ~ d^pi}[sup_{s'} TV]. For states of any other law it estimates the same
    expectation under that law.
    """
    return float(certified_tv(policy, eps, norm, "local", states, kind=kind,
                              log_std=log_std).mean())


# ---------------------------------------------------------------------------------------------
# Value loss (T0) and the regret decomposition (T6)
# ---------------------------------------------------------------------------------------------


def value_loss_constant(r_min: float, r_max: float, gamma: float) -> float:
    """C = (r_max - r_min) / (1 - gamma)^2, so |V^pi - V^{pi o nu}| <= C sup_s TV (T0)."""
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma must lie in [0, 1), got {gamma}")
    if r_max < r_min:
        raise ValueError(f"r_max ({r_max}) must be >= r_min ({r_min})")
    return (r_max - r_min) / (1.0 - gamma) ** 2


def value_loss_bound(tv: float, r_min: float, r_max: float, gamma: float) -> float:
    """The T0 bound C * tv on the value an adversary with sup-TV ``tv`` can take away."""
    if not 0.0 <= tv <= 1.0:
        raise ValueError(f"tv must lie in [0, 1], got {tv}")
    return value_loss_constant(r_min, r_max, gamma) * tv


@dataclass(frozen=True)
class RegretTerms:
    """J(pi*) - J~(pi_M o nu*) = clean_regret + pruning_loss + robustness_gap (T6)."""

    clean_regret: float
    pruning_loss: float
    robustness_gap: float

    @property
    def total(self) -> float:
        return self.clean_regret + self.pruning_loss + self.robustness_gap


def regret_decomposition(
    j_optimal: float, j_dense: float, j_pruned: float, j_pruned_attacked: float
) -> RegretTerms:
    """Split the attacked regret of a pruned policy into its three terms (T6)."""
    return RegretTerms(
        clean_regret=j_optimal - j_dense,
        pruning_loss=j_dense - j_pruned,
        robustness_gap=j_pruned - j_pruned_attacked,
    )


@dataclass(frozen=True)
class StateCertificates:
    """What one output box certifies at each state: the stochastic policy's TV, and the
    deterministic policy's certificate (the mean action's deviation bound for a Gaussian,
    whether the most likely action is certified for a categorical)."""

    tv: torch.Tensor
    action_deviation: torch.Tensor | None = None
    certified_action: torch.Tensor | None = None


def certify_states(
    policy: nn.Module | MLPView, eps: float | torch.Tensor, norm: str | float = "inf",
    states: torch.Tensor | None = None, method: str = "crown",
) -> StateCertificates:
    """``certified_tv`` and the deterministic certificate from one output box per state (the
    outputs' box for a Gaussian, every logit difference's box for a categorical: its lower
    bounds of z_a - z_j decide the certified action)."""
    view, p = mlp_view(policy), parse_norm(norm)
    if states is None:
        raise ValueError("per-state certificates need states")
    x = _as_states(states, view.in_dim)
    centre = _outputs(view, x)
    if view.kind == "gaussian":
        lower, upper = output_box(_network(view), x, eps, p, method)
        deviation = torch.maximum(upper - centre, centre - lower).clamp(min=0.0)
        tv = gaussian_tv((view.scale * deviation).norm(dim=-1))
        return StateCertificates(tv, action_deviation=deviation.amax(-1))
    if view.kind != "categorical":
        raise ValueError("certificates need a GaussianPolicy or a CategoricalPolicy")
    n = centre.shape[1]
    if n < 2:  # one action: nothing can change
        ones = torch.ones(x.shape[0], dtype=torch.bool)
        return StateCertificates(torch.zeros(x.shape[0], dtype=torch.float64),
                                 certified_action=ones)
    spec = pairwise_spec(n)  # rows (i, j), i-major
    lower, upper = output_box(_network(view), x, eps, p, method, spec)
    osc = (upper - centre @ spec.T).amax(-1).clamp(min=0.0)
    chosen = centre.argmax(-1)
    margins = lower.view(x.shape[0], n, n - 1)[torch.arange(x.shape[0]), chosen]
    return StateCertificates(softmax_tv_bound(osc), certified_action=margins.amin(-1) > 0)


def certified_radii(
    policy: nn.Module | MLPView, states: torch.Tensor, norm: str | float = "inf",
    method: str = "crown", criterion: Literal["tv", "action"] = "tv", tv: float = 0.5,
    eps_max: float = 1.0, iterations: int = 20,
) -> torch.Tensor:
    """Per state, a certified radius: an eps at which the state is certified, found by
    bisection on [0, eps_max] to within eps_max / 2^iterations. ``criterion="tv"``: the
    ``method``'s certified TV is <= ``tv``; ``"action"`` (categorical): the certified action.
    Certification at eps covers every smaller ball, so the whole interval [0, radius] is
    certified, even where the bound is not monotone in eps. A state certified at
    ``eps_max`` gets ``eps_max``; one not certified at any tried eps gets 0."""
    view = mlp_view(policy)
    x = _as_states(states, view.in_dim)
    if criterion not in ("tv", "action"):
        raise ValueError(f"unknown criterion {criterion!r}; use 'tv' or 'action'")
    if not eps_max > 0 or iterations < 1:
        raise ValueError("eps_max must be positive and iterations at least 1")

    def certified(eps: torch.Tensor) -> torch.Tensor:
        if criterion == "action":
            return certified_action(view, eps, norm, x, method)
        return certified_tv(view, eps, norm, method, x) <= tv

    lo = torch.zeros(x.shape[0], dtype=torch.float64)
    hi = torch.full_like(lo, float(eps_max))
    top = certified(hi)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        ok = certified(mid)
        lo, hi = torch.where(ok, mid, lo), torch.where(ok, hi, mid)
    return torch.where(top, torch.full_like(lo, float(eps_max)), lo)
