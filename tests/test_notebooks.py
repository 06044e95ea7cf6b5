"""House rules for the book's notebooks: listed in the TOC, committed with outputs, no errors.

nbval re-executes the notebooks themselves (``pytest --nbval notebooks``); these tests check
what nbval cannot: that every TOC entry exists, every notebook is in the TOC, and that the
committed outputs are real.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from book_support import toc_files

ROOT = Path(__file__).resolve().parents[1]


def toc_notebooks() -> list[Path]:
    return [ROOT / f"{f}.ipynb" for f in toc_files() if f.startswith("notebooks/")]


def code_cells(path: Path) -> list[dict]:
    cells = json.loads(path.read_text())["cells"]
    return [c for c in cells if c["cell_type"] == "code" and "".join(c["source"]).strip()]


def test_every_toc_entry_exists():
    missing = [
        f for f in toc_files()
        if not any((ROOT / f"{f}{ext}").exists() for ext in (".md", ".ipynb"))
    ]
    assert not missing, f"_toc.yml lists files that do not exist: {missing}"


def test_every_notebook_is_in_the_toc():
    listed = {p.resolve() for p in toc_notebooks()}
    on_disk = {
        p.resolve() for p in (ROOT / "notebooks").rglob("*.ipynb")
        if ".ipynb_checkpoints" not in p.parts
    }
    assert on_disk - listed == set(), f"notebooks missing from _toc.yml: {on_disk - listed}"


@pytest.mark.parametrize("path", toc_notebooks(), ids=lambda p: p.name)
def test_notebook_committed_with_outputs_and_no_errors(path: Path):
    cells = code_cells(path)
    assert cells, f"{path.name} has no code cells"
    errors = [o for c in cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, f"{path.name} holds an error output"
    assert any(c.get("outputs") for c in cells), f"{path.name} was committed without outputs"
    unexecuted = [i for i, c in enumerate(cells) if c.get("execution_count") is None]
    assert not unexecuted, f"{path.name}: code cells {unexecuted} were never executed"


@pytest.mark.parametrize("path", toc_notebooks(), ids=lambda p: p.name)
def test_notebook_starts_with_colab_setup_then_seeding(path: Path):
    cells = code_cells(path)
    first, second = "".join(cells[0]["source"]), "".join(cells[1]["source"])
    assert "google.colab" in first and "pip install" in first, "first cell: Colab-only setup"
    assert "seed_everything" in second, "second cell: seeding and determinism"


@pytest.mark.parametrize("path", toc_notebooks(), ids=lambda p: p.name)
def test_figure_cells_print_no_repr(path: Path):
    for cell in code_cells(path):
        for out in cell.get("outputs", []):
            text = "".join(out.get("data", {}).get("text/plain", []))
            if out["output_type"] == "execute_result":
                assert not text.startswith(("<matplotlib", "[<matplotlib", "Text(")), (
                    f"{path.name}: a figure cell prints a repr ({text[:40]!r}); end it with "
                    "plt.show() or a trailing ';'"
                )


def markdown(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


@pytest.mark.parametrize("path", toc_notebooks(), ids=lambda p: p.name)
def test_setup_cells_are_out_of_the_readers_way(path: Path):
    """The Colab and seeding cells are hidden from the page (the notebook keeps them)."""
    for cell in code_cells(path)[:2]:
        tags = set(cell.get("metadata", {}).get("tags", []))
        assert tags & {"remove-input", "hide-input"}, f"{path.name}: a setup cell is shown"


@pytest.mark.parametrize("path", toc_notebooks(), ids=lambda p: p.name)
def test_no_nbval_marker_in_the_readers_view(path: Path):
    """Nondeterministic cells carry the nbval-ignore-output tag, not a comment the reader sees."""
    marked = [i for i, c in enumerate(code_cells(path)) if "NBVAL_" in "".join(c["source"])]
    assert not marked, f"{path.name}: code cells {marked} carry an NBVAL comment; tag them"


@pytest.mark.parametrize("path", toc_notebooks(), ids=lambda p: p.name)
def test_chapter_ends_with_takeaways_and_exercises_with_solutions(path: Path):
    text = markdown(path)
    assert "## Takeaways" in text, f"{path.name}: no takeaways"
    assert "## Exercises" in text, f"{path.name}: no exercises"
    assert text.index("## Takeaways") < text.index("## Exercises"), \
        f"{path.name}: the exercises come before the takeaways"
    takeaways = text[text.index("## Takeaways"):text.index("## Exercises")]
    bullets = [line for line in takeaways.splitlines() if line.startswith(("* ", "- "))]
    assert 3 <= len(bullets) <= 5, f"{path.name}: {len(bullets)} takeaways (3 to 5)"
    exercises = text[text.index("## Exercises"):]
    assert "{admonition} Solution" in exercises and ":class: dropdown" in exercises, \
        f"{path.name}: the exercises have no hidden solutions"


@pytest.mark.parametrize("path", toc_notebooks(), ids=lambda p: p.name)
def test_every_figure_has_a_numbered_caption(path: Path):
    """A cell that draws a figure names it and captions it (myst-nb's figure metadata)."""
    uncaptioned = []
    for i, cell in enumerate(code_cells(path)):
        images = [o for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
        tags = set(cell.get("metadata", {}).get("tags", []))
        if not images or "remove-output" in tags or "remove-cell" in tags:
            continue
        figure = cell.get("metadata", {}).get("mystnb", {}).get("figure", {})
        if not (figure.get("caption") and figure.get("name")):
            uncaptioned.append(i)
    assert not uncaptioned, f"{path.name}: figure cells {uncaptioned} have no caption and name"


def test_figure_names_are_unique_across_the_book():
    names = [c.get("metadata", {}).get("mystnb", {}).get("figure", {}).get("name")
             for path in toc_notebooks() for c in code_cells(path)]
    names = [n for n in names if n]
    assert len(names) == len(set(names)), "two figures share a name"


@pytest.mark.parametrize("path", toc_notebooks(), ids=lambda p: p.name)
def test_no_figure_text_set_below_ten_points(path: Path):
    """The book's style sets every font at 10 pt or more; a cell may not shrink one again
    (``fontsize=9``, ``fontsize="small"``, ``labelsize=8``)."""
    import re

    pattern = re.compile(r"\b(?:fontsize|labelsize|size)\s*=\s*(?:(\d+(?:\.\d+)?)|"
                         r"[\"'](xx-small|x-small|small|smaller)[\"'])")
    small = []
    for i, cell in enumerate(code_cells(path)):
        for match in pattern.finditer("".join(cell["source"])):
            points, named = match.groups()
            if named or float(points) < 10:
                small.append((i, match.group(0)))
    assert not small, f"{path.name}: text below 10 pt in code cells {small}"
