"""Benchmarks and sweeps: jobs (TensorFlow-free) > records > reports; measure > child > Ray > sweep."""
