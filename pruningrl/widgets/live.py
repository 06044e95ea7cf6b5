"""The live explorer: ipywidgets controls over ``sweep_sparsity``, drawn by ``ExplorerFigure``.

Only core ipywidgets (Dropdown, FloatSlider, BoundedFloatText, Image, HTML), so it runs in
JupyterLab, classic Notebook, Colab and Binder without any extension. Changing the agent,
method, scope or eps recomputes the sweep (every grid sparsity at once); moving the sparsity
slider only redraws from it. ``last_update`` holds the time of the latest redraw in seconds.
"""

from __future__ import annotations

import html
import time

import ipywidgets as widgets

from pruningrl.pruning import SCOPES
from pruningrl.widgets.figure import STATISTIC, ExplorerFigure
from pruningrl.widgets.model import (
    LOCAL_STATES,
    METHODS,
    SPARSITIES,
    Sweep,
    agent_and_states,
    default_eps,
    sweep_sparsity,
)
from pruningrl.widgets.returns import shipped_returns
from pruningrl.zoo import list_agents


def _catalogue() -> dict[str, dict[str, list[int]]]:
    """task -> variant -> seeds, from the shipped agents."""
    out: dict[str, dict[str, list[int]]] = {}
    for info in list_agents():
        env, variant, seed = info["id"].split("/")
        out.setdefault(env, {}).setdefault(variant, []).append(int(seed.removeprefix("seed")))
    return out


def readout(sweep: Sweep, i: int) -> str:
    """Panel (d): sparsity, certified radius, certified TV at eps, output layer alive."""
    radius = sweep.radius[i]
    alive = sweep.output_alive(i)
    lines = [
        f"sparsity {sweep.sparsity[i]:.3f} (target {sweep.sparsities[i]:.2f})",
        "certified radius: " + ("none, the policy is constant" if radius is None
                                else f"{radius:.4g} (largest eps with certified TV &le; 0.5)"),
        f"certified TV at eps = {sweep.eps:g}: {sweep.global_tv[i]:.4f} (global), "
        f"{sweep.local_tv[i]:.4f} (local) and {sweep.crown_tv[i]:.4f} (CROWN), means over "
        f"{LOCAL_STATES} visited states",
        "output layer: " + (f"alive ({1 - sweep.layer_sparsity[i][-1]:.1%} of it kept)" if alive
                            else "<b>fully pruned: a constant policy, not a robust one</b>"),
    ]
    if alive and sweep.constant[i]:
        lines.append("<b>no path from input to output is left: a constant policy</b>")
    return "<br>".join(lines)


class SparsityExplorer:
    """Prune a shipped agent with a slider and watch its weights, certificates and returns."""

    def __init__(self, agent_id: str = "Hopper-v5/ppo/seed0", method: str = "magnitude",
                 scope: str = "global", sparsity: float = 0.5, eps: float | None = None) -> None:
        self.catalogue = _catalogue()
        env, variant, seed = agent_id.split("/")
        style = {"description_width": "initial"}
        self.task = widgets.Dropdown(options=sorted(self.catalogue), value=env,
                                     description="task")
        self.variant = widgets.Dropdown(options=sorted(self.catalogue[env]), value=variant,
                                        description="variant")
        self.seed = widgets.Dropdown(options=self.catalogue[env][variant],
                                     value=int(seed.removeprefix("seed")), description="seed")
        self.method = widgets.Dropdown(options=METHODS, value=method, description="pruning")
        self.scope = widgets.Dropdown(options=SCOPES, value=scope, description="scope")
        self.eps = widgets.BoundedFloatText(value=eps or default_eps(env), min=1e-4, max=10.0,
                                            step=0.005, description="eps", style=style)
        self.slider = widgets.FloatSlider(value=sparsity, min=0.0, max=SPARSITIES[-1],
                                          step=0.05, description="sparsity",
                                          readout_format=".2f", continuous_update=True)
        self.image = widgets.Image(format="png")
        self.text = widgets.HTML()
        self.last_update = self.last_sweep = float("nan")
        self.sweep: Sweep | None = None
        self._syncing = False
        self.recompute()
        for control in (self.task, self.variant, self.seed):
            control.observe(self._on_agent, names="value")
        for control in (self.method, self.scope, self.eps):
            control.observe(lambda _: self.recompute(), names="value")
        self.slider.observe(lambda _: self.update(), names="value")
        self.widget = widgets.VBox([
            widgets.HBox([self.task, self.variant, self.seed]),
            widgets.HBox([self.method, self.scope, self.eps]),
            self.slider, self.image, self.text])

    @property
    def agent_id(self) -> str:
        return f"{self.task.value}/{self.variant.value}/seed{self.seed.value}"

    def _on_agent(self, change: dict) -> None:
        if self._syncing:
            return
        env = self.task.value
        self._syncing = True  # adjusting the other controls must not recompute half-way
        try:
            if change["owner"] is self.task:  # keep the choices to the shipped agents
                variant, variants = self.variant.value, sorted(self.catalogue[env])
                self.variant.options = variants
                self.variant.value = variant if variant in variants else variants[0]
                self.eps.value = default_eps(env)
            seed, seeds = self.seed.value, self.catalogue[env][self.variant.value]
            self.seed.options = seeds  # new options select the first; keep the reader's seed
            self.seed.value = seed if seed in seeds else seeds[0]
        finally:
            self._syncing = False
        self.recompute()

    def recompute(self) -> None:
        """Recompute the sweep for the current agent, method, scope and eps."""
        if self._syncing:
            return
        start = time.perf_counter()
        agent, states = agent_and_states(self.agent_id)
        self.sweep = sweep_sparsity(agent, self.method.value, self.scope.value, self.eps.value,
                                    states, agent_id=self.agent_id)
        env, variant = self.task.value, self.variant.value
        self.figure = ExplorerFigure(self.sweep, shipped_returns(env, variant, self.method.value,
                                                                 self.scope.value))
        self.update()  # the first draw of a new figure renders its background too
        self.last_sweep = time.perf_counter() - start

    def update(self) -> float:
        """Redraw every panel at the slider's sparsity; returns the time it took (s)."""
        start = time.perf_counter()
        i = self.sweep.index(self.slider.value)
        self.figure.show(i)
        self.image.value = self.figure.png()
        statistic = STATISTIC.get(self.sweep_kind, "change")
        self.text.value = (f"<div>(d) {html.escape(self.agent_id)}, {self.method.value} "
                           f"{self.scope.value} pruning; bounds on {statistic}.<br>"
                           + readout(self.sweep, i) + "</div>")
        self.last_update = time.perf_counter() - start
        return self.last_update

    @property
    def sweep_kind(self) -> str:
        return "categorical" if agent_and_states(self.agent_id)[0].discrete else "gaussian"

    def _repr_mimebundle_(self, **kwargs) -> dict:
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = f"SparsityExplorer({self.agent_id!r})"
        return bundle


def explore(agent_id: str = "Hopper-v5/ppo/seed0", **kwargs) -> SparsityExplorer:
    """A ``SparsityExplorer`` on a shipped agent; display it (last line of a cell) to play."""
    return SparsityExplorer(agent_id, **kwargs)
