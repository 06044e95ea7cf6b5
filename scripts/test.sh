#!/usr/bin/env bash
# Run the whole test suite: unit and property tests, then every notebook of the book through
# nbval (each notebook is re-executed and its outputs compared with the committed ones).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
unset MPLBACKEND  # notebooks draw their figures inline, as committed
export PYTHONHASHSEED=0
# the portable numeric mode for every process, whatever it imports first (pruningrl.numerics)
eval "$(.venv/bin/python -c 'from pruningrl.numerics import shell_exports; print(shell_exports())')"
.venv/bin/python -m ruff check .
.venv/bin/python -m pytest tests --nbval notebooks --nbval-sanitize-with tests/sanitize.cfg \
  --nbval-cell-timeout 900 -p no:cacheprovider "$@"
