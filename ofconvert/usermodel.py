"""The user's own model code: ``path/to/file.py:Name`` or ``package.module:Name``.

``Name`` is a ``oneflow.nn.Module`` class or a factory returning one; its
arguments come from ``--model-args`` (a JSON object or ``k=v`` pairs). The
per-sample input shape is ``--input-shape`` or, when the class / factory (or the
built module) has one, its ``input_shape`` attribute or timm-style
``default_cfg["input_size"]`` (``default_cfg`` may also carry ``mean``, ``std``,
``crop_pct``, ``interpolation``).

The user's code is imported like ``python file.py`` would see it: the file's
folder (or the current folder, for ``package.module``) is importable while it
is imported, so sibling modules resolve. Every failure (no such file, an
import that raises, no such name, a constructor that raises, something that is
not a Module) is one ``ModelNotFoundError`` naming the file and the error.
"""
import dataclasses
import importlib
import importlib.util
import json
import os
import re
import sys

from .errors import ModelNotFoundError, OfconvertError, first_line

_SPEC = re.compile(r"^(?P<where>.+?):(?P<name>[A-Za-z_][A-Za-z0-9_]*)$")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclasses.dataclass(frozen=True)
class UserSpec:
    where: str          # a .py path or a dotted module name
    name: str           # class or factory
    is_file: bool

    @property
    def stem(self):
        """The artefact stem: ``MyNet`` for ``my_net.py:MyNet``."""
        return self.name


def is_user_spec(name):
    """``file.py:Name`` or ``pkg.mod:Name`` (not ``flowvision:NAME``)."""
    if not isinstance(name, str) or name.startswith("flowvision:"):
        return False
    m = _SPEC.match(name)
    return bool(m) and (m["where"].endswith(".py") or bool(_MODULE.match(m["where"])))


def parse_spec(name):
    m = _SPEC.match(name or "")
    if not m:
        raise ModelNotFoundError(f"model {name!r}: expected path/to/file.py:Name or package.module:Name")
    where = m["where"]
    return UserSpec(where, m["name"], where.endswith(".py"))


def parse_model_args(args):
    """``--model-args``: a dict, a JSON object, or ``k=v`` pairs (comma or space
    separated; values read as JSON when they parse, else as strings)."""
    if args is None or isinstance(args, dict):
        return dict(args or {})
    if not isinstance(args, str):
        raise OfconvertError(f"--model-args must be a JSON object or k=v pairs, got {type(args).__name__}")
    text = args.strip()
    if text.startswith("{"):
        try:
            out = json.loads(text)
        except ValueError as e:
            raise OfconvertError(f"--model-args: not valid JSON ({e})") from None
        if not isinstance(out, dict):
            raise OfconvertError("--model-args: the JSON must be an object of keyword arguments")
        return out
    out = {}
    for pair in (p for p in re.split(r"[,\s]+", text) if p):
        k, eq, v = pair.partition("=")
        if not eq or not k.isidentifier():
            raise OfconvertError(f"--model-args: {pair!r} is not k=v (e.g. --model-args num_classes=10,width=32 "
                                 f"or a JSON object)")
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def _import(spec):
    """The module object the spec points into."""
    if spec.is_file:
        path = os.path.abspath(spec.where)
        if not os.path.isfile(path):
            raise ModelNotFoundError(f"model file not found: {spec.where}")
        mod_name = "ofconvert_user_" + re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
        if mod_name in sys.modules and getattr(sys.modules[mod_name], "__file__", None) == path:
            return sys.modules[mod_name]
        with _importable(os.path.dirname(path)):
            loader_spec = importlib.util.spec_from_file_location(mod_name, path)
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[mod_name] = module
            try:
                loader_spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(mod_name, None)
                raise
        return module
    with _importable(os.getcwd()):
        return importlib.import_module(spec.where)


class _importable:
    """``folder`` first on the import path while the user's code imports."""

    def __init__(self, folder):
        self.folder = folder

    def __enter__(self):
        self.added = self.folder not in sys.path
        if self.added:
            sys.path[:0] = [self.folder]

    def __exit__(self, *exc):
        if self.added and self.folder in sys.path:
            sys.path.remove(self.folder)


def resolve(name):
    """The class or factory ``name`` points to."""
    from ._oneflow import import_oneflow

    spec = parse_spec(name)
    where = spec.where
    import_oneflow()   # quietly, before the user's code imports it
    try:
        module = _import(spec)
    except ModelNotFoundError:
        raise
    except ModuleNotFoundError as e:
        raise ModelNotFoundError(f"cannot import {where}: {e}") from None
    except KeyboardInterrupt:
        raise
    except BaseException as e:   # the user's code: any exception (SystemExit too) is theirs
        raise ModelNotFoundError(f"importing {where} failed: {type(e).__name__}: {first_line(e)}") from None
    obj = getattr(module, spec.name, None)
    if obj is None:
        names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        raise ModelNotFoundError(f"{where} has no {spec.name!r} "
                                 f"(it defines: {', '.join(names[:8]) or 'nothing callable'})")
    if not callable(obj):
        raise ModelNotFoundError(f"{where}:{spec.name} is a {type(obj).__name__}, not a Module class or factory")
    return obj


def build(name, model_args=None):
    """``name`` built with ``model_args`` -> a ``oneflow.nn.Module``."""
    from ._oneflow import import_oneflow

    flow = import_oneflow()
    obj = resolve(name)
    kwargs = parse_model_args(model_args)
    try:
        module = obj(**kwargs)
    except KeyboardInterrupt:
        raise
    except BaseException as e:
        raise ModelNotFoundError(f"{name}({_kw(kwargs)}) failed: {type(e).__name__}: {first_line(e)}") from None
    if not isinstance(module, flow.nn.Module):
        raise ModelNotFoundError(f"{name}({_kw(kwargs)}) returned a {type(module).__name__}, not a oneflow.nn.Module")
    return module


def declared_config(obj):
    """``(input_shape or None, preprocessing overrides)`` from an ``input_shape`` or
    ``default_cfg`` attribute of a class, factory or module."""
    cfg = getattr(obj, "default_cfg", None)
    shape = getattr(obj, "input_shape", None)
    extra = {}
    if isinstance(cfg, dict):
        shape = shape if shape is not None else cfg.get("input_size")
        extra = {k: cfg[k] for k in ("mean", "std", "crop_pct", "interpolation") if k in cfg}
    if shape is not None:
        try:
            shape = tuple(int(d) for d in shape)
        except (TypeError, ValueError):
            raise ModelNotFoundError(f"{getattr(obj, '__name__', type(obj).__name__)}.input_shape must be a tuple "
                                     f"of ints like (3, 224, 224), got {shape!r}") from None
    return shape, extra


def source_digest(name):
    """``(absolute path, sha256)`` of a ``file.py`` spec's source file, or of the
    imported module's file; ``(None, None)`` when it has none."""
    from .fileio import sha256_file

    spec = parse_spec(name)
    path = os.path.abspath(spec.where) if spec.is_file else getattr(sys.modules.get(spec.where), "__file__", None)
    if not path or not os.path.isfile(path):
        return None, None
    return path, sha256_file(path)


def _kw(kwargs):
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
