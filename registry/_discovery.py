"""Find builders through entry points without importing them; import one only when it is used."""

from __future__ import annotations

import difflib
import fnmatch
import importlib.metadata as metadata
import re
import traceback
from dataclasses import dataclass, field

from ._builder import Builder, validate
from ._errors import AmbiguousModelError, PluginError, UnknownModelError
from ._static import inspect_entry

GROUP = "zoo.models"


def canonical(dist: str) -> str:
    """PEP 503 normalisation, so ``My_Plugin`` and ``my-plugin`` name one distribution."""
    return re.sub(r"[-_.]+", "-", dist).lower()


@dataclass(frozen=True)
class Entry:
    """One ``zoo.models`` entry point: known from metadata alone, nothing imported."""

    name: str
    dist: str
    version: str
    value: str  # "module:attribute"
    _ep: metadata.EntryPoint = field(compare=False, repr=False)

    @property
    def qualified(self) -> str:
        return f"{self.dist}:{self.name}"

    @property
    def summary(self) -> str:
        """First docstring line, read from the source file with ``ast`` (no import)."""
        return inspect_entry(self.value).summary

    @property
    def problem(self) -> str:
        """Why the plugin cannot work, as far as its source shows ("" if nothing). No import."""
        return inspect_entry(self.value).problem

    def load(self, shown_name: str | None = None) -> Builder:
        """Import the plugin and validate it; any failure becomes a PluginError."""
        shown = shown_name or self.name
        try:
            obj = self._ep.load()
        except (Exception, SystemExit) as exc:  # a plugin must never take the zoo down
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise PluginError(
                f"model '{shown}' ({self.dist} {self.version}, {self.value}) failed to import: "
                f"{type(exc).__name__}: {first_line}".rstrip(": "),
                details="".join(traceback.format_exception(exc)),
            ) from exc
        return validate(shown, obj)


def entries() -> list[Entry]:
    """Every registered model, sorted by name then distribution."""
    seen: set[str] = set()
    found = []
    for dist in metadata.distributions():
        dist_name = dist.metadata["Name"] or "unknown"
        # The first distribution of a name on sys.path is the one Python imports; skip shadows.
        if canonical(dist_name) in seen:
            continue
        seen.add(canonical(dist_name))
        for ep in dist.entry_points:
            if ep.group == GROUP:
                found.append(Entry(ep.name, dist_name, dist.version or "", ep.value, ep))
    return sorted(found, key=lambda e: (e.name, canonical(e.dist)))


def find(pattern: str | None = None) -> list[Entry]:
    """Entries whose name or ``dist:name`` matches a shell-style pattern (all without one)."""
    all_entries = entries()
    if not pattern:
        return all_entries
    return [
        e
        for e in all_entries
        if fnmatch.fnmatchcase(e.name, pattern) or fnmatch.fnmatchcase(e.qualified, pattern)
    ]


def selector(entry: Entry, all_entries: list[Entry]) -> str:
    """The name that selects ``entry``: ``dist:name`` where another distribution claims it too."""
    twins = sum(e.name == entry.name for e in all_entries)
    return entry.qualified if twins > 1 else entry.name


def resolve(name: str) -> Entry:
    """``name`` or ``dist:name`` -> the one entry it means, or a one-line error."""
    all_entries = entries()
    if ":" in name:
        dist, _, model = name.partition(":")
        matches = [e for e in all_entries if e.name == model and canonical(e.dist) == canonical(dist)]
    else:
        matches = [e for e in all_entries if e.name == name]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        owners = ", ".join(f"{e.dist} {e.version}" for e in matches)
        choices = " or ".join(f"'{e.qualified}'" for e in matches)
        raise AmbiguousModelError(
            f"model '{name}' is registered by {len(matches)} distributions ({owners}); "
            f"choose one with {choices}"
        )
    names = sorted({e.name for e in all_entries} | {e.qualified for e in all_entries})
    close = difflib.get_close_matches(name, names, n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else " Run 'zoo list' to see them."
    raise UnknownModelError(f"unknown model '{name}'.{hint}")


def get(name: str) -> Builder:
    """The validated builder for ``name`` (or ``dist:name``)."""
    return resolve(name).load(shown_name=name)
