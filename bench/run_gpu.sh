#!/usr/bin/env bash
# One device session's GPU checks, in one call (see docs/gpu.md): the fast evaluator's GPU tests, then
# bench/proxy_throughput.py (naive loop vs fast evaluator, same run, same GPU), then two short
# ablations if time is left. Everything it writes goes to $OUT (at most 7 files). Bounded to ~570 s.
#   run on the device from the repo root, with bench/data carried:  bash bench/run_gpu.sh
# Needs python3 with a CUDA build of torch, numpy, pyyaml, scikit-learn (the lent machines have them;
# nothing can be installed there) and bench/data/cifar10_15k.npz (made here by bench/make_cifar_subset.py,
# because ../shared does not travel to the device).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/data/out}  # bench/data is git-ignored
mkdir -p "$OUT"
PY=${PYTHON:-python3}
DATA=${DATA:-bench/data/cifar10_15k.npz}
NAIVE_BUDGET=${NAIVE_BUDGET:-150}   # seconds of naive-loop candidates (it costs ~30 s each)
CONCURRENT=${CONCURRENT:-8}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "error: $PY has no CUDA-enabled torch (or no GPU is visible)" | tee "$OUT/env.txt"
  exit 3
fi
if [ ! -f "$DATA" ]; then
  if [ -f ../shared/datasets/cifar10_uint8.npz ]; then
    "$PY" bench/make_cifar_subset.py --out "$DATA" || exit 2
  else
    echo "error: $DATA is missing: run bench/make_cifar_subset.py where ../shared exists and carry bench/data" >&2
    exit 2
  fi
fi
{ nvidia-smi; "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'cudnn', torch.backends.cudnn.version(), torch.cuda.get_device_name())"; } >"$OUT/env.txt" 2>&1

timeout 90 "$PY" -m pytest -q -p no:cacheprovider tests/test_fast_eval.py 2>&1 | tee "$OUT/gpu_tests.log"

timeout 360 "$PY" bench/proxy_throughput.py --data "$DATA" --concurrent "$CONCURRENT" \
  --naive-budget-s "$NAIVE_BUDGET" --json "$OUT/proxy_throughput.json" 2>&1 | tee "$OUT/proxy_throughput.log"

# Ablations (fast evaluator only): one candidate at a time (graphs alone), and 16 at once.
for c in 1 16; do
  if [ "$SECONDS" -lt 450 ]; then
    timeout 60 "$PY" bench/proxy_throughput.py --data "$DATA" --only fast --concurrent "$c" \
      --json "$OUT/fast_c$c.json" 2>&1 | tee -a "$OUT/ablations.log"
  fi
done
echo "done in $SECONDS s"
