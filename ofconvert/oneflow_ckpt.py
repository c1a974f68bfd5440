"""OneFlow checkpoints, read without OneFlow and without running pickle code.

Two layouts:

* ``flow.save(obj, "ckpt")`` (OneFlow >= 0.8): a folder ``ckpt/`` (also when the
  name ends in ``.pth``) holding ``pickled_data`` (a pickle of
  ``{"protocol_version": 1, "data": obj}`` in which every tensor is a
  ``oneflow.Tensor`` / ``oneflow.nn.Parameter`` whose state is ``{"path": "tensor_N"}``)
  and one folder per tensor with ``meta`` (protobuf text: shape, data_type) and
  ``out`` (the raw little-endian bytes).
* the older snapshot layout (``flow.checkpoint.save`` / lazy jobs): one folder per
  variable, named after it, each with ``out`` and ``meta``, plus a
  ``snapshot_done`` marker.

``pickled_data`` is read by a restricted unpickler that knows only
``collections.OrderedDict`` and OneFlow's two tensor classes (as stand-ins that
record the path): any other global (``os.system``, ``builtins.eval``...) is
refused before it is resolved, so a crafted checkpoint cannot run code.
"""
import collections
import os
import pickle
import re

import numpy as np

from .errors import WeightsError

PICKLE_FILE = "pickled_data"
SNAPSHOT_DONE = "snapshot_done"
_DTYPES = {"kFloat": np.float32, "kDouble": np.float64, "kFloat16": np.float16, "kInt8": np.int8,
           "kInt32": np.int32, "kInt64": np.int64, "kUInt8": np.uint8, "kChar": np.int8, "kBool": np.bool_}
_TENSOR_CLASSES = {("oneflow", "Tensor"), ("oneflow.nn", "Parameter"), ("oneflow._oneflow_internal", "Tensor"),
                   ("oneflow.framework.tensor", "Tensor"), ("oneflow.nn.parameter", "Parameter")}
_STATE_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")


class _TensorRef:
    """What a pickled OneFlow tensor becomes here: the folder its data is in."""

    def __init__(self, *unused):
        self.path = None

    def __setstate__(self, state):
        if not (isinstance(state, dict) and isinstance(state.get("path"), str)):
            raise WeightsError("a tensor in pickled_data has no data folder (not written by flow.save to a folder)")
        self.path = state["path"]


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) in _TENSOR_CLASSES:
            return _TensorRef
        raise WeightsError(f"refusing to unpickle {module}.{name}: a OneFlow checkpoint holds only tensors "
                           f"and dicts (this file could run code)")

    def persistent_load(self, pid):
        raise WeightsError(f"unexpected persistent id {pid!r:.60} in a OneFlow checkpoint")


def is_checkpoint(path):
    """True for a ``flow.save`` folder, its ``pickled_data`` file, or a snapshot folder."""
    p = os.fspath(path)
    if os.path.isdir(p):
        return os.path.isfile(os.path.join(p, PICKLE_FILE)) or os.path.isfile(os.path.join(p, SNAPSHOT_DONE))
    return os.path.basename(p) == PICKLE_FILE and os.path.isfile(p)


def checkpoint_files(path):
    """Every file of the checkpoint at ``path`` (for a digest), sorted."""
    root = _root(path)
    out = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        out += [os.path.join(folder, f) for f in sorted(files)]
    return out


def _root(path):
    p = os.fspath(path)
    return os.path.dirname(p) if os.path.isfile(p) else p


def load_checkpoint(path):
    """A OneFlow checkpoint -> ``{name: np.ndarray}`` (its state dict)."""
    root = _root(path)
    if os.path.isfile(os.path.join(root, PICKLE_FILE)):
        return _load_pickled(root)
    if os.path.isfile(os.path.join(root, SNAPSHOT_DONE)):
        return _load_snapshot(root)
    raise WeightsError(f"{path}: not a OneFlow checkpoint (no {PICKLE_FILE} or {SNAPSHOT_DONE} inside)")


def probe_checkpoint(path):
    """Read what a checkpoint holds (names only; no tensor data): WeightsError now
    for a code payload, a foreign pickle or an empty snapshot."""
    root = _root(path)
    if os.path.isfile(os.path.join(root, PICKLE_FILE)):
        return list(_read_pickle(root))
    return list(_load_snapshot(root, data=False))


def _load_pickled(root):
    state = _read_pickle(root)
    return collections.OrderedDict((k, _read_tensor(os.path.join(root, v.path), k)) for k, v in state.items())


def _read_pickle(root):
    """``{name: _TensorRef}`` of a flow.save folder's pickled_data."""
    pk = os.path.join(root, PICKLE_FILE)
    try:
        with open(pk, "rb") as f:
            obj = _Unpickler(f).load()
    except WeightsError as e:
        raise WeightsError(f"{pk}: {e}") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError, IndexError, KeyError,
            ImportError) as e:
        raise WeightsError(f"{pk}: corrupt OneFlow checkpoint ({type(e).__name__}: {e})") from None
    except OSError as e:
        raise WeightsError(f"{pk}: cannot read ({e.strerror or e})") from None
    if not (isinstance(obj, dict) and "data" in obj and "protocol_version" in obj):
        raise WeightsError(f"{pk}: not written by flow.save (no protocol_version/data)")
    return _state_dict(obj["data"], pk)


def _state_dict(data, where):
    """The ``{name: tensor}`` mapping inside what was saved: the object itself or
    the first of ``state_dict``/``model``/... that is one."""
    def tensors_only(d):
        return isinstance(d, dict) and d and all(isinstance(v, _TensorRef) for v in d.values())

    if tensors_only(data):
        return data
    if isinstance(data, dict):
        for k in _STATE_KEYS:
            if tensors_only(data.get(k)):
                return data[k]
        flat = {k: v for k, v in data.items() if isinstance(v, _TensorRef)}
        if flat:
            return flat
    raise WeightsError(f"{where}: holds no state dict of tensors (saved {type(data).__name__}; "
                       f"save model.state_dict())")


def _load_snapshot(root, data=True):
    out = collections.OrderedDict()
    for name in sorted(os.listdir(root)):
        var = os.path.join(root, name)
        if os.path.isdir(var) and os.path.isfile(os.path.join(var, "out")):
            out[name] = _read_tensor(var, name) if data else var
    if not out:
        raise WeightsError(f"{root}: an empty OneFlow snapshot (no variable folders with an 'out' file)")
    return out


_DIM = re.compile(r"\bdim\s*:\s*(\d+)")
_DTYPE = re.compile(r"\bdata_type\s*:\s*(\w+)")


def _read_tensor(folder, name):
    """One tensor folder (``meta`` + ``out``) -> np.ndarray."""
    meta, data = os.path.join(folder, "meta"), os.path.join(folder, "out")
    try:
        with open(meta, encoding="utf-8") as f:
            text = f.read(1 << 16)
        size = os.path.getsize(data)
    except (OSError, UnicodeDecodeError) as e:
        raise WeightsError(f"tensor {name}: missing or unreadable {e.filename or meta} "
                           f"({getattr(e, 'strerror', None) or e})") from None
    m = _DTYPE.search(text)
    if m is None or m.group(1) not in _DTYPES:
        raise WeightsError(f"{meta}: tensor {name} has data type {m.group(1) if m else 'none'}, "
                           f"not one of {', '.join(_DTYPES)}")
    dtype = np.dtype(_DTYPES[m.group(1)])
    shape = tuple(int(d) for d in _DIM.findall(text))
    want = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size != want:
        raise WeightsError(f"{data}: tensor {name} holds {size} bytes, its meta says {want} "
                           f"(shape {shape}, {dtype.name}): truncated or corrupt")
    return np.fromfile(data, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape)


def map_names(state, wanted):
    """Snapshot variable names -> the module's state-dict keys where they map
    (``conv1-weight`` / ``conv1/weight`` -> ``conv1.weight``; a prefix every name
    shares, e.g. ``model.``, dropped). Names that map nowhere stay as they are."""
    wanted = set(wanted)
    if all(k in wanted for k in state):
        return state
    out = collections.OrderedDict()
    for k, v in state.items():
        out[k if k in wanted else re.sub(r"[-/]", ".", k)] = v
    if all(k in wanted for k in out):
        return out
    prefix = os.path.commonprefix(list(out))
    prefix = prefix[:prefix.rfind(".") + 1]
    if prefix and all(k[len(prefix):] in wanted for k in out):
        return collections.OrderedDict((k[len(prefix):], v) for k, v in out.items())
    return out
