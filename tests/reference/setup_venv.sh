#!/usr/bin/env bash
# Create (if missing) the repo-root .venv and install the pinned reference-fixture environment.
# Idempotent: a second run only checks that the pinned packages are present.
# Usage: bash tests/reference/setup_venv.sh        (from anywhere)
# Env:   PYTHON=python3.11 to choose the interpreter; VENV=path to override the venv location.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${VENV:-$root/.venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    echo "setup_venv: creating $venv"
    "$python" -m venv "$venv"
fi

"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
"$venv/bin/python" -c "import torch, transformers, compressed_tensors, safetensors, numpy, psutil, gguf, openai; print('setup_venv: ok torch', torch.__version__, 'transformers', transformers.__version__, 'compressed-tensors', compressed_tensors.__version__)"
