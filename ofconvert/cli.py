"""``ofconvert`` command line.

    ofconvert list
    ofconvert calib-set --from DIR [--per-class 1] -o calib/imagenet1k
    ofconvert bench --models M --backends B --precisions P --batch 8,50 [--streams K] [--out-dir DIR]
    ofconvert eval --data DIR --models M --backends B --precisions P [--out-dir DIR]
    ofconvert inspect FILE [--json]
    ofconvert MODEL --to onnx|trt [-o PATH] [--opset N] [--weights FILE] [--no-validate]
                    [--fp16 | --int8 --calib DIR [--calib-method M] [--calib-images N] [--recalibrate]]
                    [--batch N] [--max-batch N] [--workspace MB] [--timing-cache PATH]

Every command shares its option names (``ofconvert.cli_args``) and its error
printer: user mistakes print one line (``ofconvert: error: ...``) and exit 2, an
interrupt ``ofconvert: interrupted`` and exit 130. Conversions and ``calib-set``
run in a child process (``ofconvert.isolation``): Ctrl-C or SIGTERM prints
``ofconvert: interrupted``, exits 130 and leaves every existing file as it was
and no temp file behind.
"""
import argparse
import os
import sys

from . import cli_args
from .cli_args import Parser as _Parser
from .errors import OfconvertError
from .export_options import DEFAULT_OPSET


class _ProbeFailed(Exception):
    pass


class _Probe(_Parser):
    """The same options, parsed by the parent only to find where the child writes:
    no help, no exit (a usage error or -h is left to the real parser)."""

    def __init__(self, *args, **kwargs):
        kwargs["add_help"] = False
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise _ProbeFailed(message)

    def exit(self, status=0, message=None):
        raise _ProbeFailed(message)


def _dim(v):
    """``224`` or a range ``224-640`` (dynamic H/W)."""
    if "-" in v.strip("-"):
        lo, hi = (int(x) for x in v.split("-"))
        if lo > hi:
            raise ValueError(v)
        return (lo, hi)
    return int(v)


def _shape(text):
    try:
        t = tuple(_dim(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected C,H,W (e.g. 3,224,224 or 3,224-640,224-640), got {text!r}") from None
    if not t or min(min(d) if isinstance(d, tuple) else d for d in t) < 1:
        raise argparse.ArgumentTypeError(f"expected positive C,H,W (e.g. 3,224,224), got {text!r}")
    return t


class _Shapes(argparse.Action):
    """--input-shape once: that shape; again: a list of shapes, one per input."""

    def __call__(self, parser, namespace, value, option_string=None):
        cur = getattr(namespace, self.dest, None)
        setattr(namespace, self.dest, value if cur is None else
                (cur + [value] if isinstance(cur, list) else [cur, value]))


def _convert_parser(probe=False, for_help=False):
    if probe or for_help:   # the parent: no import of calibration (numpy, ...); the child checks the choice
        calib_methods, cls = None, (_Probe if probe else _Parser)
    else:
        from .calibration import METHODS as calib_methods
        cls = _Parser

    p = cls(prog="ofconvert", description="Convert a OneFlow model: OneFlow -> ONNX (-> TensorRT).")
    p.add_argument("model", help="zoo model name (see `ofconvert list`), flowvision:NAME (any flowvision model), "
                                 "or your own: path/to/file.py:Class or package.module:factory")
    p.add_argument("--model-args", help="your model's constructor/factory arguments: JSON object or k=v pairs, "
                                        "e.g. num_classes=10,width=32")
    p.add_argument("--to", choices=("onnx", "trt"), default="onnx")
    p.add_argument("-o", "--output", help="final artefact path (default: ./MODEL[.precision].onnx / .engine)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help="ONNX opset, 13 to the newest the installed onnx/ORT support")
    p.add_argument("--input-shape", type=_shape, action=_Shapes,
                   help="per-image input shape C,H,W (default: the model's; N,C,H,W is read as batch + C,H,W); "
                        "the batch is always dynamic; once per input for several inputs; H/W ranges like "
                        "3,224-640,224-640 make the image size dynamic (traced at the low end)")
    p.add_argument("--input-names", help="names of the inputs, comma-separated (default: input, or input0,input1...)")
    p.add_argument("--dynamic-size", action="store_true",
                   help="H and W symbolic in the ONNX (half to twice the given size unless ranges are given), "
                        "validated at sizes not traced; refused where the model bakes its size")
    p.add_argument("--input-format", choices=("float-nchw", "uint8-nhwc"), default=None,
                   help="uint8-nhwc: the ONNX takes resized/cropped uint8 NHWC images and casts, normalises "
                        "(the model's mean/std) and transposes inside (docs/gpu.md); default float-nchw")
    p.add_argument("--weights", help="your weights: a OneFlow checkpoint (flow.save folder), .npz or .safetensors "
                                     "state dict (read without running any code from it)")
    p.add_argument("--no-validate", dest="validate", action="store_false",
                   help="skip the OneFlow vs ONNX Runtime check")
    p.add_argument("--simplify", action="store_true", help="run onnxsim after export; kept only if outputs stay equal")
    p.add_argument("--force-export", action="store_true", help="re-export even if an identical ONNX exists")
    prec = p.add_mutually_exclusive_group()
    prec.add_argument("--fp16", dest="precision", action="store_const", const="fp16")
    prec.add_argument("--int8", dest="precision", action="store_const", const="int8")
    p.set_defaults(precision="fp32")
    p.add_argument("--calib", help="calibration images (folder or manifest), e.g. calib/imagenet1k")
    p.add_argument("--calib-method", choices=calib_methods, default="entropy",
                   help="entropy (default), percentile or minmax")
    p.add_argument("--calib-images", type=int,
                   help="use N calibration images, spread evenly over the set (all classes stay represented)")
    p.add_argument("--recalibrate", action="store_true", help="recompute the calibration cache even if one matches")
    p.add_argument("--calib-cache", help="an existing TensorRT calibration cache: int8 from it, no images "
                                         "(read only, never rewritten)")
    p.add_argument("--max-flips", help="flip budget vs fp32 on the check images, e.g. 1%% or 13: layers stay "
                                       "in float until int8/fp16 predictions agree that well (see docs/precision.md)")
    p.add_argument("--check-data", help="images judging --max-flips (default: a split of --calib)")
    p.add_argument("--speed-backend", choices=("ort-cpu", "openvino"), default="ort-cpu",
                   help="what times the --max-flips candidates against fp32 (openvino: the fastest CPU path)")
    p.add_argument("--batch", type=int, default=8, help="TensorRT profile: optimal batch")
    p.add_argument("--max-batch", type=int, help="TensorRT profile: max batch (default: --batch)")
    p.add_argument("--workspace", dest="workspace_mb", type=int, help="TensorRT workspace limit (MiB)")
    p.add_argument("--strongly-typed", action="store_const", const=True, default=None, help="TensorRT: parse "
                   "the network strongly typed (precision from the ONNX; default: by TensorRT version and ONNX)")
    tc = p.add_mutually_exclusive_group()
    tc.add_argument("--timing-cache", help="TensorRT timing cache file or folder (read and updated; "
                                           "default: one per TensorRT version and GPU under ~/.cache/ofconvert)")
    tc.add_argument("--no-timing-cache", dest="timing_cache", action="store_const", const=False)
    return p


def _cmd_list(argv):
    p = _Parser(prog="ofconvert list", description="List the model zoo.")
    p.parse_args(argv)
    from .config import get_config, list_models

    print(f"{'model':20s} {'input':>9s} {'resize':>6s} {'interp':8s} {'mean/std':14s} weights")
    for name in list_models():
        c = get_config(name)
        pp = c.preprocess
        ms = "0.5/0.5" if pp.mean == (0.5, 0.5, 0.5) else "imagenet"
        w = c.weights if c.pretrained else "seeded random (no real weights installable)"
        print(f"{name:20s} {pp.input_size:>4d}x{pp.input_size:<4d} {pp.resize_size:>6d} "
              f"{pp.interpolation:8s} {ms:14s} {w}")
    print("\nand any flowvision 0.2.1 model as flowvision:NAME (seeded random weights), "
          "e.g. flowvision:mobilenet_v3_small; a misspelt name gets suggestions")
    return 0


def _calib_set_parser(probe=False):
    p = (_Probe if probe else _Parser)(prog="ofconvert calib-set",
                                       description="Build a calibration set manifest from an ImageNet-style folder.")
    p.add_argument("--from", dest="src", required=True, help="ImageFolder tree (one folder per class)")
    p.add_argument("--per-class", type=int, default=1)
    p.add_argument("-o", "--output", required=True, help="calibration set folder, e.g. calib/imagenet1k")
    return p


def _cmd_calib_set(argv):
    a = _calib_set_parser().parse_args(argv)
    from .calibration import build_calib_set

    path = build_calib_set(a.src, a.output, per_class=a.per_class)
    print(f"wrote {path}")
    return 0


def _cmd_bench(argv):
    from .bench.cli import run

    return run(argv)


def _cmd_eval(argv):
    from .evaluation.cli import run

    return run(argv)


def _cmd_inspect(argv):
    p = _Parser(prog="ofconvert inspect", description="What a file holds: an ONNX model, a calibration cache "
                                                      "or a TensorRT engine's sidecar.")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="print the facts as JSON")
    a = p.parse_args(argv)
    try:
        from .inspect import format_inspection, inspect_file
    except ModuleNotFoundError as e:
        if e.name != f"{__package__}.inspect":
            raise
        raise OfconvertError("ofconvert inspect is not available in this install (no ofconvert.inspect)") from None
    info = inspect_file(a.file)
    if a.json:
        from .fileio import json_text

        print(json_text(info))
    else:
        print(format_inspection(info))
    return 0


def _cmd_convert(argv):
    a = _convert_parser().parse_args(argv)
    from .pipeline import ConvertOptions, convert

    opts = ConvertOptions(**vars(a))
    res = convert(opts)
    for role, path in res.artefacts.items():
        print(f"{role:12s} {path}")
    return 0


def _watch_folders(argv):
    """Folders where ``ofconvert ARGV`` writes its artefacts (and their temp files),
    from the same options the child parses; None when they do not parse (usage
    error, -h): the real parser then answers in-process, as fast as before."""
    try:
        if argv[0] == "calib-set":
            return [_calib_set_parser(probe=True).parse_args(argv[1:]).output]
        a = _convert_parser(probe=True).parse_args(argv)
    except _ProbeFailed:
        return None
    # every artefact (ONNX, reports, fp16/int8, calibration cache, engine) lies beside
    # the output (pipeline._paths), or in the cwd without -o
    folders = [os.path.dirname(os.path.abspath(a.output)) if a.output else os.getcwd()]
    if a.to == "trt" and a.timing_cache is not False:   # as engine.resolve_timing_cache
        tc = a.timing_cache or os.environ.get("OFCONVERT_TRT_CACHE") or os.path.join(
            os.path.expanduser("~"), ".cache", "ofconvert", "tensorrt")
        folders.append(tc if os.path.isdir(tc) or tc.endswith(("/", os.sep)) or not a.timing_cache
                       else os.path.dirname(os.path.abspath(tc)))
    return folders


_IN_PROCESS = {"list": _cmd_list, "calib-set": _cmd_calib_set, "bench": _cmd_bench, "eval": _cmd_eval,
               "inspect": _cmd_inspect}


def run_inprocess(argv):
    """Run a command in this process (the child of ``main``, or a command that
    isolates its own work: list, bench, eval, inspect)."""
    cmd = _IN_PROCESS.get(argv[0])
    return cli_args.run_entry(lambda a: cmd(a[1:]) if cmd else _cmd_convert(a), argv)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        _convert_parser(for_help=True).print_help()
        print("\nother commands: ofconvert list | ofconvert calib-set --from DIR -o OUT | ofconvert bench ... | "
              "ofconvert eval --data DIR --models M ... | ofconvert inspect FILE  (each with --help)")
        return 0 if argv else 2
    if argv[0] in ("list", "bench", "eval", "inspect"):
        return run_inprocess(argv)
    from . import isolation

    try:
        watch = _watch_folders(argv) if isolation.available() else None
        if watch is None:
            return run_inprocess(argv)
        return isolation.run_isolated(argv, watch)
    except OfconvertError as e:
        return cli_args.report_error(e)
    except KeyboardInterrupt:   # before the handlers are set or after they are restored
        return cli_args.report_interrupt()


if __name__ == "__main__":
    sys.exit(main())
