"""The zoo's distribution name and version, for records and exports (no other import here)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DIST_NAME = "keras-zoo"

try:
    __version__ = version(DIST_NAME)
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
