"""shape ops (see the package docstring)."""
