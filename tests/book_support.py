"""What the book tests share: its table of contents, a fresh build, and headless Chromium.

``chromium_driver`` opens Chromium with every host name unresolvable, so any request for a
resource outside the machine fails and shows in the console. ``built_book`` builds the book
(``jupyter-book build -W -n --keep-going``) when the HTML is missing or older than any source
of it. Tests skip, saying why, where no Chromium, chromedriver or Selenium is installed
(scripts/install_browser.sh installs them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build" / "html"
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--hide-scrollbars",
                # no host name resolves: any request outside the machine fails (and is logged)
                "--host-resolver-rules=MAP * ~NOTFOUND")


def toc_files() -> list[str]:
    """Every page of the table of contents, root first, as paths without suffix."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(node) -> None:
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc.get("parts", toc.get("chapters", [])))
    return files


def book_sources() -> list[Path]:
    """The files a build reads: the pages, the configuration, the extensions and assets."""
    pages = [p for f in toc_files() for p in ROOT.glob(f"{f}.*") if p.suffix in (".md", ".ipynb")]
    assets = [p for p in (ROOT / "book").rglob("*") if p.is_file()]
    return [ROOT / "_config.yml", ROOT / "_toc.yml", *pages, *assets]


def built_book() -> Path:
    """The HTML folder of a build at least as new as every source (built here if needed)."""
    index = BUILD / "index.html"
    newest = max(p.stat().st_mtime for p in book_sources())
    if not index.is_file() or index.stat().st_mtime < newest:
        jb = Path(sys.executable).with_name("jupyter-book")
        done = subprocess.run([str(jb), "build", str(ROOT), "-W", "-n", "--keep-going"],
                              capture_output=True, text=True, timeout=1800)
        assert done.returncode == 0, f"the book build failed:\n{done.stdout[-3000:]}"
        index.touch()  # a build that changed nothing still counts as fresh
    return BUILD


def chromium_driver(profile: Path, width: int = 1400, height: int = 900):
    """A headless Chromium driven by Selenium, offline, console messages recorded."""
    pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")
    chromium = next((p for p in map(shutil.which, ("chromium", "chromium-browser",
                                                   "google-chrome")) if p), None)
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip("no headless browser: install Debian's chromium and chromium-driver "
                    "(bash scripts/install_browser.sh, as root)")
    os.environ.setdefault("SE_OFFLINE", "true")
    os.environ.setdefault("SE_AVOID_STATS", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROME_FLAGS, f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=options)
