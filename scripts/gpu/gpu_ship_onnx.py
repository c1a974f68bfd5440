#!/usr/bin/env python
"""Carry ofconvert's own OneFlow-exported ONNX graphs to the GPU machine.

A device call carries at most 64 MiB, and the fp32 exports weigh 18-530 MB, so
the *graph* travels and the weights are regenerated there:

  pack   (here):  each ONNX is re-saved with its large initializers as external
                  data, the external file is dropped and a JSON records, per
                  tensor, its offset, length and the std of the real values.
  unpack (there): the external file is rebuilt with seeded N(0, std) values per
                  tensor (random weights of the right scale: throughput only), and
                  the fp16 model is made with ofconvert.precision.to_fp16.

    python scripts/gpu/gpu_ship_onnx.py pack --src out/export --dst .gpuonnx --models resnet50,vgg16
    python scripts/gpu/gpu_ship_onnx.py unpack --dir .gpuonnx --out /tmp/ofc_onnx
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np


def pack(src, dst, models):
    import onnx
    from onnx import external_data_helper, numpy_helper

    os.makedirs(dst, exist_ok=True)
    for name in models:
        m = onnx.load(os.path.join(src, f"{name}.onnx"))
        stds = {t.name: float(numpy_helper.to_array(t).astype(np.float64).std()) for t in m.graph.initializer}
        tmp = os.path.join(dst, f".{name}.tmp")
        os.makedirs(tmp, exist_ok=True)
        onnx.save_model(m, os.path.join(tmp, f"{name}.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=f"{name}.weights.bin", size_threshold=1024)
        g = onnx.load(os.path.join(tmp, f"{name}.onnx"), load_external_data=False)
        spec = []
        for t in g.graph.initializer:
            if external_data_helper.uses_external_data(t):
                info = {e.key: e.value for e in t.external_data}
                spec.append({"name": t.name, "offset": int(info.get("offset", 0)), "length": int(info["length"]),
                             "dtype": int(t.data_type), "std": stds[t.name]})
        shutil.move(os.path.join(tmp, f"{name}.onnx"), os.path.join(dst, f"{name}.onnx"))
        with open(os.path.join(dst, f"{name}.weights.json"), "w") as f:
            json.dump({"file": f"{name}.weights.bin", "tensors": spec}, f)
        shutil.rmtree(tmp)
        print(f"packed {name}: graph {os.path.getsize(os.path.join(dst, name + '.onnx')) / 1e3:.0f} kB, "
              f"{len(spec)} tensors regenerated there")


def unpack(folder, out, seed=0):
    from onnx import helper

    from ofconvert.precision import to_fp16

    os.makedirs(out, exist_ok=True)
    for fn in sorted(os.listdir(folder)):
        if not fn.endswith(".weights.json"):
            continue
        name = fn[: -len(".weights.json")]
        spec = json.load(open(os.path.join(folder, fn)))
        rng = np.random.default_rng(seed)
        total = max(t["offset"] + t["length"] for t in spec["tensors"])
        buf = bytearray(total)
        for t in spec["tensors"]:
            dt = helper.tensor_dtype_to_np_dtype(t["dtype"])
            n = t["length"] // np.dtype(dt).itemsize
            vals = (rng.standard_normal(n) * t["std"]).astype(dt)
            buf[t["offset"]: t["offset"] + t["length"]] = vals.tobytes()
        shutil.copy(os.path.join(folder, f"{name}.onnx"), os.path.join(out, f"{name}.onnx"))
        with open(os.path.join(out, spec["file"]), "wb") as f:
            f.write(buf)
        to_fp16(os.path.join(out, f"{name}.onnx"), os.path.join(out, f"{name}.fp16.onnx"))
        print(f"unpacked {name}: {total / 2**20:.0f} MiB of seeded weights, fp16 made", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--src", default="out/export")
    p.add_argument("--dst", default=".gpuonnx")
    p.add_argument("--models", default="alexnet,vgg16,resnet50,inception_v3,efficientnet_lite0")
    u = sub.add_parser("unpack")
    u.add_argument("--dir", default=".gpuonnx")
    u.add_argument("--out", default="/tmp/ofc_onnx")
    a = ap.parse_args(argv)
    if a.cmd == "pack":
        pack(a.src, a.dst, a.models.split(","))
    else:
        unpack(a.dir, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
