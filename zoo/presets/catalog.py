"""Finding presets, never downloading them: by path, by name in the search path, or shipped by an
installed package (entry-point group ``zoo.presets``). Nothing here imports TensorFlow.

A name (``cnn.mnist``, or ``dist:cnn.mnist`` for one package's) is looked up first in the
folders of ``ZOO_PRESETS_PATH`` (colon-separated, read-only is fine: a team shares one), in
order, then among the presets of installed packages. The first holder of a name wins; the others
are *shadowed*, which ``zoo list --presets`` shows.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path

import registry

from .. import formats
from ..errors import ZooError, ZooUsageError
from .store import PRESET_JSON, Preset

SEARCH_ENV = "ZOO_PRESETS_PATH"


@dataclass(frozen=True)
class Found:
    preset: Preset
    shadowed_by: Preset | None = None  # the preset of the same name that wins over this one


def search_path() -> list[Path]:
    """The folders of ``ZOO_PRESETS_PATH``, in order (empty entries skipped)."""
    return [Path(p).expanduser() for p in os.environ.get(SEARCH_ENV, "").split(os.pathsep) if p.strip()]


def _in_folders() -> list[Preset]:
    found = []
    for folder in search_path():
        if folder.is_dir():
            found += [Preset(p.parent, origin=str(folder)) for p in sorted(folder.glob(f"*/{PRESET_JSON}"))]
    return found


def _in_packages() -> list[Preset]:
    entries = registry.preset_entries()
    twins = {e.name for e in entries if sum(f.name == e.name for f in entries) > 1}
    found = []
    for e in entries:
        try:
            folder = e.folder()
        except registry.PluginError:
            continue  # its folder is missing: a use of the name says so, in one line
        name = e.qualified if e.name in twins else e.name
        found.append(Preset(folder, name=name, origin=f"{e.dist} {e.version}"))
    return found


def everything() -> list[Found]:
    """Every preset that can be found, each with the preset that shadows it (if one does)."""
    winners: dict[str, Preset] = {}
    result = []
    for preset in [*_in_folders(), *_in_packages()]:
        winner = winners.setdefault(preset.name, preset)
        result.append(Found(preset, None if winner is preset else winner))
    return result


def listing(pattern: str | None = None) -> list[dict]:
    """``zoo list --presets``'s rows (Preset.summary and ``shadowed_by``), names matching the
    shell-style ``pattern``; a preset whose preset.json cannot be read is a row with ``error``."""
    rows = []
    for found in everything():
        p = found.preset
        if pattern and not fnmatch.fnmatchcase(p.name, pattern):
            continue
        try:
            row = p.summary()
        except ZooError as exc:
            row = {"name": p.name, "origin": p.origin, "path": str(p.path), "error": str(exc)}
        row["shadowed_by"] = str(found.shadowed_by.path) if found.shadowed_by else None
        rows.append(row)
    return rows


def looks_like_path(text: str) -> bool:
    return os.sep in text or text.startswith((".", "~")) or Path(text).expanduser().exists()


def find(text: str | os.PathLike) -> Preset:
    """The preset that ``text`` means (a path, a name or ``dist:name``), or a one-line error."""
    text = os.fspath(text)
    if looks_like_path(text):
        return at(Path(text))
    for folder in search_path():
        if (folder / text / PRESET_JSON).is_file():
            return Preset(folder / text, name=text, origin=str(folder))
    try:
        entry = registry.find_preset_entry(text)
        if entry is not None:
            return Preset(entry.folder(), name=text, origin=f"{entry.dist} {entry.version}")
    except (registry.UnknownModelError, registry.AmbiguousModelError) as exc:
        raise ZooUsageError(str(exc)) from None
    except registry.PluginError as exc:  # a package whose preset folder is not there
        raise ZooError(str(exc)) from None
    names = sorted({f.preset.name for f in everything()})
    close = difflib.get_close_matches(text, names, n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else " Run 'zoo list --presets' to see them."
    raise ZooUsageError(f"unknown preset '{text}'.{hint}")


def named(text: str | os.PathLike) -> Preset | None:
    """The preset an argument that takes a run directory or a preset names (``zoo evaluate``,
    ``zoo export``, ``zoo predict``), or None when it names a folder or ``latest`` (which the
    run's or export's own checks then open, with their errors)."""
    text = os.fspath(text)
    path = Path(text).expanduser()
    if (path / PRESET_JSON).is_file():
        return at(path)
    if text == "latest" or os.sep in text or path.exists():  # runs.LATEST, a layer above
        return None
    try:
        return find(text)
    except ZooUsageError as exc:
        if not str(exc).startswith("unknown preset"):
            raise
        hint = str(exc).partition(f"'{text}'.")[2].strip()
        raise ZooUsageError(f"{text} is neither a run directory (no such folder) nor a preset. {hint}") from None


def at(path: Path) -> Preset:
    """The preset in folder ``path``, or a one-line error saying what the folder is instead."""
    path = path.expanduser()
    if (path / PRESET_JSON).is_file():
        return Preset(path)
    if (path / formats.RUN_CONFIG).is_file():  # a run's config.json
        raise ZooUsageError(
            f"{path} is a run directory, not a preset: publish it first "
            f"(zoo publish {path} PRESETS_FOLDER --license SPDX-ID)"
        )
    what = "no such folder" if not path.exists() else f"no {PRESET_JSON}"
    raise ZooUsageError(f"{path} is not a preset ({what})")
