"""Every page of the built book, as a reader sees it: headless Chromium, offline, 1,400 px wide.

For each page of the table of contents (and the proof index) the test loads the file with every
host name unresolvable, waits for MathJax to typeset, saves a full-page screenshot under
``_build/screenshots/`` and fails on:

* a MathJax error node, or an undefined macro left as red text;
* raw TeX in the rendered prose: ``$$``, ``\\(``, ``\\[``, ``\\begin`` or any ``\\command``
  outside code, outputs and typeset maths (what a ``$$`` block glued to a line of prose leaves);
* maths that never typeset (MathJax missing, e.g. loaded from a CDN the page cannot reach);
* an error in the console, or a request for a resource outside the machine;
* an output or a code block wider than the content column (cut off, or scrolled sideways),
  and a figure drawn by a cell (at 100 dpi) shrunk to fit it, since its fonts shrink with it
  (the static figures under book/figures are drawn at a higher resolution on purpose);
* a page of the sweet-spot part longer than about eight screens.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from book_support import ROOT, built_book, chromium_driver, toc_files

SCREENSHOTS = ROOT / "_build" / "screenshots"
WIDTH, SCREEN = 1400, 900
#: the longest page, in screens of WIDTH x SCREEN px, of the chapter split into pages
MAX_SCREENS = {"notebooks/09": 8.5}
#: a figure shown below this fraction of its drawn width has visibly smaller fonts
MIN_FIGURE_SCALE = 0.95
RAW_TEX = re.compile(r"\$\$|\\\(|\\\)|\\\[|\\\]|\\begin|\\[A-Za-z]{2,}")


def pages() -> list[str]:
    return [*toc_files(), "prf-prf"]


def page_file(build: Path, name: str) -> Path:
    return build / f"{name}.html"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = chromium_driver(tmp_path_factory.mktemp("chromium"), WIDTH, SCREEN)
    try:
        yield driver, built_book()
    finally:
        driver.quit()


WAIT_FOR_MATH = """
const done = arguments[arguments.length - 1];
const maths = document.querySelectorAll('.math, span.math, div.math').length;
const start = Date.now();
(function poll() {
  const mj = window.MathJax;
  if (mj && mj.startup && mj.startup.promise) {
    mj.startup.promise.then(() => done({maths, loaded: true}), e => done({maths, loaded: false,
        error: String(e)}));
  } else if (Date.now() - start > 20000 || (maths === 0 && document.readyState === 'complete')) {
    done({maths, loaded: false});
  } else {
    setTimeout(poll, 100);
  }
})();
"""

INSPECT = """
const skip = 'pre, code, script, style, mjx-container, mjx-assistive-mml, .cell_output, '
  + 'nav, .bd-sidebar-primary, .bd-sidebar-secondary, .bd-header, .prev-next-area, '
  + 'footer, .headerlink';
const main = document.querySelector('main') || document.body;
const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
const prose = [];
for (let n = walker.nextNode(); n; n = walker.nextNode()) {
  if (!n.parentElement.closest(skip)) prose.push(n.textContent);
}
const errors = [...document.querySelectorAll('mjx-merror, [data-mjx-error]')]
  .map(e => e.getAttribute('data-mjx-error') || e.textContent);
const undefinedMacros = [...document.querySelectorAll('mjx-container mjx-mtext')]
  .map(e => e.textContent).filter(t => /^\\\\[A-Za-z]+/.test(t));
const untypeset = [...document.querySelectorAll('.math')]
  .filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 60));
const wide = [...document.querySelectorAll('.cell_output > div, .cell_output .output, '
    + '.cell_output pre, .cell_output table, .cell_input pre, article div.highlight pre')]
  .filter(e => e.scrollWidth > e.clientWidth + 2)
  .map(e => (e.innerText || '').split('\\n')[0].slice(0, 60));
const column = (document.querySelector('.bd-article') || main).getBoundingClientRect();
const beyond = [...document.querySelectorAll('.cell_output *')]
  .filter(e => e.getBoundingClientRect().right > column.right + 2 && e.offsetParent)
  .map(e => e.tagName + ': ' + (e.innerText || e.getAttribute('alt') || '').slice(0, 40));
const shrunk = [...document.querySelectorAll('.cell_output img')]
  .filter(i => i.naturalWidth > 0 && i.clientWidth < i.naturalWidth * arguments[0])
  .map(i => `${i.naturalWidth} px drawn, ${i.clientWidth} px shown`);
const resources = performance.getEntriesByType('resource').map(e => e.name)
  .filter(r => !r.startsWith('file:'));
return {prose: prose.join(' '), errors, undefinedMacros, untypeset, wide, beyond, shrunk,
        resources, height: document.documentElement.scrollHeight};
"""


def inspect(driver, path: Path) -> dict:
    """Load one page, wait for its maths, and return what the checks read from it."""
    driver.set_window_size(WIDTH, SCREEN)
    driver.get(path.as_uri())
    driver.set_script_timeout(60)
    maths = driver.execute_async_script(WAIT_FOR_MATH)
    state = driver.execute_script(INSPECT, MIN_FIGURE_SCALE)
    state["console"] = [e["message"] for e in driver.get_log("browser")
                        if e["level"] == "SEVERE"]
    state["maths"] = maths
    return state


def screenshot(driver, name: str, height: int) -> Path:
    """A full-page screenshot at the reader's width (capped at 40 screens)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    target = SCREENSHOTS / (name.replace("/", "__") + ".png")
    driver.set_window_size(WIDTH, min(height, 40 * SCREEN))
    driver.save_screenshot(str(target))
    driver.set_window_size(WIDTH, SCREEN)
    return target


def raw_tex(prose: str) -> list[str]:
    """Snippets of prose around each piece of raw TeX."""
    return [prose[max(0, m.start() - 30):m.end() + 30] for m in RAW_TEX.finditer(prose)]


@pytest.mark.parametrize("name", pages())
def test_page_renders_offline(browser, name: str):
    driver, build = browser
    path = page_file(build, name)
    assert path.is_file(), f"{name}: not built ({path})"
    state = inspect(driver, path)
    screenshot(driver, name, state["height"])
    problems = []
    if state["maths"]["maths"] and not state["maths"]["loaded"]:
        problems.append(f"MathJax never loaded for {state['maths']['maths']} formulas")
    for key, what in (("errors", "MathJax errors"), ("undefinedMacros", "undefined macros"),
                      ("untypeset", "formulas left untypeset"),
                      ("console", "console errors"),
                      ("resources", "requests outside the machine"),
                      ("wide", "outputs or code wider than the column"),
                      ("beyond", "output elements past the column's right edge"),
                      ("shrunk", "figures shrunk to fit the column")):
        if state[key]:
            problems.append(f"{what}: {state[key][:4]}")
    if raw_tex(state["prose"]):
        problems.append(f"raw TeX in the prose: {raw_tex(state['prose'])[:4]}")
    for prefix, limit in MAX_SCREENS.items():
        if name.startswith(prefix) and state["height"] > limit * SCREEN:
            problems.append(f"{state['height'] / SCREEN:.1f} screens long (at most {limit})")
    assert not problems, f"{name}:\n  " + "\n  ".join(problems)


def test_raw_tex_check_sees_a_glued_display_block():
    """The prose check fires on what a broken display block leaves, and not on plain prose."""
    assert raw_tex(r"the bound $$\bar L(\pi) = \lVert P \rVert$$ where")
    assert raw_tex(r"where \lvert \Sigma^{-1/2} \rvert is the entrywise absolute value")
    assert not raw_tex("a plain sentence, with 3.5 and 1/2 and a path C:/x and $5")
