"""Exports for serving: a version folder of every format asked for (:mod:`.bundle`), one module
per format. Importing this package loads nothing (TensorFlow loads with a format's module)."""
