"""The built-in models' trained presets (package data, one folder each; entry-point group
zoo.presets in setup.cfg). Made by scripts/make_presets.py with `zoo publish`; never edited by hand."""
