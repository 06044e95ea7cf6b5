"""Sphinx extension: serve MathJax with the book, so the maths renders offline and on a mirror.

Copies MathJax 3 (the ``mathjax`` module of the ``django-static-mathjax`` package, MathJax's own
``es5`` build) into ``_static/mathjax/`` of the HTML output: the ``tex-chtml.js`` component that
the pages load (``mathjax_path`` in ``_config.yml``), and the folders it loads on demand (the TeX
extensions, the CommonHTML fonts, the menu and the accessibility tools). The other combined
components of the package are left out. The book loads nothing else from a CDN: Thebe's live
code is not enabled (the launch buttons open Binder and Colab instead).
"""

from __future__ import annotations

import shutil
from pathlib import Path

#: the MathJax component the pages load, and the folders it loads parts from
COMPONENT = "tex-chtml.js"
ON_DEMAND = ("input", "output", "ui", "a11y", "sre", "adaptors")


def mathjax_source() -> Path:
    """MathJax's ``es5`` folder inside the installed ``mathjax`` package."""
    try:
        import mathjax
    except ImportError as error:  # pragma: no cover - a missing build dependency
        raise RuntimeError("the book serves MathJax from the django-static-mathjax package: "
                           "pip install 'django-static-mathjax>=3.2.2'") from error
    return Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"


def _copy_mathjax(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    source = mathjax_source()
    target = Path(app.outdir) / "_static" / "mathjax"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / COMPONENT, target / COMPONENT)
    for folder in ON_DEMAND:
        if (source / folder).is_dir():
            shutil.copytree(source / folder, target / folder, dirs_exist_ok=True)


def setup(app) -> dict:
    mathjax_source()  # fail at the start of the build, not after it
    app.connect("build-finished", _copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
