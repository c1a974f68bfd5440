"""Weights: safe loading only.

* ``load_legacy_torch(path)``: reads a *legacy* (pre-zip) ``torch.save`` file into
  numpy arrays WITHOUT torch, through a restricted unpickler that accepts only
  ``collections.OrderedDict``, torch's tensor-rebuild functions and storage types.
  Anything else in the pickle (e.g. ``os.system``) -> WeightsError.
* ``load_user_weights(path)``: a user's ``.npz`` or ``.safetensors`` file or a
  OneFlow checkpoint (a ``flow.save`` folder, its ``pickled_data``, or an old
  snapshot folder: ``ofconvert.oneflow_ckpt``); never an unrestricted pickle.
* ``check_weights_path(path)`` / ``weights_digest(path)``: the early check and the
  sha256 a report records (a checkpoint folder: over its files, names included).

Every problem is a one-line ``WeightsError`` that says what the file is: a folder,
missing, empty, text, a pickle or a single ``.npy`` array where a ``.npz`` archive
was expected, corrupt (with the parser's reason).
"""
import collections
import io
import os
import pickle
import struct
import zipfile

import numpy as np

from .data import looks_like_text
from .errors import WeightsError, first_line

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")     # a zip with members / an empty zip
_PICKLE_PROTOCOLS = (b"\x02", b"\x03", b"\x04", b"\x05")

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _TensorRef:
    __slots__ = ("key", "dtype", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        self.key, self.dtype = storage
        self.offset, self.size, self.stride = int(offset), tuple(size), tuple(stride)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    return _TensorRef(storage, storage_offset, size, stride)


class _RestrictedUnpickler(pickle.Unpickler):
    """Only the globals a torch state dict needs; everything else is refused."""

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise WeightsError(f"refusing to unpickle {module}.{name}: not a plain tensor state dict")

    def persistent_load(self, pid):
        # ('storage', storage_type, root_key, location, numel, view_metadata)
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise WeightsError(f"unsupported persistent id in torch file: {pid!r:.80}")
        stype, key = pid[1], str(pid[2])
        if not isinstance(stype, _StorageType):
            raise WeightsError("unsupported storage type in torch file")
        if pid[5] is not None:
            raise WeightsError("storage views are not supported")
        return (key, stype.dtype)


# -- what a weights file is ------------------------------------------------------------

def require_file(path):
    """WeightsError unless ``path`` is an existing file: a folder, a missing path and
    anything else (a device, a socket) each get their own message."""
    if os.path.isdir(path):
        raise WeightsError(f"weights path {path} is a folder, expected a file")
    if not os.path.exists(path):
        raise WeightsError(f"weights file not found: {path}")
    if not os.path.isfile(path):
        raise WeightsError(f"weights path {path} is not a regular file")


def _head(path, n=512):
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError as e:
        raise WeightsError(f"{path}: cannot read the weights file ({e.strerror or e})") from None


def _content_kind(head):
    """What the first bytes of a file look like: 'empty', 'safetensors', 'zip', 'npy',
    'pickle', 'text' or None (something else)."""
    if not head:
        return "empty"
    if len(head) > 8 and head[8:9] == b"{" and 0 < struct.unpack("<Q", head[:8])[0] < len(head) + (1 << 30):
        return "safetensors"                    # u64 header length, then the JSON header
    if head.startswith(_ZIP_MAGICS):
        return "zip"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head[:1] == b"\x80" and head[1:2] in _PICKLE_PROTOCOLS:
        return "pickle"
    if looks_like_text(head):
        return "text"
    return None


_KIND_WORDS = {"safetensors": "a safetensors file", "zip": "a zip archive", "npy": "a single .npy array",
               "pickle": "a Python pickle", "text": "looks like text"}


def _check_content(path, expected, accepted, unknown_ok=True):
    """Read ``path``'s first bytes; WeightsError if it is empty, or of a known kind
    not in ``accepted``, or (``unknown_ok=False``) of no known kind. ``expected``:
    the format named in the message."""
    head = _head(path)
    kind = _content_kind(head)
    if kind == "empty":
        raise WeightsError(f"{path}: weights file is empty (0 bytes)")
    if kind in accepted or (kind is None and unknown_ok):
        return kind
    what = _KIND_WORDS.get(kind) or f"unrecognised content; first bytes {head[:8].hex(' ')}"
    raise WeightsError(f"{path}: not {expected} ({what})")


# -- readers ------------------------------------------------------------------------------

def load_legacy_torch(path):
    """Legacy ``torch.save`` file -> ``{name: np.ndarray}`` (no torch needed)."""
    require_file(path)
    if zipfile.is_zipfile(path):
        raise WeightsError(f"{path}: zip-format torch checkpoints are not supported; convert to .npz or .safetensors")
    _check_content(path, "a legacy torch checkpoint", accepted=("pickle",))
    try:
        with open(path, "rb") as f:
            magic = _RestrictedUnpickler(f).load()
            if magic != LEGACY_MAGIC:
                raise WeightsError(f"{path}: not a legacy torch checkpoint (bad magic number)")
            _RestrictedUnpickler(f).load()            # protocol version
            _RestrictedUnpickler(f).load()            # sys info
            state = _RestrictedUnpickler(f).load()
            keys = _RestrictedUnpickler(f).load()
            if isinstance(state, dict) and "state_dict" in state:
                state = state["state_dict"]
            dtypes = {}
            for v in state.values():
                if isinstance(v, _TensorRef):
                    dtypes[v.key] = v.dtype
            storages = {}
            for key in keys:
                (numel,) = struct.unpack("<q", f.read(8))
                dt = dtypes.get(key, np.dtype(np.float32))
                buf = f.read(numel * dt.itemsize)
                if len(buf) != numel * dt.itemsize:
                    raise WeightsError(f"{path}: truncated (storage {key})")
                storages[key] = np.frombuffer(buf, dtype=dt)
    except WeightsError:
        raise
    except (pickle.UnpicklingError, EOFError, struct.error, AttributeError, TypeError, ValueError, IndexError) as e:
        raise WeightsError(f"{path}: corrupt torch checkpoint ({type(e).__name__}: {e})") from None
    out = collections.OrderedDict()
    for name, ref in state.items():
        if not isinstance(ref, _TensorRef):
            continue
        s = storages.get(ref.key)
        if s is None or len(ref.size) != len(ref.stride) or min(ref.stride, default=0) < 0 or ref.offset < 0:
            raise WeightsError(f"{path}: corrupt tensor {name} (storage or layout)")
        last = ref.offset + sum((d - 1) * st for d, st in zip(ref.size, ref.stride)) if all(ref.size) else -1
        if last >= len(s):
            raise WeightsError(f"{path}: tensor {name} lies outside its storage (corrupt file)")
        it = s.dtype.itemsize
        arr = np.lib.stride_tricks.as_strided(s[ref.offset:], shape=ref.size,
                                              strides=tuple(st * it for st in ref.stride))
        out[name] = np.array(arr)  # copy: own, contiguous memory
    return out


def load_safetensors(path):
    """A ``.safetensors`` file through the ``safetensors`` library (no code runs)."""
    require_file(path)
    _check_content(path, "a safetensors file", accepted=("safetensors",))
    try:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file
    except ImportError:
        raise WeightsError("reading .safetensors needs the safetensors package "
                           "(installed by scripts/setup.sh)") from None
    try:
        return collections.OrderedDict(sorted(load_file(path).items()))
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        raise WeightsError(f"{path}: corrupt safetensors file ({first_line(e)})") from None


def check_weights_path(path):
    """WeightsError unless ``path`` is a weights file or a OneFlow checkpoint folder
    (whose pickle is read, restricted, now: a code payload is refused before any work)."""
    from .oneflow_ckpt import is_checkpoint, probe_checkpoint

    if is_checkpoint(path):
        probe_checkpoint(path)
        return
    if os.path.isdir(path):
        raise WeightsError(f"weights path {path} is a folder but not a OneFlow checkpoint (no pickled_data or "
                           f"snapshot_done inside); expected a flow.save folder, a .npz or a .safetensors file")
    require_file(path)


def weights_digest(path):
    """sha256 of a weights file, or of a checkpoint folder (its files' relative
    names and contents, in sorted order)."""
    import hashlib

    from .fileio import sha256_file
    from .oneflow_ckpt import checkpoint_files, is_checkpoint

    if not is_checkpoint(path):
        return sha256_file(path)
    root = path if os.path.isdir(path) else os.path.dirname(path)
    h = hashlib.sha256()
    for f in checkpoint_files(path):
        h.update(os.path.relpath(f, root).encode() + b"\0" + sha256_file(f).encode())
    return h.hexdigest()


def load_user_weights(path):
    """A user's weights: a OneFlow checkpoint (``flow.save`` folder), ``.npz``
    (allow_pickle=False) or ``.safetensors``."""
    from .oneflow_ckpt import is_checkpoint, load_checkpoint

    if is_checkpoint(path):
        return load_checkpoint(path)   # the same restricted read as check_weights_path's probe, once
    check_weights_path(path)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npz":
        return load_npz(path)
    if ext == ".safetensors":
        return load_safetensors(path)
    if ext in (".pth", ".pt", ".pkl", ".ckpt", ".bin"):
        raise WeightsError(f"{path}: pickled checkpoints are not loaded (unsafe); save the state dict as .npz, "
                           f".safetensors or with flow.save (a folder)")
    raise WeightsError(f"{path}: unsupported weights format {ext or '(none)'}; use a flow.save folder, .npz "
                       f"or .safetensors")


def load_npz(path):
    """``.npz`` archive of plain arrays -> ``{name: np.ndarray}`` (never unpickles)."""
    require_file(path)
    _check_content(path, "a .npz archive", accepted=("zip",), unknown_ok=False)
    try:
        with np.load(path, allow_pickle=False) as z:
            odd = [n for n in z.zip.namelist() if not n.endswith(".npy")]
            if odd:
                raise WeightsError(f"{path}: a zip archive but not a .npz (member {odd[0]!r} is not a .npy array; "
                                   f"a zip-format torch checkpoint?)")
            return collections.OrderedDict((k, z[k]) for k in z.files)
    except WeightsError:
        raise
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise WeightsError(f"{path}: holds object arrays (pickled Python objects), which are not loaded "
                               f"(unsafe); save plain numeric arrays") from None
        raise WeightsError(f"{path}: corrupt .npz weights ({e})") from None
    except (OSError, zipfile.BadZipFile, EOFError, KeyError, struct.error) as e:
        raise WeightsError(f"{path}: corrupt .npz weights ({type(e).__name__}: {e})") from None


def save_npz(path, state):
    """Save ``{name: array}`` atomically as .npz."""
    from .fileio import atomic_path

    buf = io.BytesIO()
    np.savez(buf, **state)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(buf.getvalue())
