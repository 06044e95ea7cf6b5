"""The book's kernel-free explorer in a real browser: headless Chromium, local build, offline.

Builds the book if it is missing or older than its sources, opens the explorer page from the
file system with every host name unresolvable, moves the sparsity slider with the keyboard
and checks that the figures changed, that nothing was loaded from outside the machine and that
the console holds no error. A screenshot is saved under _build/ for a person to look at.
Skips, saying why, where no Chromium, chromedriver or Selenium is installed
(scripts/install_browser.sh installs them).
"""

from __future__ import annotations

import pytest
from book_support import ROOT, built_book, chromium_driver

PAGE = ROOT / "_build" / "html" / "notebooks" / "10_explorer.html"
SCREENSHOT = ROOT / "_build" / "explorer-screenshot.png"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = chromium_driver(tmp_path_factory.mktemp("chromium"), height=1700)
    try:
        build = built_book()
        assert (build / "_static" / "explorer" / "plotly.min.js").is_file(), \
            "plotly.js is not served with the book"
        driver.get(PAGE.as_uri())
        yield driver
    finally:
        driver.quit()


def _state(driver) -> dict:
    return driver.execute_script("""
        const heat = document.getElementById('pe-heatmaps');
        const nulls = (heat.data || []).map(t => t.z.flat().filter(v => v === null).length);
        return {heat: heat.innerHTML, bounds: document.getElementById('pe-bounds').innerHTML,
                readout: document.getElementById('pe-readout').textContent,
                value: document.getElementById('pe-sparsity').value, pruned: nulls};
    """)


def test_slider_moves_the_figures_offline(browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 60).until(lambda d: d.execute_script(
        "const h = document.getElementById('pe-heatmaps');"
        "return !!(window.Plotly && h && h.querySelector('.main-svg'));"),
        "the explorer's figures were never drawn")
    slider = browser.find_element(By.ID, "pe-sparsity")
    assert (slider.tag_name, slider.get_attribute("type")) == ("input", "range")
    before = _state(browser)
    browser.execute_script("arguments[0].scrollIntoView(); arguments[0].focus();", slider)
    for _ in range(4):
        slider.send_keys(Keys.ARROW_RIGHT)
    WebDriverWait(browser, 30).until(
        lambda d: _state(d)["readout"] != before["readout"],
        "the readout did not change after four presses of the right arrow key")
    after = _state(browser)
    browser.execute_script("document.getElementById('pruningrl-explorer').scrollIntoView();")
    browser.save_screenshot(str(SCREENSHOT))

    assert int(after["value"]) == int(before["value"]) + 4, "the arrow keys did not move it"
    assert after["heat"] != before["heat"], "the heatmaps were not redrawn"
    assert after["bounds"] != before["bounds"], "the bounds panel was not redrawn"
    assert sum(after["pruned"]) > sum(before["pruned"]), "higher sparsity, yet no more pruned"
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name);")
    outside = [r for r in resources if not r.startswith("file:")]
    assert not outside, f"the page requested resources outside the machine: {outside}"
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, f"the console shows errors: {errors}"
