"""Weights: safe loading only.

* ``load_legacy_torch(path)``: reads a *legacy* (pre-zip) ``torch.save`` file into
  numpy arrays WITHOUT torch, through a restricted unpickler that accepts only
  ``collections.OrderedDict``, torch's tensor-rebuild functions and storage types.
  Anything else in the pickle (e.g. ``os.system``) -> WeightsError.
* ``load_user_weights(path)``: a user's ``.npz`` or ``.safetensors`` file; never an
  unrestricted pickle.
"""
import collections
import io
import json
import os
import pickle
import struct
import zipfile

import numpy as np

from .errors import WeightsError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

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


def load_legacy_torch(path):
    """Legacy ``torch.save`` file -> ``{name: np.ndarray}`` (no torch needed)."""
    if not os.path.isfile(path):
        raise WeightsError(f"weights file not found: {path}")
    if zipfile.is_zipfile(path):
        raise WeightsError(f"{path}: zip-format torch checkpoints are not supported; convert to .npz or .safetensors")
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
    """Minimal safetensors reader (header JSON + raw little-endian buffers)."""
    dtypes = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32,
              "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > 100 * 1024 * 1024:
                raise ValueError("header too large")
            header = json.loads(f.read(n))
            data = f.read()
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
        out = collections.OrderedDict()
        for name, info in header.items():
            if name == "__metadata__":
                continue
            b, e = info["data_offsets"]
            if e > len(data) or b > e:
                raise ValueError(f"tensor {name} lies outside the file")
            out[name] = np.frombuffer(data[b:e], dtype=dtypes[info["dtype"]]).reshape(info["shape"]).copy()
        return out
    except (OSError, ValueError, KeyError, struct.error, TypeError) as e:
        raise WeightsError(f"{path}: corrupt safetensors file ({e})") from None


def load_user_weights(path):
    """A user's weights: ``.npz`` (allow_pickle=False) or ``.safetensors``."""
    if not os.path.isfile(path):
        raise WeightsError(f"weights file not found: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                return collections.OrderedDict((k, z[k]) for k in z.files)
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise WeightsError(f"{path}: corrupt .npz weights ({e})") from None
    if ext == ".safetensors":
        return load_safetensors(path)
    if ext in (".pth", ".pt", ".pkl", ".ckpt", ".bin"):
        raise WeightsError(f"{path}: pickled checkpoints are not loaded (unsafe); save the state dict as .npz or .safetensors")
    raise WeightsError(f"{path}: unsupported weights format {ext or '(none)'}; use .npz or .safetensors")


def save_npz(path, state):
    """Save ``{name: array}`` atomically as .npz."""
    from .fileio import atomic_path

    buf = io.BytesIO()
    np.savez(buf, **state)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(buf.getvalue())
