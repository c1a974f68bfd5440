"""``ofconvert bench`` (and ``python tools/bench.py``): options from the shared
groups of ``ofconvert.cli_args``; reports into ``--out-dir``."""
import os
import sys

from .. import cli_args
from ..config import PRECISIONS
from .options import DEFAULT_BACKENDS, DEFAULT_MODELS, BenchOptions, parse_list


def build_parser(prog="ofconvert bench"):
    p = cli_args.Parser(prog=prog, description="Throughput of models x backends x precisions x batch sizes "
                                               "(each backend/precision in its own process). See docs/bench.md.")
    cli_args.add_models(p, default=",".join(DEFAULT_MODELS),
                        what="comma list of zoo names (see `ofconvert list`) or ONNX files (ONNX backends only)",
                        models_dir_help=" (default out/onnx)")
    cli_args.add_backends(p, DEFAULT_BACKENDS, PRECISIONS)
    g = p.add_argument_group("protocol")
    cli_args.add_batch(g, "8,50", several=True)
    g.add_argument("--warmup", type=int, default=5, help="untimed batches first (default 5)")
    g.add_argument("--iters", type=int, default=500, help="timed batches (per stream; default 500)")
    g.add_argument("--streams", type=int, default=1,
                   help="concurrent inference streams per backend: K threads, one session each, fed the same "
                        "batches; img/s is their aggregate, latency per request (default 1)")
    g.add_argument("--input", default="device", choices=("host", "device", "both"),
                   help="GPU backends: batch resident on the device (default) or copied from the host each batch")
    g.add_argument("--ort-cuda", default="auto",
                   help="comma list of ort-cuda settings, one column each: auto (default: the fastest of a few "
                        "candidates, timed per model file, batch and GPU, cached; docs/gpu.md), default (ONNX "
                        "Runtime as shipped), fastest or flags joined by '+': iobind, nhwc, graph, fusebias, "
                        "algo=EXHAUSTIVE|HEURISTIC|DEFAULT")
    cli_args.add_threads(g)
    g.add_argument("--input-size", type=int, help="override every model's input size")
    g.add_argument("--timeout", type=float, default=3600.0, help="seconds per worker process")
    cli_args.add_calib(p)
    cli_args.add_output(p, "bench", default=os.path.join("out", "bench"))
    return p


def options_from_args(args):
    return BenchOptions(warmup=args.warmup, iters=args.iters,
                        inputs=("host", "device") if args.input == "both" else (args.input,),
                        ort_cuda=tuple(parse_list(args.ort_cuda, "--ort-cuda")), models_dir=args.models_dir,
                        calib=args.calib, threads=args.threads, input_size=args.input_size,
                        timeout_s=args.timeout, streams=args.streams, produce_missing=not args.no_produce)


def run(argv):
    from .. import fileio
    from ..report import environment
    from .driver import benchmark
    from .report import markdown, write_reports

    args = build_parser().parse_args(argv)
    options = options_from_args(args).check()
    env = environment()
    out_dir = args.out_dir
    partial = os.path.join(out_dir, "bench.partial.json")
    done = []

    def save(rows):  # partial reports after every worker: a killed run keeps what it measured
        done.extend(rows)
        fileio.write_json(partial, {"environment": env, "results": [r.to_dict() for r in done]})

    results = benchmark(args.models, args.backends, args.precisions, parse_list(args.batch, "--batch"),
                        options, progress=not args.no_progress, on_result=save)
    paths = write_reports(results, out_dir, env, options, png=not args.no_png)
    if os.path.exists(partial):
        os.unlink(partial)
    print(markdown(results, env, options))
    print("wrote " + ", ".join(paths.values()), file=sys.stderr)
    return 0


def main(argv=None):
    return cli_args.run_entry(run, argv)


