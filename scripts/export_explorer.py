"""Write the kernel-free explorer's grid, book/explorer/grid.js, for the book.

Usage: .venv/bin/python scripts/export_explorer.py [AGENT_ID ...]
Re-run it (and commit the file) whenever the agents, the bounds or the shipped sweep change;
the file records the code version that made it.
"""

from __future__ import annotations

import pruningrl  # noqa: F401 - first: the process computes in the portable numeric mode

import sys
from pathlib import Path

import torch

from pruningrl.widgets.static import AGENTS, export_grid

OUT = Path(__file__).resolve().parent.parent / "book" / "explorer" / "grid.js"

if __name__ == "__main__":
    torch.set_num_threads(1)
    data = export_grid(OUT, tuple(sys.argv[1:]) or AGENTS)
    print(f"{OUT}: {OUT.stat().st_size / 1024:.0f} KB, {len(data['agents'])} agents, "
          f"code {data['provenance']['code_version']}")
