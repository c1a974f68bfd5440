"""Lazy public names for a package: ``name -> module`` loaded on first use, so that
``import ofconvert`` or ``ofconvert bench --help`` loads no numpy, onnx or OneFlow."""
import importlib


def lazy_getattr(package, table, namespace):
    """A module ``__getattr__`` resolving ``table[name]`` (a module path relative to
    ``package``) on first access and caching the value in ``namespace``."""

    def __getattr__(name):
        mod = table.get(name)
        if mod is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(mod, package), name)
        namespace[name] = value
        return value

    return __getattr__
