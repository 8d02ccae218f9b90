"""``zoo tune`` resolved once: the model, the fixed settings, the space (every range checked), the
budget, the study and its storage. What executes (:mod:`zoo.tuning.run`) takes this and checks
nothing again."""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import registry

from .. import files, plan
from ..config import RunConfig
from ..errors import ZooUsageError
from . import space as space_lib
from . import study as study_lib

# Settings that change what a trial learns; the others say where and how it computes.
LEARNING = ("epochs", "val_split", "seed", "deterministic", "augment", "batch_size", "optimizer",
            "learning_rate", "schedule", "label_smoothing", "image_size", "channels", "init", "freeze")


@dataclass(frozen=True)
class TuneRequest:
    model: str
    builder: registry.Builder
    dataset: str
    options: Mapping[str, Any]  # RunConfig options every trial trains with (None: the recipe's)
    space: tuple[space_lib.Dimension, ...]
    trials: int  # the study's budget of finished trials
    out: Path
    storage: str | None  # None: Optuna's journal file in ``out``
    study: str
    seed: int  # the sampler's, and every trial's training seed
    pruner: str
    epochs: int
    worker: str | None = None  # "I/N" of --shard: this worker's label
    settings: Mapping[str, Any] = field(default_factory=dict)  # LEARNING as the trials train with them

    def identity(self) -> dict[str, Any]:
        fixed = {k: self.options[k] for k in LEARNING if self.options.get(k) is not None}
        return study_lib.identity(self.builder.name, self.dataset, {**fixed, "epochs": self.epochs},
                                  {d.key: d.text for d in self.space}, self.pruner)

    @property
    def worker_index(self) -> int:
        """0, or I of --shard I/N: workers seeded alike would ask for the same settings at once."""
        return 0 if self.worker is None else int(self.worker.split("/")[0])

    @property
    def where(self) -> str:
        """The storage as it may be shown (no password)."""
        return str(self.out / study_lib.JOURNAL) if self.storage is None else study_lib._hide_password(self.storage)


def resolve(
    model: str,
    *,
    trials: int,
    out: str | os.PathLike,
    options: Mapping[str, Any],
    space: Mapping[str, str] | None = None,
    storage: str | None = None,
    study: str | None = None,
    pruner: str = "median",
    shard: str | None = None,
) -> TuneRequest:
    """Check everything a study needs before a trial trains: the budget, the output folder, the
    model, the options, every key and range of the space (the model built at each end)."""
    if importlib.util.find_spec("optuna") is None:
        raise ZooUsageError('tuning needs Optuna: pip install "keras-zoo[tune]"')
    study_lib.check_budget(trials)
    if study is not None and not study.strip():
        raise ZooUsageError("--study needs a name")
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", shard or "")
    if shard is not None and not (match and 1 <= int(match[1]) <= int(match[2])):
        raise ZooUsageError(f"--shard expects I/N, worker I of N with 1 <= I <= N, received {shard!r}")
    if pruner not in study_lib.PRUNERS:
        raise ZooUsageError(f"--pruner must be one of {', '.join(study_lib.PRUNERS)}, received {pruner!r}")
    out = Path(out).expanduser().resolve()
    files.check_creatable(out, "--out folder")
    given = dict(space or {})
    for key, text in given.items():
        if not isinstance(key, str) or not isinstance(text, str):
            raise ZooUsageError(f"space {key!r}: a range is text, such as 'log(1e-4,1e-2)', 'uniform(0.0,0.5)', "
                                f"'int(16,64)' or 'choice(adam,sgd)', received {type(text).__name__} {text!r}")
    both = [k for k in given if options.get(k) is not None]
    if both:
        raise ZooUsageError(f"--space {both[0]}=... and --{both[0].replace('_', '-')} both given: search it or fix it")
    # A probe plan: every option checked, the backend chosen, the builder loaded and the dataset named.
    probe = plan.resolve(model, options=options, run_dir=out / "trials" / "probe", test=False)
    builder, config = probe.builder, probe.config
    dims = tuple(d for d in space_lib.resolve(builder, given)
                 if d.key in given or options.get(d.key) is None)  # a fixed option is not searched
    from ..data import catalog

    features = catalog.describe(config.dataset, **config.dataset_options())
    space_lib.check_ranges(dims, builder, model, features.input_shape, features.num_classes)
    return TuneRequest(
        model=model, builder=builder, dataset=config.dataset, options={**options, "dataset": config.dataset},
        space=dims, trials=trials, out=out, storage=storage,
        study=study or f"{files.safe_name(builder.name)}-{files.safe_name(config.dataset)}",
        seed=config.seed, pruner=pruner, epochs=config.epochs, worker=shard,
        settings={k: getattr(config, k) for k in LEARNING},
    )


def config_of(request: TuneRequest) -> RunConfig:
    """The RunConfig a trial with no sampled values would train with (for the recipe file)."""
    return RunConfig.from_recipe(request.model, request.builder.recipe,
                                 {k: v for k, v in request.options.items() if v is not None})
