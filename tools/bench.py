#!/usr/bin/env python
"""Throughput benchmark, the same as ``ofconvert bench`` (docs/bench.md). Example:

    python tools/bench.py --models alexnet,vgg16,resnet50,inception_v3 \\
        --backends oneflow,ort-cpu,ort-cuda,trt --precisions fp32,fp16,int8 --batch 8,50

Needs the package installed (``bash scripts/setup.sh`` installs it editable into .venv).
"""
import sys

from ofconvert.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
