"""Sphinx extension: serve the kernel-free explorer's scripts with the book.

Copies, into ``_static/explorer/`` of the HTML output, plotly.js from the ``plotly`` package's
own copy (so no 4.8 MB third-party file sits in the repository, and no CDN in the page) and
``book/explorer/*.js`` (the explorer and its precomputed grid). They are not in ``_static/``
because Jupyter Book would then load them on every page; only the explorer page loads them.

It also drops duplicate script entries from every page: under Sphinx 7.4, sphinx-thebe 0.3.1
registers its inline configuration script twice, and the second ``const THEBE_JS_URL`` is a
JavaScript SyntaxError in the console of every page.
"""

from __future__ import annotations

import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent / "explorer"


def _copy_assets(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    import plotly

    target = Path(app.outdir) / "_static" / "explorer"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(plotly.__file__).parent / "package_data" / "plotly.min.js",
                    target / "plotly.min.js")
    for script in HERE.glob("*.js"):
        shutil.copyfile(script, target / script.name)


def _drop_duplicate_scripts(app, pagename, templatename, context, doctree) -> None:
    seen, unique = set(), []
    for script in context.get("script_files", []):
        # an inline script appears once with filename None and once with "" (the registry's)
        key = (getattr(script, "filename", script) or "",
               tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    if "script_files" in context:
        context["script_files"][:] = unique  # the builder's own list, restored per page


def setup(app) -> dict:
    app.connect("build-finished", _copy_assets)
    app.connect("html-page-context", _drop_duplicate_scripts, priority=900)  # after the rest
    return {"parallel_read_safe": True, "parallel_write_safe": True}
