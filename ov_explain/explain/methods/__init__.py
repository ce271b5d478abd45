"""One module per explanation method; :mod:`ov_explain.explain.registry` lists them."""
