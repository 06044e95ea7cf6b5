"""The book's kernel-free explorer in a real browser: headless Chromium, local build, offline.

Builds the book if its explorer page is missing or older than its sources, opens the page from
the file system with every host name unresolvable, moves the sparsity slider with the keyboard
and checks that the figures changed, that nothing was loaded from outside the machine and that
the console holds no error. A screenshot is saved under _build/ for a person to look at.
Skips, saying why, where no Chromium, chromedriver or Selenium is installed (CI installs them:
scripts/install_browser.sh).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build" / "html"
PAGE = BUILD / "notebooks" / "10_explorer.html"
SCREENSHOT = ROOT / "_build" / "explorer-screenshot.png"
SOURCES = [ROOT / "notebooks" / "10_explorer.ipynb", ROOT / "_config.yml", ROOT / "_toc.yml",
           *sorted((ROOT / "book" / "explorer").glob("*")),
           ROOT / "book" / "_ext" / "explorer_assets.py"]
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--window-size=1280,1700",
                # no host name resolves: any request outside the machine fails (and is logged)
                "--host-resolver-rules=MAP * ~NOTFOUND")


def _browser() -> tuple[str, str]:
    """Paths of Chromium and chromedriver, or skip with the reason."""
    pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")
    chromium = next((p for p in map(shutil.which, ("chromium", "chromium-browser",
                                                   "google-chrome")) if p), None)
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip("no headless browser: install Debian's chromium and chromium-driver "
                    "(bash scripts/install_browser.sh, as root)")
    return chromium, driver


def _built_page() -> Path:
    """The explorer page of a book build at least as new as its sources (built if needed)."""
    stale = not PAGE.is_file() or PAGE.stat().st_mtime < max(p.stat().st_mtime
                                                             for p in SOURCES)
    if stale:
        jb = Path(sys.executable).with_name("jupyter-book")
        done = subprocess.run([str(jb), "build", str(ROOT), "-W", "-n", "--keep-going"],
                              capture_output=True, text=True, timeout=1800)
        assert done.returncode == 0, f"the book build failed:\n{done.stdout[-3000:]}"
    assert (BUILD / "_static" / "explorer" / "plotly.min.js").is_file(), \
        "plotly.js is not served with the book"
    return PAGE


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, driver_path = _browser()
    page = _built_page()
    os.environ.setdefault("SE_OFFLINE", "true")
    os.environ.setdefault("SE_AVOID_STATS", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(page.as_uri())
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
