"""Dataset plugins: TFDS builders registered in the entry-point group ``zoo.datasets``.

``name = "module:BuilderClass"``, a ``tfds.core.DatasetBuilder`` subclass (a
``GeneratorBasedBuilder`` usually). As for models, listing reads installed metadata and the
source only; a plugin's module is imported when a run names its dataset, and one that fails to
import fails that run in one line and nothing else.
"""

from __future__ import annotations

import importlib.metadata as metadata
import traceback
from dataclasses import dataclass, field
from typing import Any

from ._discovery import ambiguous, canonical, entry_points
from ._errors import PluginError
from ._static import inspect_entry

DATASET_GROUP = "zoo.datasets"


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    dist: str
    version: str
    value: str  # "module:BuilderClass"
    _ep: metadata.EntryPoint | None = field(default=None, compare=False, repr=False)

    @property
    def summary(self) -> str:
        return inspect_entry(self.value).summary

    @property
    def problem(self) -> str:
        return inspect_entry(self.value).problem

    def record(self) -> dict[str, Any]:
        """Provenance for a run's config.json: which package made the examples."""
        return {"kind": "plugin", "distribution": self.dist, "version": self.version, "entry_point": self.value}

    def load(self) -> type:
        """Import the builder class; any failure becomes a one-line PluginError."""
        where = f"dataset '{self.name}' ({self.dist} {self.version}, {self.value})"
        try:
            obj = self._ep.load()
        except (Exception, SystemExit) as exc:  # a plugin must never take the zoo down
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise PluginError(
                f"{where} failed to import: {type(exc).__name__}: {first_line}".rstrip(": "),
                details="".join(traceback.format_exception(exc)),
            ) from exc
        # Duck-typed: the registry does not import TensorFlow Datasets.
        if not isinstance(obj, type) or not hasattr(obj, "download_and_prepare"):
            raise PluginError(f"{where} is {obj!r}, not a TFDS dataset builder class")
        return obj


def dataset_entries() -> list[DatasetEntry]:
    """Every registered dataset plugin, sorted by name then distribution."""
    found = [DatasetEntry(ep.name, dist, version, ep.value, ep) for ep, dist, version in entry_points(DATASET_GROUP)]
    return sorted(found, key=lambda e: (e.name, canonical(e.dist)))


def find_dataset(name: str) -> DatasetEntry | None:
    """The plugin registering dataset ``name`` (or ``dist:name``); None when no plugin does."""
    dist, _, short = name.rpartition(":") if ":" in name else ("", "", name)
    matches = [
        e for e in dataset_entries()
        if e.name == short and (not dist or canonical(e.dist) == canonical(dist))
    ]
    if len(matches) > 1:
        raise ambiguous("dataset", name, matches)
    return matches[0] if matches else None
