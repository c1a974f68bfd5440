#!/usr/bin/env bash
# Issue 20 on the GPU machine (docs/gpu.md "Settings chosen by measurement"), after the
# 4 copy calls of ../shared/gpu/README.md and one call copying .gpuimg to /tmp/gpuimg:
#   bash scripts/gpu/gpu_issue20.sh auto   # carries .gpu5 .gpuonnx .gpulite: install, unpack, bench
#                                          # default/fastest/auto table, the lite0 flag study
#   bash scripts/gpu/gpu_issue20.sh eval   # next call, at once: eval (cold, then warm caches), raw vs float
# Results: $OUT/<step>.tgz (every report) and $OUT/<step>.log.
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD:/tmp/site" PYTHONUNBUFFERED=1 OFCONVERT_CACHE=/tmp/ofc_cache
R=/tmp/res/${1:-auto}; mkdir -p "$R"
OUTDIR=${OUT:-out/gpu}
step() { local name=$1 s=$2; shift 2; echo "== $name ($(date +%T)): $*"; timeout "$s" "$@" 2>&1 | tee "$R/$name.log"; }
BENCH="python3 -m ofconvert.bench --backends ort-cuda --models-dir /tmp/ofc_onnx --no-produce --no-png --no-progress"
case "${1:-auto}" in
auto)
  cp .gpu5/* /tmp/ortparts/ && bash /tmp/ortparts/install-ort-gpu.sh || exit 1
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$R/gpu.txt"
  python3 scripts/gpu/gpu_ship_onnx.py unpack --dir .gpuonnx --out /tmp/ofc_onnx
  mkdir -p /tmp/lite && cp .gpulite/*.onnx /tmp/lite/ && cp /tmp/gpuimg/*.onnx /tmp/lite/
  python3 -c "from ofconvert.precision import to_fp16
for m in ('efficientnet_lite0', 'efficientnet_lite0_raw'): to_fp16(f'/tmp/lite/{m}.onnx', f'/tmp/lite/{m}.fp16.onnx')"
  cp /tmp/lite/efficientnet_lite0.onnx /tmp/lite/efficientnet_lite0.fp16.onnx /tmp/ofc_onnx/
  step bench_auto ${AUTO_S:-300} $BENCH --models resnet50,efficientnet_lite0,inception_v3 --precisions fp32,fp16 --batch 50,256 \
    --ort-cuda default,fastest,auto --warmup 10 --iters ${ITERS:-100} --out-dir "$R/bench_auto"
  step bench_flags ${FLAGS_S:-170} $BENCH --models efficientnet_lite0 --precisions fp32 --batch 50,256 --warmup 5 \
    --iters ${ITERS:-60} --ort-cuda "default,iobind,iobind+nhwc,iobind+graph,iobind+fusebias,fastest,iobind+graph+fusebias+algo=heuristic,iobind+nhwc+fusebias+algo=heuristic,iobind+nhwc+graph+algo=heuristic,iobind+nhwc+graph+fusebias" \
    --out-dir "$R/bench_flags"
  ;;
eval)
  EV="python3 -m ofconvert.evaluation --data /tmp/gpuimg/imagenet-val-1300 --models efficientnet_lite0,efficientnet_lite0_raw \
      --variants ort-cuda:fp32,ort-cuda:fp16 --reference ort-cuda:fp32 --models-dir /tmp/lite --no-produce --batch 50 \
      --workers 16 --no-png --no-progress"
  rm -rf /tmp/ofc_cache/preproc "$OFCONVERT_CACHE/ort-cuda-auto"/*   # cold: no decoded images, no auto decisions
  step eval_cold 200 bash -c "time $EV --out-dir $R/eval_cold"
  step eval_warm 100 bash -c "time $EV --out-dir $R/eval_warm"
  step raw_e2e 120 python3 scripts/gpu/gpu_raw_e2e.py --float /tmp/ofc_onnx/resnet50.fp16.onnx \
    --raw /tmp/ofc_onnx/resnet50_raw.fp16.onnx --batches 50,256 --settings fastest,auto --out "$R/raw_e2e.json"
  step bench_raw 120 $BENCH --models resnet50,/tmp/ofc_onnx/resnet50_raw.onnx --precisions fp16 --batch 50,256 --input host \
    --ort-cuda fastest,auto --warmup 5 --iters ${ITERS:-60} --out-dir "$R/bench_raw"
  ;;
esac
cp -r "$OFCONVERT_CACHE/ort-cuda-auto" "$R/" 2>/dev/null
tar czf "$OUTDIR/${1:-auto}.tgz" -C "$R" .
