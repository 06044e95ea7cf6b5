"""Sound bounds on an MLP's outputs over an eps-ball: IBP, CROWN and alpha-CROWN.

For z(x) = W_L act(... act(W_1 x + b_1) ...) + b_L, a specification matrix C (K rows) and the
ball B_p(s, eps), each method returns a box [lower, upper] with
lower_k <= (C z(x))_k <= upper_k for every x in the ball, batched over states, in float64.

* **IBP** (interval bound propagation): the first layer exactly over the ball,
  W_1 s + b_1 +- eps ||row_i(W_1)||_q (q the dual exponent of p), then interval arithmetic:
  centre W c + b, radius |W| r. C is folded into the last layer, so a difference of two
  logits is bounded directly rather than from two separate boxes.
* **CROWN** (Zhang et al. 2018): every activation is enclosed between two lines on its
  pre-activation interval [l, u], a_L z + c_L <= act(z) <= a_U z + c_U. Back-substitution from
  the output to the input then bounds C z(x) by linear functions A x + d, whose extremes over
  the ball are A s -+ eps ||A||_q + d (Hoelder). The intervals of the hidden layers come from
  CROWN itself, layer by layer; every box is intersected with IBP's, since both are sound.
* **alpha-CROWN** (Xu et al. 2021): the same back-substitution with the free parameters of
  the relaxations (the tangent points of tanh, the lower slope of an unstable ReLU) optimised
  by projected gradient on the output bound. Any value in the allowed range is sound, so the
  result is a bound whatever the optimiser does; it only gets tighter.

The relaxations. ReLU on l < 0 < u: upper chord u (z - l) / (u - l), lower alpha z with
alpha in [0, 1] (CROWN's choice: 1 if u > -l, else 0). tanh, convex on (-inf, 0] and concave on
[0, inf): on a concave interval the chord is below and every tangent above; on a convex one the
reverse. On l < 0 < u the chord is an upper bound exactly when tanh'(u) >= its slope;
otherwise the upper line is the tangent at a point d in [0, u] that passes above
(l, tanh(l)). Such a line lies above tanh on [0, u] by concavity and on [l, 0] because tanh
is convex there and the line is above it at both ends. The lower line is the mirror image
(tanh is odd).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

METHODS = ("ibp", "crown", "alpha-crown")
Box = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Network:
    """The layers of an MLP, in float64: ``weights[l]`` is (out, in); ``activation`` is
    "tanh", "relu" or None (a single affine layer)."""

    weights: tuple[torch.Tensor, ...]
    biases: tuple[torch.Tensor, ...]
    activation: str | None


def dual_norm(a: torch.Tensor, p: float) -> torch.Tensor:
    """||a||_q over the last dim, q = p / (p - 1): the largest <a, delta> over ||delta||_p <= 1."""
    if p == math.inf:
        return a.abs().sum(-1)
    if p == 2.0:
        return a.norm(dim=-1)
    raise ValueError(f"unsupported norm p={p}; use 2 or inf")


def _radius(eps: float | torch.Tensor, batch: int) -> torch.Tensor:
    """eps as a (batch, 1, 1) tensor: one radius for all states, or one per state."""
    eps = torch.as_tensor(eps, dtype=torch.float64)
    if eps.dim() == 0:
        eps = eps.expand(batch)
    if eps.shape != (batch,):
        raise ValueError(f"eps must be a number or one per state ({batch}), got "
                         f"{tuple(eps.shape)}")
    if not torch.isfinite(eps).all() or (eps < 0).any():
        raise ValueError("eps must be finite and >= 0")
    return eps.view(batch, 1, 1)


def activate(x: torch.Tensor, activation: str | None) -> torch.Tensor:
    """The activation ("tanh", "relu", or None: the identity), elementwise."""
    if activation == "tanh":
        return torch.tanh(x)
    if activation == "relu":
        return torch.relu(x)
    return x


def forward(net: Network, x: torch.Tensor) -> torch.Tensor:
    """z(x) for every row of ``x``: the network itself, in the weights' dtype."""
    for weight, bias in zip(net.weights[:-1], net.biases[:-1], strict=True):
        x = activate(x @ weight.T + bias, net.activation)
    return x @ net.weights[-1].T + net.biases[-1]


# --------------------------------------------------------------------------------------- IBP


def ibp(net: Network, states: torch.Tensor, eps: float | torch.Tensor, p: float,
        spec: torch.Tensor | None = None) -> tuple[Box, list[Box]]:
    """IBP's box of ``spec @ z(x)`` over the ball, and the hidden pre-activation boxes."""
    batch = states.shape[0]
    radius = _radius(eps, batch).view(batch, 1)
    centre = states @ net.weights[0].T + net.biases[0]
    half = radius * dual_norm(net.weights[0], p)
    hidden: list[Box] = []
    weights, biases = list(net.weights[1:]), list(net.biases[1:])
    for index, (weight, bias) in enumerate(zip(weights, biases, strict=True)):
        hidden.append((centre - half, centre + half))
        low, high = (activate(x, net.activation) for x in hidden[-1])
        centre, half = (high + low) / 2, (high - low) / 2
        if spec is not None and index == len(weights) - 1:
            weight, bias = spec @ weight, spec @ bias
        centre, half = _apply(centre, weight) + bias, _apply(half, weight.abs())
    if spec is not None and not weights:  # a single affine layer
        return _affine_spec_box(net, states, radius, p, spec), hidden
    return (centre - half, centre + half), hidden


def _apply(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x W^T per row, for one weight (out, in) or one per row (batch, out, in)."""
    return x @ weight.T if weight.dim() == 2 else torch.einsum("bn,bkn->bk", x, weight)


def _affine_spec_box(net: Network, states: torch.Tensor, radius: torch.Tensor, p: float,
                     spec: torch.Tensor) -> Box:
    weight, bias = spec @ net.weights[0], spec @ net.biases[0]
    centre, half = _apply(states, weight) + bias, radius * dual_norm(weight, p)
    return centre - half, centre + half


# ------------------------------------------------------------------------------ relaxations


def _tangent(d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The tangent of tanh at d: (slope, intercept)."""
    value = torch.tanh(d)
    slope = 1.0 - value * value
    return slope, value - slope * d


def _chord(low: torch.Tensor, high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The line through (l, tanh l) and (u, tanh u); the tangent at l when u = l."""
    width = high - low
    flat = width < 1e-12
    tanh_low = torch.tanh(low)
    rise = torch.tanh(high) - tanh_low
    slope = torch.where(flat, 1.0 - tanh_low * tanh_low, rise / torch.where(flat, 1.0, width))
    return slope, tanh_low - slope * low


def _bisect_tangent_start(low: torch.Tensor, high: torch.Tensor, iterations: int
                          ) -> torch.Tensor:
    """Bisection, from above, for the smallest d in [0, high] whose tangent passes above
    (low, tanh low), low < 0; ``high`` where no d in [0, high] does."""
    target = torch.tanh(low)
    lo, hi = torch.zeros_like(low), high.clone()
    for _ in range(iterations):
        mid = (lo + hi) / 2
        slope, intercept = _tangent(mid)
        ok = slope * low + intercept >= target
        hi, lo = torch.where(ok, mid, hi), torch.where(ok, lo, mid)
    return hi


#: the grid of l < 0 on which the tangent start d*(l) is tabulated: g_k = -30 r^k, ascending
_GRID_SIZE, _GRID_FAR = 4096, 30.0
_GRID_RATIO = (1e-6 / _GRID_FAR) ** (1 / (_GRID_SIZE - 1))
_GRID = -_GRID_FAR * _GRID_RATIO ** torch.arange(_GRID_SIZE, dtype=torch.float64)
_TABLE: list[torch.Tensor] = []


def _tangent_start_table() -> torch.Tensor:
    """d*(g) on ``_GRID``. d*(l), the tangent point whose tangent passes through (l, tanh l),
    depends on l alone and decreases as l grows toward 0 (checked here), so for
    g_k <= l < g_{k+1} the tabulated d*(g_k) >= d*(l): a sound, slightly loose start."""
    if not _TABLE:
        table = _bisect_tangent_start(_GRID, torch.full_like(_GRID, 40.0), 80)
        if not bool((table[1:] <= table[:-1]).all()):
            raise RuntimeError("the tangent start is not monotone on its grid")
        _TABLE.append(table)
    return _TABLE[0]


def _upper_tangent_start(low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """For l < 0 < u: a point d in [0, u], at or just above the smallest one whose tangent
    passes above (l, tanh l). Every tangent at a point of [d, u] is then a sound upper line,
    since the tangent's height at l grows with d. Where no such d is in [0, u] (the chord is
    the upper line), returns u; so too for elements with l >= 0 or u <= 0. Read from a table
    of d*(l) (``_tangent_start_table``), by bisection below its range."""
    table = _tangent_start_table()
    ratio = (-low).clamp(min=1e-300) / _GRID_FAR
    index = (torch.log(ratio) / math.log(_GRID_RATIO)).floor().clamp(0, _GRID_SIZE - 1).long()
    index = index - (_GRID[index] > low).long()  # rounding: make sure g_k <= l
    start = table[index.clamp(min=0)]
    far = (low < _GRID[0]) & (high > 0)
    if bool(far.any()):
        start = start.clone()
        start[far] = _bisect_tangent_start(low[far], high[far], 50)
    mixed = (low < 0) & (high > 0)
    return torch.where(mixed, torch.minimum(start, high), high)


@dataclass
class Relaxation:
    """Lines a_L z + c_L <= act(z) <= a_U z + c_U on one layer's intervals, each line as
    (slopes, intercepts) of the layer's shape."""

    lower: tuple[torch.Tensor, torch.Tensor]
    upper: tuple[torch.Tensor, torch.Tensor]


def relax(low: torch.Tensor, high: torch.Tensor, activation: str,
          alpha: dict[str, torch.Tensor] | None = None) -> Relaxation:
    """Sound linear bounds of the activation on [low, high], elementwise.

    ``alpha`` (alpha-CROWN), values in [0, 1] of the shape of ``low``: "lower"/"upper" place a
    tanh tangent point within its sound range, "lower" is an unstable ReLU's lower slope.
    Without it, CROWN's defaults: tangents at the midpoint of the range, the adaptive ReLU
    slope."""
    if activation == "relu":
        return _relax_relu(low, high, None if alpha is None else alpha["lower"])
    return _relax_tanh(low, high, alpha)


def _relax_relu(low, high, alpha) -> Relaxation:
    unstable = (low < 0) & (high > 0)
    active = low >= 0
    width = torch.where(unstable, high - low, 1.0)
    up_slope = torch.where(unstable, high / width, active.to(low.dtype))
    up_intercept = torch.where(unstable, -high * low / width, torch.zeros_like(low))
    default = (high > -low).to(low.dtype)
    slope = default if alpha is None else alpha
    low_slope = torch.where(unstable, slope, active.to(low.dtype))
    return Relaxation((low_slope, torch.zeros_like(low)), (up_slope, up_intercept))


def _relax_tanh(low, high, alpha) -> Relaxation:
    def place(start, end, key):
        share = 0.5 if alpha is None else alpha[key]
        return start + share * (end - start)

    concave, convex = low >= 0, high <= 0
    chord = _chord(low, high)
    # upper line: a tangent (concave), the chord (convex), or for a mixed interval the
    # tangent at a point of [d*, u], the chord when d* reaches u
    d_star = _upper_tangent_start(low, high)
    up = _tangent(torch.where(concave, place(low, high, "upper"), place(d_star, high, "upper")))
    use_tangent = concave | (~convex & (d_star < high))
    upper = tuple(torch.where(use_tangent, t, c) for t, c in zip(up, chord, strict=True))
    # lower line: the mirror image, tanh(z) >= -U(-z) for U an upper line on [-u, -l]; its
    # sound tangent points are [l, e*] with e* = -d*(-u, -l)
    e_star = -_upper_tangent_start(-high, -low)
    below = _tangent(torch.where(convex, place(high, low, "lower"),
                                 place(e_star, low, "lower")))
    use_low_tangent = convex | (~concave & (e_star > low))
    lower = tuple(torch.where(use_low_tangent, t, c) for t, c in zip(below, chord, strict=True))
    return Relaxation(lower, upper)


# ------------------------------------------------------------------------------------ CROWN


def _backward(net: Network, spec: torch.Tensor | None, depth: int,
              relaxations: Sequence[Relaxation], states: torch.Tensor, radius: torch.Tensor,
              p: float) -> Box:
    """Bounds of ``spec @ z_depth(x)`` over the ball (z_depth: the pre-activation of layer
    ``depth``, 0-based; depth L-1 is the output; ``spec`` None: the identity), by
    back-substitution through the given relaxations of layers depth-1, ..., 0. Coefficients
    shared by every state stay one matrix until a relaxation makes them per state."""
    if spec is None:
        upper_a = lower_a = net.weights[depth]
        upper_d = lower_d = net.biases[depth].expand(states.shape[0], -1)
    else:
        upper_a = lower_a = spec @ net.weights[depth]
        upper_d = lower_d = spec @ net.biases[depth]
    for layer in range(depth - 1, -1, -1):
        relaxation, weight, bias = relaxations[layer], net.weights[layer], net.biases[layer]
        if upper_a is lower_a and upper_a.dim() == 2 and upper_a.shape[0] > weight.shape[1]:
            upper_a, upper_d, lower_a, lower_d = _shared_step(upper_a, upper_d, relaxation,
                                                              weight, bias)
            continue
        upper_a, upper_d = _step(upper_a, upper_d, relaxation.upper, relaxation.lower, weight,
                                 bias)
        lower_a, lower_d = _step(lower_a, lower_d, relaxation.lower, relaxation.upper, weight,
                                 bias)
    centre = states.unsqueeze(-1)
    upper = (upper_a @ centre).squeeze(-1) + upper_d + radius[..., 0] * dual_norm(upper_a, p)
    lower = (lower_a @ centre).squeeze(-1) + lower_d - radius[..., 0] * dual_norm(lower_a, p)
    return lower, upper


def _step(a: torch.Tensor, d: torch.Tensor, same: tuple, other: tuple, weight: torch.Tensor,
          bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of back-substitution: in a h + d, replace h = act(z) by the line that keeps
    the bound's direction (``same``, the upper line for an upper bound, where a >= 0;
    ``other`` where a < 0), then z = W y + b. Returns the coefficients of y and the constant.

    ``a`` is (batch, K, n), or (K, n) when every state shares it."""
    (slope_same, intercept_same), (slope_other, intercept_other) = same, other
    if a.dim() == 2:
        a = a.expand(slope_same.shape[0], *a.shape)
    positive, negative = a.clamp(min=0), a.clamp(max=0)
    new_d = d + (positive @ (intercept_same + slope_same * bias).unsqueeze(-1)).squeeze(-1) \
        + (negative @ (intercept_other + slope_other * bias).unsqueeze(-1)).squeeze(-1)
    coefficients = positive * slope_same.unsqueeze(-2) + negative * slope_other.unsqueeze(-2)
    return coefficients @ weight, new_d


def _scaled_rows(slopes: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """diag(slopes_b) W for every state b, stacked as one (n, batch * m) matrix."""
    return (slopes.T.unsqueeze(-1) * weight.unsqueeze(1)).reshape(weight.shape[0], -1)


def _shared_step(a: torch.Tensor, d: torch.Tensor, relaxation: Relaxation, weight: torch.Tensor,
                 bias: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The first step of both bounds at once, for coefficients ``a`` (K, n) that every state
    shares and that have more rows than W has columns (a hidden layer's own bound). With
    P = max(a, 0), X = diag(slopes) W and D = X_upper - X_lower:
    upper = P X_upper + (a - P) X_lower = P D + a X_lower, lower = a X_upper - P D:
    three products, none (batch, K, n)."""
    (slope_up, intercept_up), (slope_low, intercept_low) = relaxation.upper, relaxation.lower
    positive, negative = a.clamp(min=0), a.clamp(max=0)
    x_upper, x_lower = _scaled_rows(slope_up, weight), _scaled_rows(slope_low, weight)
    shift = positive @ (x_upper - x_lower)
    batch, m = slope_up.shape[0], weight.shape[1]
    upper_a = (shift + a @ x_lower).view(a.shape[0], batch, m).transpose(0, 1)
    lower_a = (a @ x_upper - shift).view(a.shape[0], batch, m).transpose(0, 1)
    up_const, low_const = intercept_up + slope_up * bias, intercept_low + slope_low * bias
    upper_d = d + up_const @ positive.T + low_const @ negative.T
    lower_d = d + low_const @ positive.T + up_const @ negative.T
    return upper_a, upper_d, lower_a, lower_d


def _intersect(a: Box, b: Box) -> Box:
    return torch.maximum(a[0], b[0]), torch.minimum(a[1], b[1])


def crown_hidden(net: Network, states: torch.Tensor, eps: float | torch.Tensor, p: float,
                 ibp_hidden: list[Box] | None = None) -> tuple[list[Box], list[Relaxation]]:
    """CROWN's boxes of every hidden pre-activation (each intersected with IBP's, given or
    computed here) and the relaxations built on them."""
    radius = _radius(eps, states.shape[0])
    if ibp_hidden is None:
        _, ibp_hidden = ibp(net, states, eps, p)
    boxes: list[Box] = [ibp_hidden[0]] if ibp_hidden else []  # the first layer is exact
    relaxations: list[Relaxation] = []
    for depth in range(1, len(net.weights) - 1):
        relaxations.append(relax(*boxes[-1], net.activation))
        box = _backward(net, None, depth, relaxations, states, radius, p)
        boxes.append(_intersect(box, ibp_hidden[depth]))
    if boxes:
        relaxations.append(relax(*boxes[-1], net.activation))
    return boxes, relaxations


def output_box(net: Network, states: torch.Tensor, eps: float | torch.Tensor, p: float,
               method: str = "crown", spec: torch.Tensor | None = None,
               alpha_steps: int = 30, alpha_lr: float = 0.1) -> Box:
    """The box of ``spec @ z(x)`` over B_p(s, eps) by ``method`` in ``METHODS``; every row of
    ``states`` gets its own box. ``spec``: (K, out), or one per state (batch, K, out); by
    default the identity (the outputs themselves). ``eps``: a number, or one per state."""
    if method not in METHODS:
        raise ValueError(f"unknown bound method {method!r}; use one of {', '.join(METHODS)}")
    spec = torch.eye(net.weights[-1].shape[0], dtype=torch.float64) if spec is None else spec
    with torch.no_grad():
        ibp_box, ibp_hidden = ibp(net, states, eps, p, spec)
        if method == "ibp" or len(net.weights) == 1:
            return ibp_box
        boxes, relaxations = crown_hidden(net, states, eps, p, ibp_hidden)
        radius = _radius(eps, states.shape[0])
        box = _intersect(_backward(net, spec, len(net.weights) - 1, relaxations, states,
                                   radius, p), ibp_box)
    if method == "alpha-crown":
        box = _intersect(box, _alpha_crown(net, spec, boxes, states, radius, p, alpha_steps,
                                           alpha_lr))
    return box


def crown_ibp_box(net: Network, states: torch.Tensor, eps: float | torch.Tensor, p: float,
                  spec: torch.Tensor | None = None) -> Box:
    """CROWN-IBP's box of ``spec @ z(x)`` over the ball (Zhang et al. 2020, ICLR): IBP's boxes
    for the hidden pre-activations, CROWN's back-substitution through their relaxations for
    the output, intersected with IBP's output box. Sound, looser than CROWN (whose hidden boxes
    are CROWN's own), and cheap enough to differentiate in the weights at every minibatch of
    certified training: one IBP pass and one backward pass."""
    spec = torch.eye(net.weights[-1].shape[0], dtype=torch.float64) if spec is None else spec
    ibp_box, hidden = ibp(net, states, eps, p, spec)
    if len(net.weights) == 1:
        return ibp_box
    relaxations = [relax(low, high, net.activation) for low, high in hidden]
    radius = _radius(eps, states.shape[0])
    box = _backward(net, spec, len(net.weights) - 1, relaxations, states, radius, p)
    return _intersect(box, ibp_box)


def _alpha_crown(net: Network, spec: torch.Tensor, boxes: list[Box], states: torch.Tensor,
                 radius: torch.Tensor, p: float, steps: int, lr: float) -> Box:
    """The output box with the relaxations' free parameters optimised by projected gradient
    (Adam on the width of the box, then a clamp to [0, 1]); the intermediate boxes stay
    CROWN's. The lower and upper bounds each get their own parameters."""
    depth = len(net.weights) - 1
    best_lower = best_upper = None
    for side in ("lower", "upper"):
        params = [{key: torch.full_like(low, 0.5 if net.activation == "tanh" else 0.0,
                                        requires_grad=True)
                   for key in ("lower", "upper")} for low, _ in boxes]
        if net.activation == "relu":  # start from CROWN's adaptive slope
            for param, (low, high) in zip(params, boxes, strict=True):
                param["lower"].data = (high > -low).to(low.dtype)
        optimizer = torch.optim.Adam([t for param in params for t in param.values()], lr=lr)
        best = None
        for step in range(steps + 1):
            relaxations = [relax(low, high, net.activation, param)
                           for (low, high), param in zip(boxes, params, strict=True)]
            lower, upper = _backward(net, spec, depth, relaxations, states, radius, p)
            value = lower if side == "lower" else upper
            with torch.no_grad():
                best = value.detach() if best is None else (
                    torch.maximum(best, value) if side == "lower" else torch.minimum(best, value))
            if step == steps:
                break
            loss = -value.sum() if side == "lower" else value.sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                for param in params:
                    for tensor in param.values():
                        tensor.clamp_(0.0, 1.0)
        if side == "lower":
            best_lower = best
        else:
            best_upper = best
    return best_lower, best_upper
