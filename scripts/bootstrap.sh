#!/usr/bin/env bash
# Create (or reuse) the project venv at .venv and install everything the book and tests need.
# A CPU build of torch is installed first so that pip never pulls a multi-GB CUDA build:
#   1. the CPU wheel on this machine's local wheel store (torch==2.13.0+cpu), if present;
#   2. otherwise PyTorch's CPU index.
# Usage: bash scripts/bootstrap.sh   (idempotent; a second run only checks)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
stamp=.venv/.pruningrl-installed
want=$(cat requirements.txt pyproject.toml scripts/constraints.txt scripts/bootstrap.sh | sha1sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
"$VPY" -m pip install --quiet --upgrade pip wheel
if ! "$VPY" -c "import torch" 2>/dev/null; then
  "$VPY" -m pip install --quiet "torch==2.13.0+cpu" 2>/dev/null \
    || "$VPY" -m pip install --quiet torch --index-url https://download.pytorch.org/whl/cpu
fi
# the exact versions the notebooks' committed outputs were made with (scripts/constraints.txt)
"$VPY" -m pip install --quiet -r requirements.txt -c scripts/constraints.txt
# sweeps run under Ray too; the tests convert Stable-Baselines3 agents
"$VPY" -m pip install --quiet -e ".[ray,test]" -c scripts/constraints.txt
# the notebooks' kernel starts in the portable numeric mode (pruningrl.numerics), even in a cell
# that imports NumPy or computes with torch before pruningrl is imported
kernel_env=$("$VPY" -c "import shlex; from pruningrl.numerics import PORTABLE_ENVIRONMENT as E
print(' '.join(f'--env {k} {shlex.quote(v)}' for k, v in E.items()))")
eval "\"\$VPY\" -m ipykernel install --sys-prefix --name python3 $kernel_env" >/dev/null
echo "$want" > "$stamp"
