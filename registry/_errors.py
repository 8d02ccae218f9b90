"""Errors raised by the registry. Each message is one line that names the culprit."""

from __future__ import annotations


class RegistryError(Exception):
    """Base class for every error the registry raises."""


class UnknownModelError(RegistryError, LookupError):
    """No installed distribution registers the requested name."""


class AmbiguousModelError(RegistryError, LookupError):
    """Two or more distributions register the requested name."""


class PluginError(RegistryError):
    """A plugin could not be imported, or is not a valid builder.

    ``details`` holds the full traceback (or the full explanation) for ``zoo info``.
    """

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details or message


class HyperparameterError(RegistryError, ValueError):
    """A hyperparameter key or value does not fit the builder's signature."""
