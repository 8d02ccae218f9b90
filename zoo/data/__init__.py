"""Datasets: sources (catalog, plugins, folders) > preparation > memory or streaming > cache.

Import the module you need (``zoo.data.pipeline``, ``zoo.data.images``, ...): this package
imports nothing, so the export's image ops come without TFDS."""
