#!/usr/bin/env bash
# GPU machine, after the 4 copy calls of ../shared/gpu/README.md (docs/gpu.md, "Profile, streams and peers"):
#   bash scripts/gpu/gpu_perf.sh explore   # install ORT-GPU, unpack our ONNX, profile + settings sweep
#   bash scripts/gpu/gpu_perf.sh profile   # (instead of explore) install, unpack, profile with the final settings
#   bash scripts/gpu/gpu_perf.sh table     # next call, at once: ORT (1 and K streams) vs torch, one run per model
# The call running `explore`/`profile` carries .gpu5 and .gpuonnx (scripts/gpu/gpu_ship_onnx.py pack).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD:/tmp/site" PYTHONUNBUFFERED=1   # an earlier PYTHONPATH (a snapshot of ofconvert) wins
OUTDIR=${OUT:-out/gpu}
install() {
  cp .gpu5/* /tmp/ortparts/ && bash /tmp/ortparts/install-ort-gpu.sh
  python3 scripts/gpu/gpu_ship_onnx.py unpack --dir .gpuonnx --out /tmp/ofc_onnx
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader || true
}
case "${1:-explore}" in
explore)
  install
  python3 scripts/gpu/gpu_perf.py profile --model resnet50 --precision fp16 --batches 50,256 --iters 50 --out "$OUTDIR"
  python3 scripts/gpu/gpu_perf.py sweep --models resnet50 --precisions fp16 --batches 50,256 --iters ${ITERS:-150} \
    --out "$OUTDIR"
  ;;
profile)
  install
  for m in ${MODELS:-resnet50}; do
    python3 scripts/gpu/gpu_perf.py profile --model $m --precision fp16 --batches 50,256 --iters 50 \
      --settings "${SETTINGS:-fastest+fuse_conv_bias}" --out "$OUTDIR"
  done
  ;;
table)
  python3 scripts/gpu/gpu_perf.py table --models ${MODELS:-resnet50,efficientnet_lite0,inception_v3} \
    --variants "${VARIANTS:-default;fastest;fastest+fuse_conv_bias}" \
    --stream-variants "${STREAM_VARIANTS:-fastest+fuse_conv_bias;fastest+fuse_conv_bias (no graph)}" \
    --streams ${STREAMS:-1,2,4} --iters ${ITERS:-200} --out "$OUTDIR/${TAG:-table}"
  ;;
esac
