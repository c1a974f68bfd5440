"""Evidence for docs/precision.md: fp16/int8 accuracy, mismatches vs fp32, CPU throughput, calibration time (JSON).

    .venv/bin/python -m scripts.evidence.precision_report --onnx-dir /tmp/ofc -o out/precision_report.json

For each model (an fp32 ``<model>.onnx`` in --onnx-dir): fp16 and int8 Q/DQ variants
(every calibration method x {trt, cpu} flavour) are written next to the report,
evaluated with ONNX Runtime CPU on real images (top-1 when labels exist, predictions
that differ from fp32), then fp32 vs int8-cpu throughput at batch 8 measured in the
same process, interleaved. The calibration runs on --calib (built from
imagenet-sample-1000), never on the evaluation images.
"""
import argparse
import json
import os
import time

import numpy as np

from ofconvert import calibration, precision
from ofconvert.config import get_config
from ofconvert.data import datasets_root, load_and_crop, normalize
from ofconvert.fileio import write_json
from ofconvert.runners.onnxruntime import OnnxRuntimeRunner


def load_eval_set(name, n, cfg):
    folder = os.path.join(datasets_root(), name)
    with open(os.path.join(folder, "val.txt")) as f:
        rows = [ln.split() for ln in f if ln.strip()]
    rows = sorted(rows)[:n] if n else sorted(rows)
    imgs = np.stack([load_and_crop(os.path.join(folder, r[0]), cfg) for r in rows])
    return imgs, np.array([int(r[1]) for r in rows])


def predict(path, imgs, cfg, threads, batch=32):
    """logits (float32) of every image."""
    with OnnxRuntimeRunner(path, threads=threads) as r:
        return np.concatenate([r.infer(normalize(imgs[i:i + batch], cfg)) for i in range(0, len(imgs), batch)])


def compare(logits, ref, labels, has_labels):
    """top-1, argmax mismatches vs the fp32 logits, and how close the logits are
    (random-weight models tend to predict a handful of classes, so the mismatch
    count alone says little there)."""
    p, pr = logits.argmax(1), ref.argmax(1)
    cos = (logits * ref).sum(1) / (np.linalg.norm(logits, axis=1) * np.linalg.norm(ref, axis=1))
    return {"top1": round(float((p == labels).mean()), 4) if has_labels else None,
            "mismatches_vs_fp32": int((p != pr).sum()),
            "distinct_predictions": int(len(np.unique(p))),
            "logit_cosine_min": round(float(cos.min()), 5),
            "logit_max_abs_err_rel": round(float(np.abs(logits - ref).max() / np.abs(ref).max()), 5)}


def throughput(paths, imgs, cfg, threads, batch=8, rounds=5, iters=10):
    """images/s per model, interleaved rounds in one process, median of rounds."""
    x = normalize(imgs[:batch], cfg)
    runners = {k: OnnxRuntimeRunner(p, threads=threads).activate() for k, p in paths.items()}
    for r in runners.values():
        r.infer(x)  # warm-up
    per = {k: [] for k in runners}
    for _ in range(rounds):
        for k, r in runners.items():
            t0 = time.perf_counter()
            for _ in range(iters):
                r.infer(x)
            per[k].append(batch * iters / (time.perf_counter() - t0))
    for r in runners.values():
        r.deactivate()
    return {k: float(np.median(v)) for k, v in per.items()}


def report_model(name, args, out_dir):
    cfg = get_config(name).preprocess
    src = os.path.join(args.onnx_dir, f"{name}.onnx")
    fp32 = os.path.join(out_dir, f"{name}.onnx")
    if os.path.abspath(src) != os.path.abspath(fp32):
        import shutil

        shutil.copyfile(src, fp32)
    n_eval = args.eval_images if name == "efficientnet_lite0" else args.eval_images_other
    n_cal = args.calib_images if name == "efficientnet_lite0" else args.calib_images_other
    imgs, labels = load_eval_set(args.eval_set, n_eval, cfg)
    rep = {"model": name, "eval_set": args.eval_set, "eval_images": len(imgs), "calib": args.calib,
           "calib_images": n_cal, "threads": args.threads, "variants": {}, "calibration": {}}
    pred = {"fp32": predict(fp32, imgs, cfg, args.threads)}
    precision.to_fp16(fp32, os.path.join(out_dir, f"{name}.fp16.onnx"))
    pred["fp16"] = predict(os.path.join(out_dir, f"{name}.fp16.onnx"), imgs, cfg, args.threads)
    methods = args.methods if name == "efficientnet_lite0" else args.methods[:1]
    for method in methods:
        res = calibration.calibrate(fp32, args.calib, cfg, method=method, num_images=n_cal, regenerate=True,
                                    options=calibration.CalibrationOptions(threads=args.threads))
        t0 = time.perf_counter()
        again = calibration.calibrate(fp32, args.calib, cfg, method=method, num_images=n_cal)
        reuse_s = time.perf_counter() - t0
        assert again.reused and again.scales == res.scales
        rep["calibration"][method] = {"fresh_s": round(res.elapsed_s, 2), "reuse_s": round(reuse_s, 3),
                                      "images": res.num_images, "skipped": res.skipped, "tensors": len(res.scales)}
        for target, suffix in (("trt", "int8"), ("cpu", "int8-cpu")):
            path = os.path.join(out_dir, f"{name}.{method}.{suffix}.onnx")
            precision.quantize_qdq(fp32, path, res.scales, target=target)
            pred[f"int8-{target}-{method}"] = predict(path, imgs, cfg, args.threads)
        print(f"[{name}] {method}: fresh {res.elapsed_s:.1f}s reuse {reuse_s:.2f}s", flush=True)
    has_labels = get_config(name).pretrained
    for k, p in pred.items():
        rep["variants"][k] = compare(p, pred["fp32"], labels, has_labels)
    tp = throughput({"fp32": fp32, "int8-cpu": os.path.join(out_dir, f"{name}.{methods[0]}.int8-cpu.onnx")},
                    imgs, cfg, args.threads)
    rep["throughput_batch8_img_s"] = {k: round(v, 1) for k, v in tp.items()}
    rep["throughput_ratio_int8cpu_vs_fp32"] = round(tp["int8-cpu"] / tp["fp32"], 2)
    print(json.dumps(rep, indent=1), flush=True)
    return rep


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx-dir", default="/tmp/ofc", help="folder with fp32 <model>.onnx exports")
    ap.add_argument("--models", nargs="+", default=["efficientnet_lite0", "resnet50"])
    ap.add_argument("--calib", default="calib/imagenet1k/manifest.txt")
    ap.add_argument("--calib-images", type=int, default=None, help="efficientnet_lite0 (default: whole set)")
    ap.add_argument("--calib-images-other", type=int, default=256, help="other models (histograms of resnet50 are big)")
    ap.add_argument("--methods", nargs="+", default=list(calibration.METHODS))
    ap.add_argument("--eval-set", default="imagenet-val-1300")
    ap.add_argument("--eval-images", type=int, default=None, help="efficientnet_lite0 (default: all)")
    ap.add_argument("--eval-images-other", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("-o", "--output", default="out/precision/report.json")
    args = ap.parse_args(argv)
    out_dir = os.path.dirname(os.path.abspath(args.output))
    os.makedirs(out_dir, exist_ok=True)
    reports = {}
    if os.path.isfile(args.output):   # keep the other models' results of an earlier run
        with open(args.output) as f:
            reports = {r["model"]: r for r in json.load(f).get("reports", [])}
    for m in args.models:
        reports[m] = report_model(m, args, out_dir)
        write_json(args.output, {"reports": list(reports.values())})
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
