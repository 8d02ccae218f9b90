"""The ``zoo`` command line (Click): the group in app.py, a module per command group beside it."""

from .app import main

__all__ = ["main"]
