"""Point the book's launch buttons and the notebooks' Colab install line at a repository.

    .venv/bin/python scripts/set_repository.py https://github.com/OWNER/REPO

``repository.url`` in ``_config.yml`` is the one setting: Binder and Colab open notebooks from
that repository, and every notebook's first cell installs the library from it on Colab. This
rewrites the setting and every first cell together; ``tests/test_notebooks.py`` fails when they
disagree. Only the install line changes, so the notebooks' stored outputs stay valid.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTING = re.compile(r"^(  url: )(\S+)$", re.M)
INSTALL = re.compile(r'("pruningrl @ git\+)([^"]+)(")')


def main(url: str) -> int:
    if not re.fullmatch(r"https://\S+", url):
        print(f"set_repository: expected an https URL, got {url!r}", file=sys.stderr)
        return 2
    config = ROOT / "_config.yml"
    text, count = SETTING.subn(lambda m: m[1] + url, config.read_text(), count=1)
    if count != 1:
        print("set_repository: no repository url in _config.yml", file=sys.stderr)
        return 1
    config.write_text(text)
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        notebook = json.loads(path.read_text())
        cell = next(c for c in notebook["cells"] if c["cell_type"] == "code")
        cell["source"] = [INSTALL.sub(lambda m: m[1] + url + m[3], line)
                          for line in cell["source"]]
        path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
    print(f"launch buttons and Colab install lines now use {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]) if len(sys.argv) == 2 else 2)
