"""A preset on disk: a folder holding trained weights, ``preset.json`` and a model card, and the
checks that make it safe to load. Nothing here imports TensorFlow: presets are listed, checked
and compared before it loads.

Preset folder::

    model.weights.h5   the weights (HDF5: arrays only, no pickle, no code)
    preset.json        format version, builder and hyperparameters, input contract, class names,
                       metrics, dataset identity, recipe and environment, SPDX license, parent
                       preset, and ``files``: the size and sha256 of every other file
    README.md          the model card, generated from preset.json

preset.json seals itself: ``record_sha256`` is the sha256 of the rest of the record (canonical
JSON), manifest included, so an edit of any field (classes, hyperparameters, a file's hash) is
caught like a changed file. A preset's **digest** is ``sha256:`` and that seal: one name for the
record and the exact bytes of every file; a fine-tuned preset records its parent's.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Any

from packaging.licenses import InvalidLicenseExpression, canonicalize_license_expression

from .. import files, formats
from ..errors import ZooError, ZooUsageError

PRESET_JSON, WEIGHTS, CARD = "preset.json", "model.weights.h5", "README.md"
SEAL = "record_sha256"
CACHE_ENV = "ZOO_CACHE_HOME"  # where the verified-hash cache lives (default: ~/.cache/keras-zoo)
_CHUNK = 1 << 20


class Preset:
    """A preset folder; ``record`` is its preset.json (read and checked once, lazily)."""

    def __init__(self, path: str | os.PathLike, name: str | None = None, origin: str = "") -> None:
        self.path = Path(path).expanduser().resolve()
        self.name = name or self.path.name
        self.origin = origin or str(self.path.parent)  # a search-path folder or "dist version"

    def __repr__(self) -> str:
        return f"Preset({self.name!r}, {str(self.path)!r})"

    @cached_property
    def record(self) -> dict[str, Any]:
        where = self.path / PRESET_JSON
        try:
            record = formats.load(formats.PRESET, where)
        except FileNotFoundError:
            raise ZooUsageError(f"{self.path} is not a preset (no {PRESET_JSON})") from None
        except (OSError, ValueError) as exc:
            raise ZooError(f"{where} is corrupted: {exc}") from None
        missing = [k for k in ("model", "input", "classes", "license", "files") if k not in record]
        if not isinstance(record, dict) or missing:
            raise ZooError(f"{where} is corrupted: no {', '.join(missing) or 'JSON object'}")
        return record

    @property
    def model(self) -> str:
        return self.record["model"]["name"]

    @property
    def hparams(self) -> dict[str, Any]:
        return dict(self.record["model"].get("hparams") or {})

    @property
    def class_names(self) -> list[str]:
        return list(self.record["classes"])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.record["input"]["shape"])

    @property
    def digest(self) -> str:
        return f"sha256:{self.record.get(SEAL)}"

    @property
    def size(self) -> int:
        return sum(int(f["size"]) for f in self.record["files"].values())

    def summary(self) -> dict[str, Any]:
        """One row of ``zoo list --presets``."""
        record = self.record
        metrics = record.get("metrics") or {}
        return {
            "name": self.name,
            "model": self.model,
            "dataset": (record.get("dataset") or {}).get("name"),
            "test_accuracy": metrics.get("test_accuracy"),
            "size": self.size,
            "license": record["license"],
            "origin": self.origin,
            "path": str(self.path),
        }

    def verify(self, *, rehash: bool = False) -> None:
        """Check every file of the manifest: present, and of its sha256. ``rehash``
        reads every byte again; otherwise a file unchanged since its last check on this machine
        (:func:`sha256`) is not read again. First, the record's own seal."""
        if self.record.get(SEAL) != seal(self.record)[SEAL]:
            raise ZooError(
                f"preset {self.name}: {self.path / PRESET_JSON} does not match its own checksum ({SEAL}): "
                f"it was edited since it was published; get the preset again"
            )
        for name, expected in self.record["files"].items():
            path = self.path / name
            if Path(name).is_absolute() or ".." in Path(name).parts:
                raise ZooError(f"preset {self.name}: its manifest names {name!r}, outside the preset")
            if not path.is_file():
                raise ZooError(f"preset {self.name}: {path} is missing")
            found = sha256(path, cached=not rehash)
            if found != expected["sha256"]:
                raise ZooError(
                    f"preset {self.name}: {path} does not match its manifest "
                    f"(sha256 {found}, preset.json says {expected['sha256']}): "
                    f"the file changed since it was published; get the preset again"
                )


def seal(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with its ``record_sha256``: the sha256 of the rest of it as canonical JSON."""
    rest = {k: v for k, v in record.items() if k not in (SEAL, formats.FIELD)}
    text = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return {**rest, SEAL: hashlib.sha256(text.encode()).hexdigest()}


def manifest(folder: Path, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``{name: {size, sha256}}`` of the files ``names`` in ``folder``."""
    return {
        name: {"size": (folder / name).stat().st_size, "sha256": sha256(folder / name, cached=False)}
        for name in sorted(names)
    }


def sha256(path: Path, *, cached: bool = True) -> str:
    """The file's sha256; with ``cached``, taken from the last hash of the same file on this
    machine when there is one: same path, inode, size, mtime and ctime (a write, or an mtime put
    back with ``touch``, changes the ctime, which no program can set)."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_ino}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ctime_ns}"
    cache = _cache() if cached else {}
    if key in cache:
        return cache[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    value = h.hexdigest()
    _remember(key, value)
    return value


def _cache_file() -> Path:
    home = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "keras-zoo"
    )
    return Path(home) / "verified-files.json"


def _cache() -> dict[str, str]:
    try:
        found = json.loads(_cache_file().read_text())
        return found if isinstance(found, dict) else {}
    except (OSError, ValueError):
        return {}


def _remember(key: str, value: str) -> None:
    """Add a hash to the cache; a cache that cannot be written only costs a re-hash next time."""
    path = _cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with files.locked(path.with_suffix(".lock")):
            cache = _cache()
            cache[key] = value
            files.write_json(path, dict(list(cache.items())[-2000:]))
    except OSError:
        pass


def check_license(text: str) -> str:
    """The canonical SPDX expression for ``text`` (``apache-2.0`` -> ``Apache-2.0``), or a
    one-line usage error: a preset's license must be one that tools can read."""
    try:
        return canonicalize_license_expression(str(text))
    except InvalidLicenseExpression:
        raise ZooUsageError(
            f"--license {text!r} is not an SPDX license expression (for example Apache-2.0, MIT, "
            f"CC-BY-4.0 or 'MIT OR Apache-2.0'; see https://spdx.org/licenses/)"
        ) from None
