"""Evidence for int8 to a flip budget (docs/budget.md + docs/results/budget.json/.png).

efficientnet_lite0 (real weights): calibration on half of calib/imagenet1k, check
set = the other half, evaluation on imagenet-val-1300 (never used for either;
overlap checked by file content hash). One sensitivity pass, one search shared by
the budgets (0.5 %, 1 %, 2 % of the check set), then every chosen model, our
all-int8 model and ONNX Runtime's quantize_static (QDQ, entropy and minmax, same
calibration images) on the 1,300 images: top-1, flips vs fp32, img/s at batch 8
and 50 (ONNX Runtime CPU, --threads threads, median of short runs).

    .venv/bin/python scripts/evidence/budget_report.py --onnx out/budget/efficientnet_lite0.onnx
"""
import argparse
import json
import os
import sys
import time

import numpy as np


def ort_static(fp32, calib_paths, cfg, method, dst, log):
    """ONNX Runtime's own quantize_static, QDQ, per-channel int8 weights, uint8 activations."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from ofconvert.calibration import ImageCalibrationDataReader

    class R(CalibrationDataReader):
        def __init__(self):
            self.r = ImageCalibrationDataReader(calib_paths, cfg, "input", 8)

        def get_next(self):
            return self.r.get_next()

    t0 = time.perf_counter()
    quantize_static(fp32, dst, R(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method={"entropy": CalibrationMethod.Entropy, "minmax": CalibrationMethod.MinMax}[method],
                    extra_options={"CalibMaxIntermediateOutputs": 32})
    log(f"ORT quantize_static {method}: {time.perf_counter() - t0:.0f} s")
    return dst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--onnx", default="out/budget/efficientnet_lite0.onnx")
    ap.add_argument("--calib", default="calib/imagenet1k")
    ap.add_argument("--eval", default=None, help="default: $OFCONVERT_DATASETS/imagenet-val-1300")
    ap.add_argument("--budgets", nargs="+", default=["0.5%", "1%", "2%"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default="out/budget")
    ap.add_argument("--docs", default="docs")
    ap.add_argument("--skip-ort", action="store_true")
    ap.add_argument("--md-only", action="store_true", help="rewrite docs/budget.md from docs/results/budget.json")
    args = ap.parse_args()
    if args.md_only:
        with open(os.path.join(args.docs, "results", "budget.json")) as f:
            return write_md(json.load(f), args.docs)
    import onnx

    from ofconvert import budget as B
    from ofconvert.budget import data as D
    from ofconvert.budget.report import plot_curve
    from ofconvert.budget.search import Evaluator, search, steps_list, throughput
    from ofconvert.budget.sensitivity import layer_sensitivity
    from ofconvert.calibration import calibrate, list_calibration_images
    from ofconvert.config import get_config
    from ofconvert.data import datasets_root
    from ofconvert.datasets import load_dataset
    from ofconvert.precision import qdq_layers

    log = lambda s: print(s, flush=True)  # noqa: E731
    t_all = time.perf_counter()
    cfg = get_config("efficientnet_lite0").preprocess
    calib_all = list_calibration_images(args.calib)
    calib, check = D.split_calibration_set(calib_all)
    eval_dir = args.eval or os.path.join(datasets_root(), "imagenet-val-1300")
    ds = load_dataset(eval_dir)
    eval_paths, label_of = ds.paths, dict(zip(ds.paths, ds.labels))
    ov = {"calib_vs_eval": len(D.overlap(calib_all, eval_paths))}
    log(f"{len(calib)} calibration / {len(check)} check / {len(eval_paths)} eval images; overlap by content {ov}")
    cal = calibrate(args.onnx, calib, cfg, cache_path=os.path.join(args.work, "lite0.split.calib.cache"))
    model = onnx.load(args.onnx)
    images = D.ImageSet(check, cfg)
    ref = D.logits(D.session(model, args.threads), images)
    layers = qdq_layers(model)
    t0 = time.perf_counter()
    sens = layer_sensitivity(model, layers, "int8", cal.scales, "cpu", images, ref, threads=args.threads, log=log)
    sens_s = time.perf_counter() - t0
    order = sorted(sens, key=lambda k: -sens[k])
    ev = Evaluator(model, layers, order, "int8", cal.scales, "cpu", images, ref.argmax(1), args.threads, log=log)
    chosen = {}
    for b in args.budgets:
        nb = B.parse_budget(b, len(images))
        t1 = time.perf_counter()
        chosen[b] = search(ev, nb, len(order) - 1)
        log(f"budget {b} ({nb} flips): k = {chosen[b]} ({time.perf_counter() - t1:.0f} s)")
    search_s = time.perf_counter() - t0

    # evaluation on the 1,300 images
    ev_images = D.ImageSet(eval_paths, cfg)
    labels = np.array([label_of[p] for p in ev_images.paths])
    cands = {"fp32": model, "ours int8-cpu (all int8)": ev.model_for(0)}
    for b, k in chosen.items():
        if k is not None:
            cands[f"ours int8-cpu, budget {b} (k={k})"] = ev.model_for(k)
    if not args.skip_ort:
        for m in ("entropy", "minmax"):
            dst = os.path.join(args.work, f"lite0.ort-{m}.onnx")
            if not os.path.exists(dst):
                ort_static(args.onnx, calib, cfg, m, dst, log)
            cands[f"ORT quantize_static {m}"] = onnx.load(dst)
    rows, ref_top1 = [], None
    for name, m in cands.items():
        s = D.session(m, args.threads)
        top1 = D.logits(s, ev_images).argmax(1)
        ref_top1 = top1 if ref_top1 is None else ref_top1
        shape = (3, cfg.input_size, cfg.input_size)
        row = {"model": name, "top1": round(100 * float((top1 == labels).mean()), 2),
               "flips": int((top1 != ref_top1).sum()), "flip_pct": round(100 * float((top1 != ref_top1).mean()), 2),
               "img_s_b8": round(throughput(s, shape, 8), 1), "img_s_b50": round(throughput(s, shape, 50, 3), 1)}
        rows.append(row)
        log(json.dumps(row))
    fp32_b8 = rows[0]["img_s_b8"]
    for r in rows:
        r["speedup_b8"] = round(r["img_s_b8"] / fp32_b8, 2)
    res = {"model": "efficientnet_lite0", "calib_images": len(calib), "check_images": len(images),
           "eval_images": len(ev_images), "overlap": ov, "threads": args.threads,
           "sensitivity_s": round(sens_s, 1), "search_s": round(search_s, 1),
           "total_s": round(time.perf_counter() - t_all, 1), "sensitivity": {k: sens[k] for k in order},
           "steps": [s.to_dict() for s in steps_list(ev)], "chosen": chosen,
           "float_layers": {b: order[:k] for b, k in chosen.items() if k is not None}, "table": rows}
    os.makedirs(os.path.join(args.docs, "results"), exist_ok=True)
    with open(os.path.join(args.docs, "results", "budget.json"), "w") as f:
        json.dump(res, f, indent=2)
    br = B.BudgetResult(args.onnx, "int8", ",".join(args.budgets), {"images": len(images)}, ev.steps[0].img_s and
                        rows[0]["img_s_b8"], {}, "one", {}, layers)
    br.flavours["int8-cpu"] = B.FlavourResult("int8-cpu", 0, False, None, [], None, None, steps_list(ev))
    plot_curve(br, os.path.join(args.docs, "results", "budget.png"),
               budgets=[B.parse_budget(b, len(images)) * 100.0 / len(images) for b in args.budgets])
    write_md(res, args.docs)
    log(f"wrote {args.docs}/budget.md, results/budget.json and budget.png; total {res['total_s']} s")


def write_md(res, docs):
    L = ["# int8 to a flip budget: measured on efficientnet_lite0", "",
         "Generated by `scripts/evidence/budget_report.py` (numbers: `results/budget.json`, curve: "
         "`results/budget.png`). See [precision](precision.md#flip-budget) for the design.", "",
         f"Calibration: {res['calib_images']} images (half of calib/imagenet1k), check set: the other "
         f"{res['check_images']}, evaluation: {res['eval_images']} imagenet-val-1300 images; files shared between "
         f"the calibration set and the evaluation set (by content sha256): {res['overlap']['calib_vs_eval']}. "
         f"ONNX Runtime CPU, {res['threads']} threads (2-core machine, shared with other jobs: speeds are noisy).", "",
         f"Sensitivity: {res['sensitivity_s']} s; sensitivity + search for all budgets: {res['search_s']} s.", "",
         "## Search steps (check set)", "", "| layers in float | flips | % | img/s (batch 8) |", "|---|---|---|---|"]
    for s in res["steps"]:
        L.append(f"| {s['k']} | {s['flips']} | {s['flip_pct']} | {s['img_s']} |")
    L += ["", "Chosen: " + ", ".join(f"{b}: k = {k}" for b, k in res["chosen"].items()), "",
          "## On the 1,300 evaluation images", "",
          "| model | top-1 % | flips vs fp32 | % | img/s b8 | x fp32 b8 | img/s b50 |", "|---|---|---|---|---|---|---|"]
    for r in res["table"]:
        L.append(f"| {r['model']} | {r['top1']} | {r['flips']} | {r['flip_pct']} | {r['img_s_b8']} | "
                 f"{r['speedup_b8']} | {r['img_s_b50']} |")
    L += ["", "## Layers kept in float", ""]
    for b, layers in res["float_layers"].items():
        L.append(f"* {b}: " + (", ".join(f"`{x}` ({res['sensitivity'][x]:.2g})" for x in layers) or "none"))
    L += ["", "![flips vs img/s](results/budget.png)", ""]
    with open(os.path.join(docs, "budget.md"), "w") as f:
        f.write("\n".join(L))


if __name__ == "__main__":
    sys.exit(main())
