#!/usr/bin/env bash
# GPU machine, after the 4 copy calls of ../shared/gpu/README.md (docs/gpu.md, "Profile and peers"):
#   bash scripts/gpu/gpu_perf.sh explore   # install ORT-GPU, unpack our ONNX, profile + settings sweep
#   bash scripts/gpu/gpu_perf.sh table     # next call, at once: ORT best (1 and K streams) vs torch, one run
# The call running `explore` carries .gpu5 and .gpuonnx (scripts/gpu/gpu_ship_onnx.py pack).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD:/tmp/site" PYTHONUNBUFFERED=1   # an earlier PYTHONPATH (a snapshot of ofconvert) wins
OUTDIR=${OUT:-out/gpu}
case "${1:-explore}" in
explore)
  cp .gpu5/* /tmp/ortparts/ && bash /tmp/ortparts/install-ort-gpu.sh
  python3 scripts/gpu/gpu_ship_onnx.py unpack --dir .gpuonnx --out /tmp/ofc_onnx
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader || true
  python3 scripts/gpu/gpu_perf.py profile --model resnet50 --precision fp16 --batches 50,256 --iters 50 --out "$OUTDIR"
  python3 scripts/gpu/gpu_perf.py sweep --models resnet50 --precisions fp16 --batches 50,256 --iters ${ITERS:-150} \
    --out "$OUTDIR"
  ;;
table)
  python3 scripts/gpu/gpu_perf.py table --models ${MODELS:-resnet50,efficientnet_lite0,inception_v3} \
    --variants "default;fastest;${BEST:-$(cat /tmp/ofc_best_variant.txt 2>/dev/null || echo fastest)}" --streams ${STREAMS:-1,2,4} --iters ${ITERS:-200} --out "$OUTDIR"
  ;;
esac
