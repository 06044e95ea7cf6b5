#!/usr/bin/env bash
# Build the book: installs everything into .venv (CPU torch), then `jupyter-book build`.
# The build renders the outputs committed in the notebooks and executes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/jupyter-book build . -W -n --keep-going "$@"
echo "The book is at $(pwd)/_build/html/index.html"
