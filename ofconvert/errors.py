"""Typed errors. ``OfconvertError`` and its subclasses are *user* errors: the CLI
prints their message on one line and exits 2, without a traceback."""


#: the exit status of an interrupted command (128 + SIGINT), everywhere
INTERRUPTED_EXIT = 130


class OfconvertError(Exception):
    """A mistake the user can fix (bad model name, bad file, bad option...)."""

    exit_code = 2


class ModelNotFoundError(OfconvertError):
    pass


class WeightsError(OfconvertError):
    """Missing, corrupt or mismatching weights file."""


class DataError(OfconvertError):
    """Bad image folder, label file or calibration set."""


class CalibrationCacheError(OfconvertError):
    """A calibration cache that does not match the model or is corrupt."""


class BackendUnavailableError(OfconvertError):
    """A backend (oneflow, tensorrt, onnxruntime CUDA provider...) is not installed
    or cannot run here. The message names what to install."""


class EngineCompatibilityError(OfconvertError):
    """A TensorRT engine built for another TensorRT version or GPU."""


class ExportError(OfconvertError):
    """A model that cannot be exported correctly; the message names the OneFlow
    op, the module path and the opset."""


class ValidationError(OfconvertError):
    """Base class for export-validation failures (the caller decides the policy)."""


class ShapeError(ValidationError):
    pass


class AtolError(ValidationError):
    pass


class TopKError(ValidationError):
    pass


class NondeterministicError(ValidationError):
    """The OneFlow module returns different outputs for two identical calls."""


def first_line(e, limit=300, default=None):
    """The first non-empty line of an exception's (or any text's) message, at most
    ``limit`` characters: what a one-line error quotes of a library's message.
    ``default``: for an empty message (else the exception's type name)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    if lines:
        return lines[0][:limit]
    return default if default is not None else type(e).__name__


def check_type(value, types, name, what=None):
    """OfconvertError naming the parameter unless ``value`` is one of ``types``
    (``bool`` never passes for ``int``). Returns ``value``."""
    types = types if isinstance(types, tuple) else (types,)
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        want = what or " or ".join(t.__name__ for t in types)
        raise OfconvertError(f"{name} must be {want}, got {type(value).__name__} {value!r:.60}")
    return value
