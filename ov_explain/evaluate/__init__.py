"""Measures of maps and models: faithfulness metrics (ROAD, insertion / deletion, pointing game), the
randomised-head sanity check and the drift measures between two maps. Pure numpy on arrays and callables."""
