"""activation ops (see the package docstring)."""
