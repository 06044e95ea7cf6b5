#!/usr/bin/env bash
# CI stage: the package alone carries what the notebooks load, as on Colab, where there is no
# repository: only `pip install "pruningrl @ git+URL"`.
#   1. build the wheel from a copy of the package's files;
#   2. install it into a brand-new venv outside the repository (CPU torch first, as bootstrap.sh),
#      with matplotlib and pandas, which Colab has;
#   3. run chapters 00 and 07 there with nbclient, from a temporary directory, and check that
#      their kernel imported pruningrl from that venv (shipped agents and results included).
# Usage: bash scripts/test_wheel.sh   (needs .venv from scripts/bootstrap.sh to build the wheel)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/pruningrl-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT
chapters=(notebooks/00_pipeline.ipynb notebooks/07_pruning.ipynb)

quietly() {  # pip's output only if it fails (this machine's pip config warns a lot)
  "$@" >"$work/pip.log" 2>&1 || { cat "$work/pip.log" >&2; return 1; }
}

mkdir -p "$work/src" "$work/run"
cp -r pyproject.toml README.md pruningrl "$work/src/"
find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
quietly .venv/bin/python -m pip wheel --no-deps --wheel-dir "$work/dist" \
  "$work/src"
wheel=$(ls "$work"/dist/pruningrl-*.whl)
echo "built $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KB)"

"${PYTHON:-python3}" -m venv "$work/venv"
vpy="$work/venv/bin/python"
quietly "$vpy" -m pip install --upgrade pip
quietly "$vpy" -m pip install "torch==2.13.0+cpu" \
  || quietly "$vpy" -m pip install torch --index-url https://download.pytorch.org/whl/cpu
quietly "$vpy" -m pip install "$wheel" matplotlib pandas nbclient nbformat ipykernel
echo "installed it into a new venv with torch $("$vpy" -c "import torch; print(torch.__version__)")"

cp "${chapters[@]}" "$work/run/"
cd "$work/run"
# Nothing of the repository on the path; Jupyter's files in the venv alone.
env -u PYTHONPATH -u MPLBACKEND JUPYTER_PATH="$work/venv/share/jupyter" \
  JUPYTER_DATA_DIR="$work/jupyter" PYTHONHASHSEED=0 "$vpy" - "$work/venv" \
  "${chapters[@]##*/}" <<'EOF'
import sys
import time

import nbformat
from nbclient import NotebookClient

venv, names = sys.argv[1], sys.argv[2:]
probe = "import pruningrl, sys\nprint(pruningrl.__file__)\nprint(sys.executable)"
for name in names:
    notebook = nbformat.read(name, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(probe))
    start = time.perf_counter()
    NotebookClient(notebook, timeout=1800, kernel_name="python3",
                   resources={"metadata": {"path": "."}}).execute()
    package, executable = notebook.cells[-1].outputs[0]["text"].split()
    assert package.startswith(venv) and "site-packages" in package, package
    assert executable.startswith(venv), executable
    print(f"{name}: ran from the installed wheel in {time.perf_counter() - start:.0f} s "
          f"({package})")
EOF
echo "wheel test: $(basename "$wheel") runs ${#chapters[@]} chapters without the repository"
