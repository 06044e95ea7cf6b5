"""Re-execute notebooks in place so their stored outputs are refreshed.

    .venv/bin/python scripts/run_notebooks.py notebooks/03_pruning_cannot_hurt.ipynb [...]

Runs each notebook top to bottom in a fresh kernel from the repository root's
``notebooks/`` folder (as nbval does), then writes it back with its new outputs.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def main(paths: list[str]) -> int:
    os.environ.pop("MPLBACKEND", None)  # the kernel must use the inline backend
    os.environ.setdefault("PYTHONHASHSEED", "0")
    for path in map(Path, paths):
        notebook = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        client = NotebookClient(
            notebook, timeout=1800, kernel_name="python3",
            resources={"metadata": {"path": str(path.parent)}},
        )
        client.execute()
        for cell in notebook.cells:
            cell.get("metadata", {}).pop("execution", None)
        # saved widget state holds random model ids and rendered images; the book shows a
        # kernel-free explorer instead, so the state is not kept
        notebook.metadata.pop("widgets", None)
        nbformat.write(notebook, path)
        print(f"{path}: executed in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
