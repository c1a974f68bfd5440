#!/usr/bin/env python
"""ImageNet accuracy and mismatch-vs-reference table for models x backends x precisions.

    python tools/eval.py --data /data/imagenet/val --models resnet50,efficientnet_lite0 \\
        --backends oneflow,ort-cpu,trt --precisions fp32,fp16,int8 [--reference oneflow:fp32] [--limit N]

See docs/eval.md. A thin wrapper over ``ofconvert.evaluate``.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _csv(s):
    return [x.strip() for x in s.split(",") if x.strip()]


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="image folder: val.txt/labels.txt, ImageFolder, or official "
                   "ILSVRC2012 val (LOC_val_solution.csv / ground truth + --meta)")
    p.add_argument("--labels", help="label file, overriding detection")
    p.add_argument("--meta", help="devkit meta.mat (needs scipy) or '<ILSVRC2012_ID> <wnid>' file, for "
                   "ILSVRC2012_validation_ground_truth.txt")
    p.add_argument("--models", type=_csv, required=True, help="comma-separated zoo names (or ONNX stems)")
    p.add_argument("--backends", type=_csv, default=["ort-cpu"], help="oneflow,ort-cpu,ort-cuda,ort-trt,trt")
    p.add_argument("--precisions", type=_csv, default=["fp32"], help="fp32,fp16,int8")
    p.add_argument("--variants", type=_csv, help="explicit backend:precision list (instead of the product)")
    p.add_argument("--reference", help="variant the mismatches are counted against "
                   "(default oneflow:fp32, or ort-cpu:fp32 without OneFlow)")
    p.add_argument("--models-dir", "--onnx-dir", dest="models_dir", default=".",
                   help="folder of <model>.onnx, .fp16.onnx, .int8-cpu.onnx, .int8.onnx, .<prec>.engine")
    p.add_argument("--no-produce", action="store_true", help="don't create missing ONNX files (n/a instead)")
    p.add_argument("--calib-data", help="calibration images for producing a missing int8 model")
    p.add_argument("--limit", type=int, help="first N images only")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, help="inference threads (ONNX Runtime CPU)")
    p.add_argument("--workers", type=int, help="decode processes (default: cores, max 8)")
    p.add_argument("--cache-dir", help="preprocessed-image cache (default $OFCONVERT_CACHE or ~/.cache/ofconvert)")
    p.add_argument("--rebuild-cache", action="store_true")
    p.add_argument("--fast-decode", action="store_true", help="JPEG draft-mode decode (see docs/eval.md "
                   "for the measured difference); off by default")
    p.add_argument("--no-isolate", action="store_true", help="run every backend in this process")
    p.add_argument("--out-dir", help="write eval.md, eval.json (every mismatch), eval.csv, eval.png here")
    p.add_argument("--no-png", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    from ofconvert.errors import OfconvertError

    try:
        return run(args)
    except OfconvertError as e:
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("eval: interrupted", file=sys.stderr)
        return 130


def run(args):
    # (not `from ofconvert import evaluate`: that lazy attribute is the function, not the module)
    from ofconvert.evaluation import (EvalOptions, Evaluator, Variant, expand_variants, format_markdown,
                                    report_context, write_reports)
    from ofconvert.preprocache import CacheOptions

    if args.out_dir:        # found now, not after the whole evaluation
        from ofconvert.errors import OfconvertError
        from ofconvert.fileio import check_creatable_dir

        try:
            check_creatable_dir(args.out_dir)
        except OfconvertError as e:
            raise OfconvertError(f"--out-dir: {e}") from None
    if os.path.exists(args.models_dir) and not os.path.isdir(args.models_dir):
        from ofconvert.errors import OfconvertError

        raise OfconvertError(f"--onnx-dir names a file, not a folder: {args.models_dir}")
    if args.no_produce and not os.path.isdir(args.models_dir):
        from ofconvert.errors import OfconvertError

        raise OfconvertError(f"--onnx-dir: no such folder: {args.models_dir} (and --no-produce forbids creating it)")
    if args.limit is not None and args.limit < 1:
        from ofconvert.errors import OfconvertError

        raise OfconvertError(f"--limit must be >= 1, got {args.limit}")
    if args.batch < 1:
        from ofconvert.errors import OfconvertError

        raise OfconvertError(f"--batch must be >= 1, got {args.batch}")
    variants = ([Variant.parse(v) for v in args.variants] if args.variants
                else expand_variants(args.backends, args.precisions))
    options = EvalOptions(
        models_dir=args.models_dir, labels=args.labels, meta=args.meta, limit=args.limit, batch_size=args.batch,
        threads=args.threads, isolate=not args.no_isolate, produce_missing=not args.no_produce,
        calib_data=args.calib_data, progress=not args.no_progress,
        cache=CacheOptions(cache_dir=args.cache_dir, workers=args.workers, fast_decode=args.fast_decode,
                           rebuild=args.rebuild_cache))
    ev = Evaluator(args.data, args.models, variants, reference=args.reference, options=options)
    print(f"dataset: {ev.dataset.describe()}", file=sys.stderr)
    rows = ev.run()
    skipped = sum(len(c.skipped) for c in ev.caches.values())
    print(format_markdown(rows))
    print("\nTop-5:\n")
    print(format_markdown(rows, metric="top5"))
    print(f"\n{len(ev.dataset)} images, {skipped} unreadable skipped; "
          + ", ".join(f"{k}: {v:.1f}s" for k, v in ev.timings.items()))
    if args.out_dir:
        paths = write_reports(rows, args.out_dir, report_context(ev), png=not args.no_png)
        print("wrote " + ", ".join(paths.values()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
