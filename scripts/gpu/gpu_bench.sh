#!/usr/bin/env bash
# GPU machine (docs/gpu.md): ONNX files from torchvision, then the benchmark.
#   bash scripts/gpu/gpu_bench.sh sweep   # ort-cuda settings sweep -> /tmp/fastest.txt
#   bash scripts/gpu/gpu_bench.sh final   # the 4-model table, ORT defaults vs the fastest settings
# Needs onnxruntime-gpu on PYTHONPATH (../shared/gpu/README.md). Results in $OUT (or out/gpu).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUTDIR=${OUT:-out/gpu}
ONNX=/tmp/gpu_onnx
export PYTHONUNBUFFERED=1
python3 scripts/gpu/gpu_torchvision_onnx.py --out "$ONNX"
case "${1:-final}" in
sweep)
  python3 tools/bench.py --models resnet50,inception_v3 --backends ort-cuda --precisions fp32,fp16 \
    --batch 8,50 --warmup 10 --iters ${SWEEP_ITERS:-100} --input device --onnx-dir "$ONNX" --no-progress \
    --ort-cuda "${SWEEP:-default,iobind,iobind+nhwc,iobind+graph,iobind+nhwc+graph,iobind+nhwc+graph+algo=heuristic}" \
    --out "$OUTDIR/sweep"
  python3 - "$OUTDIR/sweep/bench.json" <<'PY'
import json, math, sys
from ofconvert.bench import OrtCudaSettings
rows = json.load(open(sys.argv[1]))["results"]
cells = {(r["model"], r["precision"], r["batch"]) for r in rows}
by = {}
for r in rows:
    by.setdefault(r["settings"], {})[(r["model"], r["precision"], r["batch"])] = r["img_per_s"] if r["status"] == "ok" else None
rank = []
for s, d in by.items():
    ok = [v for v in d.values() if v]
    valid = len(ok) == len(cells)
    gm = math.exp(sum(map(math.log, ok)) / len(ok)) if ok else 0
    rank.append((valid, gm, s))
    print(f"{s:40s} valid={valid} geomean={gm:,.0f} img/s")
best = max(r for r in rank if r[2] != "default")
print("fastest valid:", best[2])
open("/tmp/fastest.txt", "w").write(OrtCudaSettings.parse(best[2]).spec)
PY
  ;;
final)
  FAST=$(cat /tmp/fastest.txt 2>/dev/null || echo fastest)
  python3 tools/bench.py --models alexnet,vgg16,resnet50,inception_v3 --backends ort-cuda --precisions fp32,fp16 \
    --batch 8,50 --input both --onnx-dir "$ONNX" --no-progress --ort-cuda "default,$FAST" \
    --iters ${ITERS:-500} --out "$OUTDIR/final"
  ;;
esac
