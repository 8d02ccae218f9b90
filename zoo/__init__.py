"""A plugin model zoo for Keras 3: register builders, train, benchmark and export them."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("keras-zoo")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

DIST_NAME = "keras-zoo"
