"""RunConfig: every setting of one training run, validated once, stored as config.json."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ZooError, ZooUsageError

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine")

# Used where neither the user nor the builder's recipe says otherwise.
DEFAULTS: dict[str, Any] = {
    "epochs": 10,
    "batch_size": 128,
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "schedule": "constant",
    "label_smoothing": 0.0,
    "augment": False,
}


@dataclass(frozen=True)
class RunConfig:
    model: str
    hparams: Mapping[str, Any] = field(default_factory=dict)
    dataset: str = "mnist"
    val_split: float = 0.1
    epochs: int = DEFAULTS["epochs"]
    batch_size: int = DEFAULTS["batch_size"]
    optimizer: str = DEFAULTS["optimizer"]
    learning_rate: float = DEFAULTS["learning_rate"]
    schedule: str = DEFAULTS["schedule"]
    label_smoothing: float = DEFAULTS["label_smoothing"]
    augment: bool = DEFAULTS["augment"]
    seed: int = 0
    deterministic: bool = True
    data_dir: str | None = None
    manual_dir: str | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"--epochs must be at least 1, received {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, received {self.batch_size}"),
            (
                0.0 < self.val_split < 1.0,
                f"--val-split must be between 0 and 1 (exclusive), received {self.val_split}",
            ),
            (
                math.isfinite(self.learning_rate) and self.learning_rate > 0,
                f"--learning-rate must be a positive number, received {self.learning_rate}",
            ),
            (
                0.0 <= self.label_smoothing < 1.0,
                f"label_smoothing must be in [0, 1), received {self.label_smoothing}",
            ),
            (
                self.optimizer in OPTIMIZERS,
                f"unknown optimizer '{self.optimizer}'; choose one of {', '.join(OPTIMIZERS)}",
            ),
            (
                self.schedule in SCHEDULES,
                f"unknown schedule '{self.schedule}'; choose one of {', '.join(SCHEDULES)}",
            ),
            (self.seed >= 0, f"--seed must be 0 or more, received {self.seed}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ZooUsageError(message)

    @classmethod
    def from_recipe(
        cls, model: str, recipe: Mapping[str, Any], overrides: Mapping[str, Any]
    ) -> RunConfig:
        """Command-line values win over the builder's recipe, which wins over DEFAULTS."""
        values = {k: v for k, v in overrides.items() if v is not None}
        for key, default in DEFAULTS.items():
            values.setdefault(key, recipe.get(key, default))
        return cls(model=model, **values)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hparams"] = dict(self.hparams)
        return d

    @classmethod
    def read(cls, path: Path) -> RunConfig:
        """Read the ``config`` block of a run's config.json, with a one-line error if it is bad."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))["config"]
            names = {f.name for f in dataclasses.fields(cls)}
            return cls(**{k: v for k, v in raw.items() if k in names})
        except FileNotFoundError:
            raise ZooUsageError(f"{path.parent} is not a run directory (no config.json)") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ZooError(f"{path} is corrupted or not a zoo config: {exc}") from None
