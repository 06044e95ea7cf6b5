"""The book's tables: rows shown as an HTML table, rendered alike by Jupyter and the book.

A table is the reader's view of a few numbers; it replaces a printout. ``html_table`` writes
the HTML (each value formatted, then escaped), ``show_table`` displays it in a notebook.
``compact`` tables (smaller type, no wrapping inside a cell) fit wide result tables within the
page.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape


def html_table(columns: Sequence[str], rows: Iterable[Sequence[object]],
               formats: Sequence[str] | None = None, compact: bool = False) -> str:
    """An HTML table of ``rows`` under ``columns``; ``formats`` are ``str.format`` patterns,
    one per column (default ``"{}"``). A value of None (not measured) is shown as "-"."""
    formats = list(formats) if formats is not None else ["{}"] * len(columns)
    if len(formats) != len(columns):
        raise ValueError(f"{len(formats)} formats for {len(columns)} columns")
    cell = '<td style="white-space: nowrap">{}</td>' if compact else "<td>{}</td>"
    head = "".join(f"<th>{escape(str(name))}</th>" for name in columns)
    body = "".join(
        "<tr>" + "".join(cell.format(escape("-" if value is None else fmt.format(value)))
                         for fmt, value in zip(formats, row, strict=True)) + "</tr>"
        for row in rows)
    opening = ('<table class="dataframe" style="font-size: 0.8em">' if compact
               else '<table class="table">')
    return f"{opening}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def show_table(columns: Sequence[str], rows: Iterable[Sequence[object]],
               formats: Sequence[str] | None = None, compact: bool = False) -> None:
    """Display ``html_table(columns, rows, formats, compact)`` in the notebook."""
    from IPython.display import HTML, display

    display(HTML(html_table(columns, rows, formats, compact)))
