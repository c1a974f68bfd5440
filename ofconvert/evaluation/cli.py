"""``ofconvert eval`` (and ``python tools/eval.py``): options from the shared
groups of ``ofconvert.cli_args``."""
import os
import sys

from .. import cli_args
from ..errors import OfconvertError


def build_parser(prog="ofconvert eval"):
    p = cli_args.Parser(prog=prog, description="ImageNet accuracy and mismatch-vs-reference table for models x "
                                               "backends x precisions. See docs/eval.md.")
    cli_args.add_data(p)
    cli_args.add_models(p, what="comma list of zoo names (or stems of ONNX files in --models-dir)",
                        models_dir_default=".")
    cli_args.add_backends(p, ["ort-cpu"], ["fp32"])
    p.add_argument("--variants", type=cli_args.comma_list,
                   help="explicit backend:precision list (instead of the product)")
    p.add_argument("--reference", help="variant the mismatches are counted against "
                   "(default oneflow:fp32, or ort-cpu:fp32 without OneFlow)")
    cli_args.add_calib(p)
    cli_args.add_batch(p, 32, several=False)
    cli_args.add_threads(p)
    p.add_argument("--no-isolate", action="store_true", help="run every backend in this process")
    p.add_argument("--ort-cuda", default="auto",
                   help="ort-cuda settings: auto (default: the fastest of a few candidates without CUDA graphs, "
                        "timed per model file and batch, cached), default, or flags joined by '+' (no graph)")
    cli_args.add_output(p, "eval")
    return p


def run(argv):
    from ..preprocache import CacheOptions
    from .evaluator import Evaluator
    from .report import format_markdown, report_context, write_reports
    from .variants import EvalOptions, Variant, expand_variants

    args = build_parser().parse_args(argv)
    if args.out_dir:        # found now, not after the whole evaluation
        cli_args.check_out_dir(args.out_dir)
    if os.path.exists(args.models_dir) and not os.path.isdir(args.models_dir):
        raise OfconvertError(f"--models-dir names a file, not a folder: {args.models_dir}")
    if args.no_produce and not os.path.isdir(args.models_dir):
        raise OfconvertError(f"--models-dir: no such folder: {args.models_dir} (and --no-produce forbids creating it)")
    if args.limit is not None and args.limit < 1:
        raise OfconvertError(f"--limit must be >= 1, got {args.limit}")
    if args.batch < 1:
        raise OfconvertError(f"--batch must be >= 1, got {args.batch}")
    from ..runners.ort_settings import OrtCudaSettings

    if OrtCudaSettings.parse(args.ort_cuda).cuda_graph:
        raise OfconvertError("--ort-cuda: the evaluator runs without CUDA graphs (its last batch is smaller): "
                             "drop 'graph'")
    variants = ([Variant.parse(v) for v in args.variants] if args.variants
                else expand_variants(cli_args.comma_list(args.backends), cli_args.comma_list(args.precisions)))
    options = EvalOptions(
        models_dir=args.models_dir, labels=args.labels, meta=args.meta, limit=args.limit, batch_size=args.batch,
        threads=args.threads, isolate=not args.no_isolate, produce_missing=not args.no_produce,
        calib=args.calib, progress=not args.no_progress, ort_cuda=args.ort_cuda,
        cache=CacheOptions(cache_dir=args.cache_dir, workers=args.workers, fast_decode=args.fast_decode,
                           rebuild=args.rebuild_cache))
    ev = Evaluator(args.data, cli_args.comma_list(args.models), variants, reference=args.reference, options=options)
    print(f"dataset: {ev.dataset.describe()}", file=sys.stderr)
    rows = ev.rows = ev.run()
    skipped = sum(len(c.skipped) for c in ev.caches.values())
    print(format_markdown(rows))
    print("\nTop-5:\n")
    print(format_markdown(rows, metric="top5"))
    print(f"\n{len(ev.dataset)} images, {skipped} unreadable skipped; "
          + ", ".join(f"{k}: {v:.1f}s" for k, v in ev.timings.items()))
    from .report import time_split, time_split_markdown

    split = time_split_markdown(time_split(rows, ev))
    if split:
        print("\nTime split (decode, set-up, inference) and the projection:\n\n" + split)
    if args.out_dir:
        paths = write_reports(rows, args.out_dir, report_context(ev), png=not args.no_png)
        print("wrote " + ", ".join(paths.values()), file=sys.stderr)
    return 0


def main(argv=None):
    return cli_args.run_entry(run, argv)
