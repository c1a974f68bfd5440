"""Evidence for docs/export.md: per zoo model, export time, ONNX size and validation figures (JSON).

Evidence for the export: for each zoo model, export time, ONNX size and the
validation figures (real images + random input, batch 1/3/8); for
efficientnet_lite0 also top-1 on imagenet-sample-1000 from OneFlow and from ONNX
Runtime and the number of images where they disagree. One model at a time
(vgg16 peaks at ~12 GB). JSON to -o.

    .venv/bin/python -m scripts.evidence.export_report --models efficientnet_lite0,resnet50 -o out/export_report.json
"""
import argparse
import json
import os
import sys
import time


def lite0_accuracy(onnx_path, limit=None):
    import numpy as np

    from ofconvert.data import datasets_root, list_images, load_batch
    from ofconvert.runners import make_runner

    root = os.path.join(datasets_root(), "imagenet-sample-1000")
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    paths = list_images(root)[:limit]
    labels = np.array([classes.index(os.path.basename(os.path.dirname(p))) for p in paths])
    flow_r = make_runner("oneflow", "efficientnet_lite0").activate()
    ort_r = make_runner("ort-cpu", onnx_path).activate()
    cfg = flow_r.config.preprocess
    pf, po, skipped = [], [], 0
    for i in range(0, len(paths), 50):
        x, sk = load_batch(paths[i:i + 50], cfg)
        skipped += len(sk)
        pf.append(flow_r.infer(x).argmax(1))
        po.append(ort_r.infer(x).argmax(1))
    pf, po = np.concatenate(pf), np.concatenate(po)
    return {"images": len(paths), "skipped": skipped, "top1_oneflow": float((pf == labels).mean()),
            "top1_onnxruntime": float((po == labels).mean()), "disagreements": int((pf != po).sum())}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="alexnet,resnet50,inception_v3,efficientnet_lite0,vgg16")
    ap.add_argument("--out-dir", default="out/export")
    ap.add_argument("-o", "--output", default="out/export_report.json")
    ap.add_argument("--accuracy-limit", type=int, default=None)
    a = ap.parse_args(argv)
    from ofconvert.exporter import export
    from ofconvert.fileio import write_json

    os.makedirs(a.out_dir, exist_ok=True)
    results = {}
    if os.path.exists(a.output):
        results = json.load(open(a.output))
    for name in a.models.split(","):
        path = os.path.join(a.out_dir, f"{name}.onnx")
        r = export(name, path)
        row = {"export_seconds": r.export_seconds, "onnx_mb": round(r.onnx_bytes / 2**20, 1),
               "weights": r.weights, "checks": [
                   {k: getattr(c, k)
                    for k in ("inputs", "batch", "max_abs_err", "max_rel_err", "cosine", "top1_agree", "top5_agree")}
                   for c in r.validation.checks]}
        if name == "efficientnet_lite0":
            t = time.perf_counter()
            row["accuracy_sample1000"] = lite0_accuracy(path, a.accuracy_limit)
            row["accuracy_seconds"] = round(time.perf_counter() - t, 1)
        results[name] = row
        write_json(a.output, results)
        print(json.dumps({name: {k: v for k, v in row.items() if k != "checks"}}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
