#!/usr/bin/env bash
# Builds a separate virtual environment for experiments/bench_fno.py: CPU PyTorch, neuraloperator (the
# peer FNO) and this project (editable). The peer is not a dependency of dft_operators, so it never goes
# into the project's own environment.
#
# Usage: bash experiments/bench_fno_setup.sh [VENV]   (default: $BENCH_VENV or /tmp/bench-venv)
# Then:  VENV/bin/python experiments/bench_fno.py
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-${BENCH_VENV:-/tmp/bench-venv}}"
python="${PYTHON:-python3.11}"
torch_version="2.13.0"

"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip)
"${pip[@]}" install --upgrade pip

# CPU-only torch: a local "+cpu" wheel wins when pip's find-links has one; otherwise ask PyTorch's CPU
# index (a plain PyPI torch would pull several GiB of CUDA libraries).
cpu_wheel="$(ls /opt/wheels/torch-${torch_version}+cpu-*.whl 2>/dev/null | head -n1 || true)"
if [[ -n "$cpu_wheel" ]]; then
  "${pip[@]}" install "$cpu_wheel"
else
  "${pip[@]}" install "torch==${torch_version}" --index-url https://download.pytorch.org/whl/cpu
fi

# Keep that torch while the rest resolves.
constraints="$(mktemp)"
"$venv/bin/python" -c "import torch; print('torch==' + torch.__version__)" > "$constraints"
"${pip[@]}" install -c "$constraints" neuraloperator
"${pip[@]}" install -c "$constraints" -e "$repo"
rm -f "$constraints"

"$venv/bin/python" - <<'PY'
import jax, neuralop, torch
print(f"bench venv ready: torch {torch.__version__} (cuda: {torch.version.cuda}), "
      f"neuraloperator {neuralop.__version__}, jax {jax.__version__}")
PY
