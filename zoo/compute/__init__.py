"""Where a run computes: the Keras backend, devices and precision, several processes, the local launcher."""
