"""Trained presets: published from runs, found by name or path, verified on every load."""
