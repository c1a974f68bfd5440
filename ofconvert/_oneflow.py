"""Quiet, typed import of OneFlow (shared by the zoo, the config and the runners)."""
import os

from .errors import BackendUnavailableError


def import_oneflow():
    """Import oneflow, or raise BackendUnavailableError.

    OneFlow 0.9.0 writes noise to the C-level stderr when imported on a machine
    without a CUDA driver ("libibverbs not available", "CUDA driver version is
    insufficient"): it is swallowed unless the import fails, so that a user
    error stays a one-line message."""
    import sys

    if "oneflow" in sys.modules:
        return sys.modules["oneflow"]
    os.environ.setdefault("GLOG_minloglevel", "3")
    os.environ.setdefault("ONEFLOW_ENABLE_ONEDNN_OPTS", "1")
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            import oneflow
        except ImportError as e:
            os.dup2(saved, 2)
            raise BackendUnavailableError(
                f"oneflow is not importable ({e}); run scripts/setup.sh (OneFlow 0.9.0 needs Python 3.10)") from None
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    import warnings

    # module-level notes such as "Hardswish module do not support inplace now"
    warnings.filterwarnings("ignore", category=UserWarning, module=r"oneflow\.")
    return oneflow


class eval_mode:
    """``module`` in eval mode inside the block; each submodule handed back in the
    mode it came in. ``log`` gets one note when the module came in train mode."""

    def __init__(self, module, log=None):
        self.module, self.log = module, log

    def __enter__(self):
        self.modes = [(m, m.training) for m in self.module.modules()]
        if self.log and any(t for _, t in self.modes):
            self.log(f"note: {type(self.module).__name__} was in train mode; exporting and validating it in eval "
                     f"mode (BatchNorm running statistics, no Dropout); it is handed back in train mode")
        self.module.eval()
        return self.module

    def __exit__(self, *exc):
        for m, t in self.modes:
            m.training = t
