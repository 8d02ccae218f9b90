"""Plugin discovery for the zoo: builders registered in the entry-point group ``zoo.models``,
TFDS dataset builders in ``zoo.datasets`` and trained presets in ``zoo.presets``.

Listing reads installed metadata only; a plugin is imported when :func:`get` asks for it, so a
broken or slow plugin costs nothing until it is used and never breaks the others.
"""

from ._builder import RECIPE_KEYS, Builder, Hyperparameter, validate
from ._datasets import DATASET_GROUP, DatasetEntry, dataset_entries, find_dataset
from ._discovery import GROUP, LOCAL, Entry, entries, find, get, register, resolve, selector
from ._errors import (
    AmbiguousModelError,
    HyperparameterError,
    PluginError,
    RegistryError,
    UnknownModelError,
)
from ._hparams import from_text as parse_value
from ._hparams import show as show_value
from ._presets import PRESET_GROUP, PresetEntry, find_preset_entry, preset_entries

__all__ = [
    "DATASET_GROUP",
    "GROUP",
    "LOCAL",
    "PRESET_GROUP",
    "RECIPE_KEYS",
    "AmbiguousModelError",
    "Builder",
    "DatasetEntry",
    "Entry",
    "HyperparameterError",
    "Hyperparameter",
    "PluginError",
    "PresetEntry",
    "RegistryError",
    "UnknownModelError",
    "dataset_entries",
    "entries",
    "find",
    "find_dataset",
    "parse_value",
    "find_preset_entry",
    "get",
    "preset_entries",
    "register",
    "resolve",
    "selector",
    "show_value",
    "validate",
]
