"""The book's figure style: fonts of 10-11 pt at the size the page shows them.

Figures are drawn at 100 dpi. The book's content column is about 770 px wide in a 1,400 px
window, so a figure at most ``PAGE_WIDTH`` inches wide is shown at its natural size and its
fonts keep their point sizes; a wider one would be scaled down, and its fonts with it.
"""

from __future__ import annotations

#: the widest figure, in inches, that the content column shows unscaled at 100 dpi
PAGE_WIDTH = 7.5

BOOK_STYLE: dict[str, object] = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "figure.figsize": (PAGE_WIDTH, 3.4),
    "figure.constrained_layout.use": True,
    "font.size": 10.5,
    "axes.titlesize": 11,
    "axes.labelsize": 10.5,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "legend.title_fontsize": 10,
    "figure.titlesize": 11,
}


def use_book_style() -> None:
    """Set matplotlib's defaults to the book's style (``BOOK_STYLE``) for this process."""
    import matplotlib as mpl

    mpl.rcParams.update(BOOK_STYLE)


def figure_size(height: float, width: float = PAGE_WIDTH) -> tuple[float, float]:
    """A figure size in inches, refusing a width the content column would have to shrink."""
    if not 0 < width <= PAGE_WIDTH or height <= 0:
        raise ValueError(f"a book figure is at most {PAGE_WIDTH} in wide and has a positive "
                         f"height, got {width} x {height}")
    return (width, height)
