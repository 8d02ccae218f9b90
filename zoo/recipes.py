"""Recipe files: training settings and hyperparameters written down for a model, most often the
best trial of a study (``zoo tune``), and used with ``zoo train --recipe FILE`` and
``zoo bench --recipe FILE``.

A recipe file (JSON, format kind :data:`zoo.formats.RECIPE`) holds the model it is for, the
RunConfig fields a builder's own recipe may set (:data:`registry.RECIPE_KEYS`), the model's
hyperparameters, and where it came from (``tuning``: the study, its trials, the best trial's
validation accuracy and, measured once, its test accuracy). What the user gives on the command
line wins over the file, which wins over the builder's recipe. Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import registry

from . import formats
from .errors import ZooUsageError


@dataclass(frozen=True)
class Recipe:
    model: str
    options: Mapping[str, Any]  # RunConfig fields (registry.RECIPE_KEYS)
    hparams: Mapping[str, Any] = field(default_factory=dict)
    tuning: Mapping[str, Any] | None = None  # provenance: the study and trial it came from
    path: str | None = None  # where it was read from
    sha256: str | None = None  # of the file as read

    def record(self) -> dict[str, Any]:
        """What a run that used it records (config.json's ``recipe_file``) and a preset keeps."""
        return {"path": self.path, "sha256": self.sha256, "options": dict(self.options),
                "hparams": dict(self.hparams), "tuning": dict(self.tuning) if self.tuning else None}

    @classmethod
    def from_record(cls, model: str, record: Mapping[str, Any]) -> Recipe:
        """The recipe :meth:`record` describes (a bench job handed to the process that trains it)."""
        return cls(model=model, **record)


def read(path: str | os.PathLike, model: str | None = None) -> Recipe:
    """The recipe file at ``path``, checked: its fields known, and made for ``model`` if given."""
    path = Path(path)
    try:
        data = path.read_bytes()
        payload = formats.read(formats.RECIPE, json.loads(data), path)
        if not isinstance(payload, dict):
            raise TypeError(f"a JSON {type(payload).__name__}, not an object")
        _check_layout(path, payload)
        recipe = Recipe(
            model=str(payload["model"]), options=dict(payload.get("options") or {}),
            hparams=dict(payload.get("hparams") or {}), tuning=payload.get("tuning"),
            path=str(path.resolve()), sha256=hashlib.sha256(data).hexdigest(),
        )
    except FileNotFoundError:
        raise ZooUsageError(f"recipe file {path} does not exist") from None
    except IsADirectoryError:
        raise ZooUsageError(f"recipe file {path} is a folder, not a file") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ZooUsageError(f"{path} is not a zoo recipe file: {exc}") from None
    unknown = sorted(set(recipe.options) - set(registry.RECIPE_KEYS))
    if unknown:
        raise ZooUsageError(f"{path}: unknown recipe field {unknown[0]!r}; accepted: {', '.join(registry.RECIPE_KEYS)}")
    if model is not None and model.rpartition(":")[2] != recipe.model.rpartition(":")[2]:
        raise ZooUsageError(f"recipe file {path} is for model '{recipe.model}', not '{model}'")
    return recipe


LAYOUT = ("model", "options", "hparams", "tuning")  # a recipe file's keys (and its format version)


def _check_layout(path: Path, payload: Mapping[str, Any]) -> None:
    """A one-line usage error for a key a recipe file does not have: a training setting written
    beside ``options`` rather than in it would otherwise be dropped without a word."""
    unknown = sorted(set(payload) - set(LAYOUT))
    if not unknown:
        return
    where = ("put training settings under \"options\"" if unknown[0] in registry.RECIPE_KEYS
             else f"a recipe file holds {', '.join(LAYOUT)}")
    raise ZooUsageError(f"{path}: unknown key {unknown[0]!r} ({where}, as zoo tune writes them)")


def write(path: str | os.PathLike, recipe: Recipe) -> None:
    payload = {"model": recipe.model, "options": dict(recipe.options), "hparams": dict(recipe.hparams),
               "tuning": dict(recipe.tuning) if recipe.tuning else None}
    formats.write(formats.RECIPE, Path(path), payload)


def apply(recipe: Recipe, options: Mapping[str, Any], hparams: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``options`` and ``hparams`` with the recipe's values where the user gave none (None)."""
    merged = dict(options)
    for key, value in recipe.options.items():
        if merged.get(key) is None:
            merged[key] = value
    return merged, {**recipe.hparams, **hparams}
