#!/usr/bin/env python
"""Predictions of a raw-image-input ONNX (``--input-format uint8-nhwc``) vs the
float-input ONNX of the same model, on ONNX Runtime's CPU provider (deterministic),
over an image folder: the float model gets ``data.normalize`` of the cached uint8
images, the raw model the uint8 images themselves.

    python scripts/gpu/raw_predictions.py --data ../shared/datasets/imagenet-val-1300 \
        --float out/i20/resnet50.fp16.onnx --raw out/i20/resnet50_raw.fp16.onnx --out out/i20/raw_pred.json
"""
import argparse
import json
import sys
import time

import numpy as np


def predictions(path, images, pre, batch, threads=None):
    from ofconvert.data import normalize
    from ofconvert.runners.onnxruntime import OnnxRuntimeRunner

    top = []
    with OnnxRuntimeRunner(path, provider="cpu", threads=threads) as r:
        raw = r.input_dtype == np.uint8
        t0 = time.perf_counter()
        for s in range(0, len(images), batch):
            u8 = np.ascontiguousarray(images[s:s + batch])
            y = r.infer(u8 if raw else normalize(u8, pre))
            top.append(np.argsort(-y, axis=1, kind="stable")[:, :5])
        return np.concatenate(top), time.perf_counter() - t0, raw


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--float", dest="float_path", required=True)
    ap.add_argument("--raw", required=True)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    from ofconvert.artifacts import read_onnx_metadata
    from ofconvert.config import METADATA_KEY, PreprocessConfig
    from ofconvert.datasets import load_dataset
    from ofconvert.preprocache import get_cached_images

    meta, _ = read_onnx_metadata(a.raw)
    pre = PreprocessConfig.from_json(meta[METADATA_KEY])
    ds = load_dataset(a.data)
    cache = get_cached_images(ds.paths, pre)
    images = cache.array[cache.valid]
    pf, tf, _ = predictions(a.float_path, images, pre, a.batch, a.threads)
    pr, tr, raw = predictions(a.raw, images, pre, a.batch, a.threads)
    if not raw:
        raise SystemExit(f"{a.raw} does not take uint8 input")
    labels = np.asarray(ds.labels)[cache.valid]
    res = {"images": int(len(images)), "float": a.float_path, "raw": a.raw,
           "top1_differ": int((pf[:, 0] != pr[:, 0]).sum()), "top5_sets_differ": int((pf != pr).any(1).sum()),
           "top1_float": float((pf[:, 0] == labels).mean()), "top1_raw": float((pr[:, 0] == labels).mean()),
           "seconds_float": round(tf, 1), "seconds_raw": round(tr, 1)}
    print(json.dumps(res, indent=1))
    if a.out:
        from ofconvert.fileio import write_json

        write_json(a.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
