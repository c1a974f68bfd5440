#!/usr/bin/env python
"""End to end on the GPU, host uint8 batch in, logits out: a raw-image-input ONNX
(``--input-format uint8-nhwc``) vs the float-input ONNX of the same model.

Three ways per batch size and ort-cuda settings, timed interleaved (round robin,
``--rounds`` rounds of ``--iters`` batches each, the best round kept per way):
  float+normalize  the uint8 batch normalised on the CPU (``data.normalize``, the
                   evaluator's path), then the float model (host input);
  float            the float model fed a ready float batch (bench's host input:
                   the normalisation is not counted);
  raw              the raw model fed the uint8 batch.

    python scripts/gpu/gpu_raw_e2e.py --float /tmp/ofc_onnx/resnet50.fp16.onnx \
        --raw /tmp/ofc_onnx/resnet50_raw.fp16.onnx --batches 50,256 --settings fastest,auto --out $OUT/raw_e2e.json
"""
import argparse
import json
import sys
import time

import numpy as np


def _runner(path, spec, batch):
    from ofconvert.runners import make_runner, ort_auto
    from ofconvert.runners.ort_settings import OrtCudaSettings

    st = OrtCudaSettings.parse(spec)
    if st.auto:
        st = ort_auto.decide(path, "fp16", batch, "host", env=ort_auto.AutoEnv(log=print)).settings
    return make_runner("ort-cuda", path, **st.runner_kwargs()).activate(), st.spec


def _rate(fn, batch, iters):
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    return batch * iters / (time.perf_counter() - t0)


def measure(float_path, raw_path, batch, spec, iters, rounds, pre):
    from ofconvert.data import normalize

    u8 = np.random.default_rng(0).integers(0, 256, size=(batch, pre.input_size, pre.input_size, 3), dtype=np.uint8)
    rf, sf = _runner(float_path, spec, batch)
    rr, sr = _runner(raw_path, spec, batch)
    xf = normalize(u8, pre).astype(rf.input_dtype)
    ways = {"float+normalize": lambda: rf.infer(normalize(u8, pre).astype(rf.input_dtype)),
            "float": lambda: rf.infer(xf), "raw": lambda: rr.infer(u8)}
    same = bool(np.array_equal(np.argmax(rf.infer(xf), 1), np.argmax(rr.infer(u8), 1)))
    for fn in ways.values():   # warm-up (CUDA graph capture, cuDNN plans)
        for _ in range(5):
            fn()
    best = {k: 0.0 for k in ways}
    for _ in range(rounds):
        for k, fn in ways.items():
            best[k] = max(best[k], _rate(fn, batch, iters))
    rf.deactivate()
    rr.deactivate()
    return {"batch": batch, "settings": spec, "float_ran": sf, "raw_ran": sr, "same_top1_on_batch": same,
            **{f"{k} img/s": round(v, 1) for k, v in best.items()},
            "raw / float": round(best["raw"] / best["float"], 3),
            "raw / float+normalize": round(best["raw"] / best["float+normalize"], 3)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--float", dest="float_path", required=True)
    ap.add_argument("--raw", required=True)
    ap.add_argument("--batches", default="50,256")
    ap.add_argument("--settings", default="fastest,auto")
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    from ofconvert.artifacts import read_onnx_metadata
    from ofconvert.config import METADATA_KEY, PreprocessConfig

    pre = PreprocessConfig.from_json(read_onnx_metadata(a.raw)[0][METADATA_KEY])
    rows = []
    for spec in a.settings.split(","):
        for b in map(int, a.batches.split(",")):
            rows.append(measure(a.float_path, a.raw, b, spec, a.iters, a.rounds, pre))
            print(json.dumps(rows[-1]), flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
