"""Preset plugins: trained presets that installed packages ship in the entry-point group
``zoo.presets``.

``name = "package:folder"``: the preset folder ``folder`` inside the package ``package``,
shipped as package data. Found from metadata and the package's location alone: neither the
package nor TensorFlow is imported to list or read a preset.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ._discovery import ambiguous, canonical, entry_points
from ._errors import PluginError, UnknownModelError

PRESET_GROUP = "zoo.presets"


@dataclass(frozen=True)
class PresetEntry:
    name: str
    dist: str
    version: str
    value: str  # "package:folder"

    @property
    def qualified(self) -> str:
        return f"{self.dist}:{self.name}"

    def folder(self) -> Path:
        """Where the preset's files are, found without importing the package."""
        package, _, folder = self.value.partition(":")
        where = f"preset '{self.name}' ({self.dist} {self.version}, {self.value})"
        if not package or not folder:
            raise PluginError(f"{where}: an entry point of {PRESET_GROUP} is 'package:folder'")
        top, *rest = package.split(".")
        try:
            spec = importlib.util.find_spec(top)  # a top-level name: found, not imported
        except (ImportError, ValueError):
            spec = None
        locations = list(spec.submodule_search_locations or []) if spec else []
        for location in locations:
            path = Path(location, *rest, folder)
            if path.is_dir():
                return path
        raise PluginError(f"{where}: no folder {folder!r} in package {package!r}; reinstall {self.dist}")


def preset_entries() -> list[PresetEntry]:
    """Every preset that an installed distribution ships, sorted by name then distribution."""
    found = [PresetEntry(ep.name, dist, version, ep.value) for ep, dist, version in entry_points(PRESET_GROUP)]
    return sorted(found, key=lambda e: (e.name, canonical(e.dist)))


def find_preset_entry(name: str) -> PresetEntry | None:
    """The distribution's preset ``name`` (or ``dist:name``); None when no distribution ships
    one; two distributions shipping ``name`` is an error naming both."""
    entries = preset_entries()
    if ":" in name:
        dist, _, short = name.partition(":")
        matches = [e for e in entries if e.name == short and canonical(e.dist) == canonical(dist)]
        if not matches:
            raise UnknownModelError(f"no installed distribution {dist!r} ships a preset {short!r}")
    else:
        matches = [e for e in entries if e.name == name]
    if len(matches) > 1:
        raise ambiguous("preset", name, matches)
    return matches[0] if matches else None
