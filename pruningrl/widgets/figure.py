"""The explorer's figure (matplotlib): masked weight heatmaps, bounds and returns vs sparsity.

Built once per sweep; ``show(i)`` only updates the artists that depend on the grid point
(marked ``animated``): the rest is rendered once and kept as a background bitmap, over which
each update draws those few artists (matplotlib's blitting), so moving the slider is fast.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from PIL import Image  # noqa: E402

from pruningrl.widgets.model import Sweep  # noqa: E402
from pruningrl.widgets.returns import ReturnSeries  # noqa: E402

BOUNDS = (("global_bound", "global certificate (monotone)", "C0"),
          ("local_bound", "local bound, mean over visited states", "C2"),
          ("crown_bound", "CROWN, mean over visited states", "C1"),
          ("spectral_bound", "spectral product (not monotone)", "C3"))
STATISTIC = {"gaussian": "Delta", "categorical": "osc"}


class ExplorerFigure:
    """Panels (a) weights and masks, (b) bounds vs sparsity, (c) shipped returns vs sparsity."""

    def __init__(self, sweep: Sweep, returns: ReturnSeries | None, dpi: int = 72) -> None:
        self.sweep, self.returns, self.dpi = sweep, returns, dpi
        self.fig = Figure(figsize=(11, 6.4))
        grid = self.fig.add_gridspec(2, len(sweep.weights), left=0.07, right=0.98, top=0.95,
                                     bottom=0.08, hspace=0.38, wspace=0.3)
        self.images, self.heat_axes = [], []
        # each layer's weights divided by its largest |weight|, so one colour bar serves all
        self.scaled = [w / (float(np.abs(w).max()) or 1.0) for w in sweep.weights]
        cmap = plt.get_cmap("RdBu_r").with_extremes(bad="0.82")
        for k, weight in enumerate(self.scaled):
            ax = self.fig.add_subplot(grid[0, k])
            self.images.append(ax.imshow(weight, cmap=cmap, vmin=-1.0, vmax=1.0,
                                         aspect="auto", interpolation="nearest"))
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel(f"in ({weight.shape[1]})")
            ax.set_ylabel(f"out ({weight.shape[0]})")
            self.heat_axes.append(ax)
        bar = self.fig.colorbar(self.images[-1], ax=self.heat_axes[-1], fraction=0.08, pad=0.03)
        bar.set_label("weight / layer's max |weight|\n(grey: pruned)", fontsize=9)
        half = len(sweep.weights) // 2 or 1
        self.bounds_ax = self.fig.add_subplot(grid[1, :half])
        self.returns_ax = self.fig.add_subplot(grid[1, half:])
        self.markers = self._draw_bounds() + self._draw_returns()
        self.canvas = FigureCanvasAgg(self.fig)
        self.dynamic = [*self.images, *(ax.title for ax in self.heat_axes), self.bounds_line,
                        self.returns_line, self.returns_note, *(m for m, _ in self.markers)]
        for artist in self.dynamic:
            artist.set_animated(True)
        self._background = None

    def _draw_bounds(self) -> list:
        ax, s = self.bounds_ax, self.sweep.sparsities
        markers = []
        for name, label, colour in BOUNDS:
            values = np.asarray(getattr(self.sweep, name), dtype=float)
            if np.isnan(values).all():
                continue
            values = np.where(values > 0, values, np.nan)  # 0: a constant policy (log axis)
            ax.plot(s, values, color=colour, label=label)
            markers.append((ax.plot([], [], "o", color=colour, ms=8)[0], values))
        ax.set_yscale("log")
        ax.set(xlabel="sparsity", ylabel=f"bound on the change at eps = {self.sweep.eps:g}",
               xlim=(0, 0.96), title="(b) certificates and bounds, one-shot pruning")
        ax.legend(fontsize=8, loc="lower left")
        self.bounds_line = ax.axvline(0, color="k", lw=0.8, ls=":")
        return markers

    def _draw_returns(self) -> list:
        ax, series = self.returns_ax, self.returns
        ax.set(xlabel="sparsity", ylabel="mean return", xlim=(0, 0.96),
               title="(c) shipped sweet-spot returns (pruned, then fine-tuned)")
        self.returns_line = ax.axvline(0, color="k", lw=0.8, ls=":")
        self.returns_note = ax.text(0.5, 0.5, "", transform=ax.transAxes, ha="center",
                                    va="center", fontsize=10)
        if series is None:
            return []
        markers = []
        for name, colour, label in (("clean", "C0", "clean"),
                                    ("attacked", "C3", f"attacked ({', '.join(series.attacks)})")):
            table = getattr(series, name)
            xs = [s for s in series.sparsities if s in table]
            med, low, high = (np.array([table[s][j] for s in xs]) for j in range(3))
            ax.fill_between(xs, low, high, color=colour, alpha=0.2, lw=0)
            ax.plot(xs, med, "-", color=colour, label=f"{label}: median, seed range")
            markers.append((ax.plot([], [], "o", color=colour, ms=8)[0],
                            np.array([table[s][0] if s in table else np.nan
                                      for s in self.sweep.sparsities])))
        ax.legend(fontsize=8, loc="lower left")
        return markers

    def show(self, i: int) -> None:
        """Move every panel to grid point ``i``."""
        sweep = self.sweep
        for k, (image, keep) in enumerate(zip(self.images, sweep.masks(i), strict=True)):
            image.set_data(np.ma.masked_array(self.scaled[k], mask=~keep))
            self.heat_axes[k].set_title(f"(a) layer {k + 1}: sparsity "
                                        f"{sweep.layer_sparsity[i][k]:.2f}", fontsize=10)
        s = sweep.sparsities[i]
        for line in (self.bounds_line, self.returns_line):
            line.set_xdata([s, s])
        for marker, values in self.markers:
            marker.set_data([s], [values[i]])
        self.returns_note.set_text(self._returns_note(s))
        if self._background is None:  # everything but the dynamic artists, rendered once
            self.fig.set_dpi(self.dpi)
            self.canvas.draw()
            self._background = self.canvas.copy_from_bbox(self.fig.bbox)
        self.canvas.restore_region(self._background)
        for artist in self.dynamic:
            self.fig.draw_artist(artist)

    def _returns_note(self, s: float) -> str:
        if self.returns is None:
            return (f"No shipped sweet-spot results for\n{self.sweep.method} / "
                    f"{self.sweep.scope} pruning of this task and variant.")
        clean, attacked = self.returns.at(s)
        if clean is None or attacked is None:
            return f"not measured at sparsity {s:.2f}"
        return ""

    def png(self) -> bytes:
        """The figure as last drawn by ``show``, as PNG bytes."""
        if self._background is None:
            raise RuntimeError("call show(i) first")
        rgb = Image.fromarray(np.asarray(self.canvas.buffer_rgba())).convert("RGB")
        buffer = io.BytesIO()
        rgb.save(buffer, format="png", compress_level=1)
        return buffer.getvalue()
