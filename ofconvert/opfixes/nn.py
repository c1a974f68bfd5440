"""nn ops (see the package docstring)."""
