#!/usr/bin/env python
"""ImageNet accuracy and mismatch table, the same as ``ofconvert eval`` (docs/eval.md):

    python tools/eval.py --data /data/imagenet/val --models resnet50,efficientnet_lite0 \\
        --backends oneflow,ort-cpu,trt --precisions fp32,fp16,int8 [--reference oneflow:fp32] [--limit N]

Needs the package installed (``bash scripts/setup.sh`` installs it editable into .venv).
"""
import sys

from ofconvert.evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main())
