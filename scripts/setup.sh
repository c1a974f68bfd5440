#!/usr/bin/env bash
# Creates .venv (Python 3.10) with OneFlow 0.9.0 and everything ofconvert needs.
# Usage: bash scripts/setup.sh        (idempotent; safe to re-run)
set -euo pipefail
cd "$(dirname "$0")/.."
PY310="${OFCONVERT_PYTHON:-}"
if [ -z "$PY310" ]; then
  if command -v pyenv >/dev/null 2>&1 && [ -x "$(pyenv root)/versions/3.10.13/bin/python3.10" ]; then
    PY310="$(pyenv root)/versions/3.10.13/bin/python3.10"
  elif command -v python3.10 >/dev/null 2>&1; then
    PY310="$(command -v python3.10)"
  else
    echo "setup: Python 3.10 not found (OneFlow 0.9.0 ships cp38-cp310 wheels only); set OFCONVERT_PYTHON" >&2
    exit 2
  fi
fi
[ -x .venv/bin/python ] || "$PY310" -m venv .venv
PIP=(.venv/bin/python -m pip --disable-pip-version-check)
C=(-c requirements/constraints.txt)
"${PIP[@]}" install -q "${C[@]}" "setuptools" wheel
"${PIP[@]}" install -q "${C[@]}" -r requirements/dev.txt
# flowvision 0.2.1 is an sdist whose setup.py imports setuptools only: build it
# against the venv's pinned setuptools (<81), without build isolation.
"${PIP[@]}" install -q "${C[@]}" --no-build-isolation --no-deps flowvision
"${PIP[@]}" install -q "${C[@]}" --no-build-isolation --no-deps -e .
.venv/bin/python -c "import oneflow, onnx, onnxruntime, oneflow_onnx, flowvision, openvino, ofconvert; print('setup ok: oneflow', oneflow.__version__, '| onnxruntime', onnxruntime.__version__, '| openvino', openvino.__version__, '| ofconvert', ofconvert.__version__)"
