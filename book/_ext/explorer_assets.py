"""Sphinx extension: serve plotly.js with the book, from the ``plotly`` package's own copy.

The kernel-free explorer page loads ``_static/explorer/plotly.min.js``; copying it at build
time keeps a 4.8 MB third-party file out of the repository and any CDN out of the page.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def _copy_plotly(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    import plotly

    source = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    target = Path(app.outdir) / "_static" / "explorer" / "plotly.min.js"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def setup(app) -> dict:
    app.connect("build-finished", _copy_plotly)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
