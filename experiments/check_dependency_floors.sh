#!/usr/bin/env bash
# Checks that the version floors in pyproject.toml are true: builds a fresh virtual environment with every
# direct dependency (the core ones and those of the qm9, cluster and test extras) at its lowest allowed
# version, prints what got installed and runs the quick tests there. Indirect dependencies resolve to their
# newest versions that fit, as a user's fresh install would. A failure means a floor is too low: raise it.
#
# Usage: bash experiments/check_dependency_floors.sh [VENV]   (default: ${TMPDIR:-/tmp}/dft_floors)
#        PYTHON=python3.12 bash experiments/check_dependency_floors.sh   (interpreter; default python3.11)
# Arguments after VENV replace the test list below (test files, node ids, pytest options).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-${TMPDIR:-/tmp}/dft_floors}"
shift || true
python="${PYTHON:-python3.11}"

# A fresh venv each run, with uv in it: uv's "lowest-direct" resolution picks the lowest allowed version
# of each direct requirement, which pip cannot do. Only a folder that is a venv (or nothing) is replaced.
if [[ -e "$venv" && ! -f "$venv/pyvenv.cfg" ]]; then echo "$venv exists and is not a venv" >&2; exit 2; fi
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q uv
"$venv/bin/uv" pip install --python "$venv/bin/python" --resolution lowest-direct \
  -e "$repo[qm9,cluster,test]"

# The versions the tests run against: each direct requirement, then the JAX backend.
"$venv/bin/python" - <<'PY'
import re
from importlib.metadata import requires, version
names = dict.fromkeys(re.match(r"[A-Za-z0-9_.-]+", r).group() for r in requires("dft_operators"))
for name in [*names, "jaxlib"]:
    print(f"{name:18s} {version(name)}")
PY

# The quick tests (about 7 minutes on 2 busy cores): at least one for each dependency's use, leaving out the
# slow end-to-end files (generation, CLI, notebooks, DenSNet/DeepSCF training, reference SCF).
tests=(
  tests/test_grids.py tests/test_fno.py tests/test_physics.py tests/test_molecule.py tests/test_cube.py
  tests/test_splits.py tests/test_fingerprints.py tests/test_molecule_specs.py tests/test_input_pipeline.py
  tests/test_dynamics.py tests/test_no_pyscf.py tests/test_training_loop.py tests/test_shipped_cards.py
  # the floors of the cluster and test extras: dask, nbformat, nbclient, ipykernel
  "tests/test_generate.py::test_the_dask_executor_writes_the_records_of_the_process_executor"
  "tests/test_notebooks.py::test_notebook_executes[01_reference_data.ipynb]"
)
[[ $# -gt 0 ]] && tests=("$@")
cd "$repo"
"$venv/bin/python" -m pytest -q -x -p no:cacheprovider "${tests[@]}"
