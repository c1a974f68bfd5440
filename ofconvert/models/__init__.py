"""OneFlow model definitions not in flowvision (imports oneflow: load lazily)."""
