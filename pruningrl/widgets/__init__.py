"""Exploring sparsity interactively: a live ipywidgets explorer and its kernel-free twin.

``sweep_sparsity`` computes, for one agent, pruning method and scope, everything the explorer
shows at every sparsity of a grid (masks, certificates, bounds); ``shipped_returns`` reads the
measured returns of the sweet-spot sweep. ``SparsityExplorer`` (``explore``) draws them live in a
notebook; ``export_grid`` writes the same data for the book's static page.
"""

from pruningrl.widgets.model import SPARSITIES, Sweep, default_eps, sweep_sparsity
from pruningrl.widgets.returns import ReturnSeries, shipped_returns

__all__ = [
    "SPARSITIES", "ReturnSeries", "SparsityExplorer", "Sweep", "default_eps", "explore",
    "export_grid", "shipped_returns", "sweep_sparsity",
]


def __getattr__(name: str):
    # the widget and the exporter import ipywidgets / matplotlib; load them on first use
    if name in ("SparsityExplorer", "explore"):
        from pruningrl.widgets import live
        return getattr(live, name)
    if name == "export_grid":
        from pruningrl.widgets.static import export_grid
        return export_grid
    raise AttributeError(f"module 'pruningrl.widgets' has no attribute {name!r}")
