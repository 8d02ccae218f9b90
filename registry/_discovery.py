"""Find builders through entry points without importing them; import one only when it is used."""

from __future__ import annotations

import difflib
import fnmatch
import importlib.metadata as metadata
import inspect
import re
import traceback
from dataclasses import dataclass, field
from typing import Any

from ._builder import Builder, validate
from ._errors import AmbiguousModelError, PluginError, UnknownModelError
from ._static import inspect_entry

GROUP = "zoo.models"


def canonical(dist: str) -> str:
    """PEP 503 normalisation, so ``My_Plugin`` and ``my-plugin`` name one distribution."""
    return re.sub(r"[-_.]+", "-", dist).lower()


# The "distribution" of builders registered in the running process (zoo.register).
LOCAL = "local"


@dataclass(frozen=True)
class Entry:
    """One registered model: a ``zoo.models`` entry point, known from metadata alone with
    nothing imported, or a builder registered in this process (``obj`` set, ``dist`` LOCAL)."""

    name: str
    dist: str
    version: str
    value: str  # "module:attribute"
    _ep: metadata.EntryPoint | None = field(default=None, compare=False, repr=False)
    obj: Any = field(default=None, compare=False, repr=False)

    @property
    def qualified(self) -> str:
        return f"{self.dist}:{self.name}"

    @property
    def local(self) -> bool:
        return self.obj is not None

    @property
    def summary(self) -> str:
        """First docstring line, read from the source file with ``ast`` (no import)."""
        if self.local:
            doc = (inspect.getdoc(self.obj) or "").strip()
            return doc.splitlines()[0] if doc else ""
        return inspect_entry(self.value).summary

    @property
    def problem(self) -> str:
        """Why the plugin cannot work, as far as its source shows ("" if nothing). No import."""
        return "" if self.local else inspect_entry(self.value).problem

    def load(self, shown_name: str | None = None) -> Builder:
        """Import the plugin and validate it; any failure becomes a PluginError."""
        shown = shown_name or self.name
        if self.local:
            return validate(shown, self.obj)
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


def entry_points(group: str) -> list[tuple[metadata.EntryPoint, str, str]]:
    """``(entry point, distribution, version)`` of every installed entry point in ``group``."""
    seen: set[str] = set()
    found = []
    for dist in metadata.distributions():
        dist_name = dist.metadata["Name"] or "unknown"
        # The first distribution of a name on sys.path is the one Python imports; skip shadows.
        if canonical(dist_name) in seen:
            continue
        seen.add(canonical(dist_name))
        found += [(ep, dist_name, dist.version or "") for ep in dist.entry_points if ep.group == group]
    return found


def entries() -> list[Entry]:
    """Every registered model, sorted by name then distribution."""
    found = [Entry(ep.name, dist, version, ep.value, ep) for ep, dist, version in entry_points(GROUP)]
    return sorted([*found, *_LOCAL.values()], key=lambda e: (e.name, canonical(e.dist)))


_LOCAL: dict[str, Entry] = {}
LOCAL_NAME = re.compile(r"\w[\w.-]*")  # the name a builder registered in a process goes by (and its runs' folders)


def register(obj: Any, name: str | None = None) -> Entry:
    """Register a builder defined in this process (a notebook cell) under ``name``.

    It must satisfy the same contract as an entry-point plugin. A name an installed distribution
    already registers is refused at once, naming it; registering a local name again replaces it
    (a notebook cell run twice).
    """
    if not callable(obj):
        raise PluginError(f"cannot register {obj!r}: a builder is a function (or other callable) that returns a "
                          f"keras.Model; a registered model is given by its name, a string")
    name = getattr(obj, "__name__", "") if name is None else name
    if not isinstance(name, str) or not LOCAL_NAME.fullmatch(name):
        raise PluginError(
            f"cannot register {obj!r} as {name!r}: give it a name of letters, digits, '.', '_' and '-', "
            f"e.g. register(name='mynet')"
        )
    validate(name, obj)
    owners = [e for e in entries() if e.name == name and not e.local]
    if owners:
        taken = ", ".join(f"{e.dist} {e.version}" for e in owners)
        raise AmbiguousModelError(
            f"model '{name}' is already registered by {taken}; register yours under another "
            f"name (register(name=...)) or use the installed one as '{owners[0].qualified}'"
        )
    module = getattr(obj, "__module__", None) or "__main__"
    entry = Entry(name, LOCAL, "", f"{module}:{getattr(obj, '__qualname__', name)}", obj=obj)
    _LOCAL[name] = entry
    return entry


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
        raise ambiguous("model", name, matches)
    names = sorted({e.name for e in all_entries} | {e.qualified for e in all_entries})
    close = difflib.get_close_matches(name, names, n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else " Run 'zoo list' to see them."
    raise UnknownModelError(f"unknown model '{name}'.{hint}")


def ambiguous(kind: str, name: str, matches: list[Any]) -> AmbiguousModelError:
    """Two distributions claim ``name``: neither is picked silently; the error names both."""
    owners = ", ".join(f"{e.dist} {e.version}" for e in matches)
    choices = " or ".join(f"'{e.dist}:{e.name}'" for e in matches)
    return AmbiguousModelError(
        f"{kind} '{name}' is registered by {len(matches)} distributions ({owners}); "
        f"choose one with {choices}"
    )


def get(name: str) -> Builder:
    """The validated builder for ``name`` (or ``dist:name``)."""
    return resolve(name).load(shown_name=name)
