#!/usr/bin/env python
"""Throughput benchmark (see docs/bench.md). Example:

    python tools/bench.py --models alexnet,vgg16,resnet50,inception_v3 \\
        --backends oneflow,ort-cpu,ort-cuda,trt --precisions fp32,fp16,int8 --batch 8,50

Options: ``python tools/bench.py --help``. A user mistake prints one line and exits 2.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ofconvert.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
