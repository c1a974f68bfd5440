"""reduce ops (see the package docstring)."""
