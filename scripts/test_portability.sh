#!/usr/bin/env bash
# The book's numbers on other CPUs, simulated on this one: the experiment and numeric-mode
# tests and the chapters that roll out or bound (06 training, 08 attacks, 11 certified training)
# run again with MKL limited to its AVX2 code path, then to its SSE4.2 path. In the portable numeric mode (pruningrl.numerics)
# every output must stay bit for bit the committed one; an output that depends on the CPU fails.
# The processes here are not given the portable environment: `import pruningrl` must set it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
unset MPLBACKEND
export PYTHONHASHSEED=0
for instructions in AVX2 SSE4_2; do
  echo "--- MKL limited to ${instructions}"
  MKL_ENABLE_INSTRUCTIONS=$instructions .venv/bin/python -m pytest tests/test_experiments.py \
    tests/test_numerics.py --nbval notebooks/06_training.ipynb notebooks/08_attacks.ipynb \
    notebooks/11_certified_training.ipynb \
    --nbval-sanitize-with tests/sanitize.cfg --nbval-cell-timeout 900 -p no:cacheprovider -q "$@"
done
