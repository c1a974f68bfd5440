#!/usr/bin/env python
"""GPU machine only (it has torch + torchvision, no OneFlow): write the benchmark's
ONNX files for alexnet, vgg16, resnet50, inception_v3 from torchvision's
architectures with random, seeded weights (throughput does not depend on weight
values), so that 0.7 GB of fp32 ONNX need not travel there.

    python3 scripts/gpu/gpu_torchvision_onnx.py --out /tmp/gpu_onnx

Writes <model>.onnx (fp32, input `input` [N,3,S,S], output `logits`, opset 17,
torch.onnx TorchScript exporter) and <model>.fp16.onnx (through
ofconvert.precision.to_fp16, the same conversion as the OneFlow pipeline), with
ofconvert metadata (preprocessing, ``ofconvert.source`` naming torchvision).
flowvision's models (what ofconvert exports from OneFlow) are ports of these
torchvision architectures; docs/gpu.md says what differs.
"""
import argparse
import os
import sys
import time

from ofconvert import fileio  # noqa: E402
from ofconvert.config import METADATA_KEY, get_config  # noqa: E402

MODELS = ("alexnet", "vgg16", "resnet50", "inception_v3")


def export_fp32(name, path, opset):
    import onnx
    import torch
    import torchvision

    torch.manual_seed(0)
    kw = {"aux_logits": False, "init_weights": True} if name == "inception_v3" else {}
    model = getattr(torchvision.models, name)(weights=None, **kw).eval()
    size = get_config(name).preprocess.input_size
    x = torch.randn(1, 3, size, size)
    with fileio.atomic_path(path) as tmp:
        args = dict(input_names=["input"], output_names=["logits"], opset_version=opset,
                    dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
        try:
            torch.onnx.export(model, (x,), tmp, dynamo=False, **args)
            how = "torch.onnx TorchScript exporter"
        except TypeError:  # a torch without the dynamo switch
            torch.onnx.export(model, (x,), tmp, **args)
            how = "torch.onnx"
        m = onnx.load(tmp)
        for k, v in ((METADATA_KEY, get_config(name).preprocess.to_json()), ("ofconvert.model", name),
                     ("ofconvert.weights", "random"),
                     ("ofconvert.source", f"torchvision {torchvision.__version__} {name}, {how}, opset {opset}, "
                                          f"torch {torch.__version__}, seed 0")):
            m.metadata_props.add(key=k, value=v)
        onnx.save(m, tmp)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--opset", type=int, default=17)
    args = p.parse_args()
    from ofconvert.precision import to_fp16

    os.makedirs(args.out, exist_ok=True)
    for name in args.models.split(","):
        fp32 = os.path.join(args.out, f"{name}.onnx")
        fp16 = os.path.join(args.out, f"{name}.fp16.onnx")
        t0 = time.time()
        if not os.path.isfile(fp32):
            export_fp32(name, fp32, args.opset)
        if not os.path.isfile(fp16):
            to_fp16(fp32, fp16)
        print(f"{name}: {os.path.getsize(fp32) >> 20} MiB fp32, {os.path.getsize(fp16) >> 20} MiB fp16, "
              f"{time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
