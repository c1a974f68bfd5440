"""What every ``ofconvert`` entry shares: the parser class (a usage mistake is
one line, exit 2), the argument groups (an option has one name and one meaning
in every command) and the one error printer (:func:`run_entry`).

Names: ``--models`` (comma list), ``--models-dir DIR`` (model files; old name
``--onnx-dir``), ``--no-produce``, ``--backends``, ``--precisions``, ``--calib DIR``
(calibration images or manifest; old name ``--calib-data``), ``--batch`` (the batch
size(s) inference runs at), ``--threads``, ``--data`` & co (labelled images),
``--out-dir DIR`` (report folder; old name ``--out``), ``-o/--output FILE`` (one
artefact), ``--no-png``, ``--no-progress``. Old names stay as hidden aliases.
No heavy import here: ``ofconvert --help`` loads neither numpy nor onnx."""
import argparse
import contextlib
import signal
import sys
import threading

from .errors import INTERRUPTED_EXIT, OfconvertError, first_line  # noqa: F401 (INTERRUPTED_EXIT re-exported)

PROG = "ofconvert"


class UsageError(OfconvertError):
    """A command line that does not parse."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (through run_entry)
        raise UsageError(message)


def comma_list(text):
    return [x.strip() for x in str(text).split(",") if x.strip()]


def _alias(p, old, dest):
    """A hidden old name of an option (same destination, not in --help)."""
    p.add_argument(old, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def add_models(p, default=None, what="comma list of zoo names", models_dir_default=None, models_dir_help=""):
    g = p.add_argument_group("models")
    g.add_argument("--models", default=default, required=default is None, help=what)
    g.add_argument("--models-dir", dest="models_dir", default=models_dir_default, metavar="DIR",
                   help="folder of the model files: <model>.onnx (always fp32), .fp16.onnx, .int8.onnx, "
                        ".int8-cpu.onnx, .<precision>.engine; a file whose content is another precision than its "
                        "name says is refused; missing ones are produced there" + models_dir_help)
    _alias(p, "--onnx-dir", "models_dir")
    g.add_argument("--no-produce", action="store_true", help="don't produce missing model files (n/a instead)")
    return g


def add_backends(p, backends, precisions):
    from .runners import BACKENDS

    g = p.add_argument_group("backends and precisions")
    g.add_argument("--backends", default=",".join(backends),
                   help=f"comma list of {', '.join(BACKENDS)} (default {','.join(backends)})")
    g.add_argument("--precisions", default=",".join(precisions),
                   help=f"comma list of fp32, fp16, int8 (default {','.join(precisions)})")
    return g


def add_calib(p):
    p.add_argument("--calib", metavar="DIR", help="calibration images (folder or manifest, e.g. calib/imagenet1k) "
                                                  "for producing a missing int8 model")
    _alias(p, "--calib-data", "calib")


def add_batch(p, default, several):
    if several:
        p.add_argument("--batch", default=default, help=f"comma list of the batch sizes inference runs at "
                                                        f"(default {default})")
    else:
        p.add_argument("--batch", type=int, default=default, help=f"the batch size inference runs at "
                                                                  f"(default {default})")


def add_threads(p):
    p.add_argument("--threads", type=int,
                   help="CPU inference threads (ort-cpu intra-op, openvino INFERENCE_NUM_THREADS, oneflow)")


def add_data(p):
    g = p.add_argument_group("labelled images")
    g.add_argument("--data", required=True, help="image folder: val.txt/labels.txt, ImageFolder, or official "
                   "ILSVRC2012 val (LOC_val_solution.csv / ground truth + --meta)")
    g.add_argument("--labels", help="label file, overriding detection")
    g.add_argument("--meta", help="devkit meta.mat (needs scipy) or '<ILSVRC2012_ID> <wnid>' file, for "
                   "ILSVRC2012_validation_ground_truth.txt")
    g.add_argument("--limit", type=int, help="first N images only")
    g.add_argument("--workers", type=int, help="decode processes (default: cores, max 8)")
    g.add_argument("--cache-dir", help="preprocessed-image cache (default $OFCONVERT_CACHE or ~/.cache/ofconvert)")
    g.add_argument("--rebuild-cache", action="store_true", help="ignore an existing cache entry")
    g.add_argument("--fast-decode", action="store_true", help="JPEG draft-mode decode (see docs/eval.md "
                   "for the measured difference); off by default")
    return g


def add_output(p, stem, default=None):
    g = p.add_argument_group("output")
    g.add_argument("--out-dir", default=default, metavar="DIR",
                   help=f"folder for {stem}.md, .json, .csv, .png" + (f" (default {default})" if default else ""))
    _alias(p, "--out", "out_dir")
    g.add_argument("--no-png", action="store_true", help="skip the chart (matplotlib)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    return g


def check_out_dir(path):
    """Refuse now (not after the run) a report folder that cannot be created."""
    from .fileio import check_creatable_dir

    try:
        check_creatable_dir(path)
    except OfconvertError as e:
        raise OfconvertError(f"--out-dir: {e}") from None


def report_error(e):
    """The one error line of every entry; returns the exit code."""
    sys.stderr.write(f"{PROG}: error: {first_line(e)}\n")
    sys.stderr.flush()
    return getattr(e, "exit_code", 2)


def report_interrupt():
    sys.stderr.write(f"{PROG}: interrupted\n")
    sys.stderr.flush()
    return INTERRUPTED_EXIT


def _interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def _signals_interrupt():
    """SIGTERM and SIGHUP end the run like Ctrl-C (KeyboardInterrupt: workers are
    killed, temp folders removed) in the main thread."""
    old = {}
    if threading.current_thread() is threading.main_thread():
        for name in ("SIGTERM", "SIGHUP"):
            s = getattr(signal, name, None)
            if s is not None:
                old[s] = signal.signal(s, _interrupt)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run_entry(func, argv):
    """Run ``func(argv)`` as a command: a user mistake is ``ofconvert: error: ...``
    and exit 2, an interrupt (Ctrl-C, SIGTERM, SIGHUP) ``ofconvert: interrupted``
    and exit 130."""
    try:
        with _signals_interrupt():
            return func(list(sys.argv[1:] if argv is None else argv))
    except OfconvertError as e:
        return report_error(e)
    except KeyboardInterrupt:
        return report_interrupt()
