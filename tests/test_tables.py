"""The book's HTML tables and the sweet-spot chapter's shared records."""

from __future__ import annotations

import pytest

from pruningrl.experiments import sweet_spot_pages
from pruningrl.tables import html_table


def test_a_table_formats_and_escapes_every_cell():
    table = html_table(["name", "return"], [("a<b", 3.14159), ("c&d", 2.0)], ["{}", "{:.2f}"])
    assert table.startswith('<table class="table"><thead><tr><th>name</th><th>return</th>')
    assert "<td>a&lt;b</td><td>3.14</td>" in table and "<td>c&amp;d</td><td>2.00</td>" in table
    compact = html_table(["x"], [(1,)], compact=True)
    assert 'font-size: 0.8em' in compact and 'white-space: nowrap">1</td>' in compact


def test_a_value_not_measured_is_a_dash_whatever_its_format():
    table = html_table(["point", "PA-AD"], [("dense", 1234.5), ("pruned", None)],
                       ["{}", "{:,.0f}"])
    assert "<td>1,234</td>" in table and "<td>pruned</td><td>-</td>" in table


def test_a_table_refuses_formats_that_do_not_fit_its_columns():
    with pytest.raises(ValueError, match="2 formats for 1 columns"):
        html_table(["x"], [(1,)], ["{}", "{}"])
    with pytest.raises(ValueError):
        html_table(["x", "y"], [(1,)])  # a row shorter than the header


def test_the_sweet_spot_pages_read_the_shipped_grid():
    assert len(sweet_spot_pages.complete) == 32
    hopper = sweet_spot_pages.series("Hopper-v5", "ppo", "magnitude", "global")
    assert hopper["verdict"] == "candidate" and hopper["sweet_spot"] == 0.3
    assert sweet_spot_pages.task("Walker2d-v5") == "Walker2d"
    with pytest.raises(AttributeError):
        sweet_spot_pages.no_such_thing  # noqa: B018
