"""A training request, resolved once: what the CLI, ``zoo.train``, a bench job and every process
of a multi-process run hand to :func:`zoo.training.runner.train`, which never checks or rebuilds it.

Resolving happens in two steps, both here. First, without Keras or TensorFlow (seconds, nothing
written): the backend (before anything imports Keras), the cluster, the options as a RunConfig,
the run directory (new and creatable, or an unfinished run to resume), the export base and the
cache folder, the model's registry entry (metadata only) and, to fine-tune (``init``), the preset:
found, verified and of that model. Then the builder's module is
imported (TensorFlow loads, quietly) and the recipe, typed hyperparameters (a preset's by default)
and dataset name complete the RunConfig. What stays for execution is what needs the machine:
devices and precision, and reading the dataset (whose images must then have a preset's shape).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import registry

from . import files, formats, recipes
from .compute import backend as backend_lib
from .compute import multihost
from .config import RunConfig
from .data.folders import folder_text
from .errors import ZooUsageError
from .export.base import check as check_export_base
from .export.request import SAVED_MODEL_ONLY, ExportRequest
from .presets import catalog as presets
from .presets.store import Preset
from .recipes import Recipe
from .runs import CONFIG, Run, named_run

# The RunConfig fields a request gives as options (the model and its hyperparameters apart).
OPTIONS = tuple(f.name for f in dataclasses.fields(RunConfig) if f.name not in ("model", "hparams"))


@dataclass(frozen=True)
class TrainPlan:
    """Everything ``runner.train`` needs, checked: it executes this and asks nothing again."""

    config: RunConfig  # the recipe applied, typed hyperparameters, the dataset as recorded
    run_dir: Path
    resume: bool
    export_base: Path | None
    cluster: multihost.Cluster | None
    entry: registry.Entry
    builder: registry.Builder
    hparams: Mapping[str, Any]  # typed, as the builder receives them
    init: Preset | None = None  # fine-tuning: the preset to start from, found and verified
    test: bool = True  # measure the test split at the end (a tuning trial never does)
    recipe: Recipe | None = None  # the recipe file whose values filled in the options
    export_request: ExportRequest = SAVED_MODEL_ONLY  # the formats written under export_base

    @property
    def writer(self) -> bool:
        """This process writes the run directory and the export (process 0, or the only one)."""
        return self.cluster is None or self.cluster.writer


def resolve(
    model: str,
    *,
    options: Mapping[str, Any],
    hparams: Mapping[str, Any] | None = None,
    run_dir: str | os.PathLike | None = None,
    resume: bool = False,
    export_base: str | os.PathLike | None = None,
    cluster: multihost.Cluster | None = None,
    recipe: str | os.PathLike | Recipe | None = None,
    test: bool = True,
) -> TrainPlan:
    """Resolve ``zoo train MODEL`` with ``options`` (RunConfig fields; None: the recipe's) and
    ``hparams`` (``--hp`` text or Python values alike). A ``recipe`` file fills in the options
    and hyperparameters not given; ``test`` False: a run judged on validation alone."""
    if not isinstance(model, str):
        raise ZooUsageError(f"`model` is a registered model's name, received {model!r}")
    if hparams is not None and not isinstance(hparams, Mapping):
        raise ZooUsageError(f"`hparams` is a mapping of name to value, received {type(hparams).__name__} {hparams!r}")
    if recipe is not None:
        recipe = recipe if isinstance(recipe, Recipe) else recipes.read(recipe, model)
        _check_recipe(model, recipe)
        options, hparams = recipes.apply(recipe, options, hparams or {})
    if isinstance(options.get("dataset"), os.PathLike):
        options["dataset"] = folder_text(options["dataset"])
    options = {key: os.fspath(value) if isinstance(value, os.PathLike) else value for key, value in options.items()}
    options["data_dir"] = options.get("data_dir") or None
    options["manual_dir"] = options.get("manual_dir") or os.environ.get("ZOO_MANUAL_DIR") or None
    if resume and run_dir is not None:
        run_dir = named_run(run_dir)  # `latest`: the newest run under ./runs
    options["backend"] = _backend(options.get("backend"), run_dir if resume else None, cluster)
    RunConfig.from_recipe(model, {}, options)  # every option checked before anything loads
    if run_dir is None:
        if resume:
            raise ZooUsageError("`resume` needs the `run_dir` of the run to continue")
        run_dir = default_run_dir(model)
    directories = _directories(run_dir, resume, export_base, options.get("cache_dir"), cluster)
    entry = registry.resolve(model)  # metadata only: an unknown name fails in a second
    preset = _preset(options.get("init"), entry, model, directories[0] if resume else None)
    if preset is not None and presets.looks_like_path(options["init"]):
        options["init"] = str(preset.path)  # as a dataset folder is: the same from any directory
    builder = _load(entry, model)
    from .data.catalog import (
        dataset_name,  # TFDS: a bare name is a folder only if no dataset has it
    )

    # A preset's hyperparameters are the defaults; --hp changes them (its weights must still fit).
    start = builder.coerce_hparams(preset.hparams) if preset is not None else {}
    options["hparams"] = {**start, **builder.coerce_hparams(hparams or {})}
    options["dataset"] = dataset_name(options.get("dataset", "mnist"))
    config = RunConfig.from_recipe(model, builder.recipe, options)
    if resume and cluster is None:  # before its data is prepared (a cluster's refusal is shared later)
        _check_resumed_dataset(directories[0], config.dataset)
    if isinstance(config.freeze, int) and config.freeze > config.epochs:  # it would freeze throughout
        raise ZooUsageError(f"`freeze` {config.freeze} is more than the run's {config.epochs} epochs: give `freeze` "
                            f"all to train only the head throughout, or at most {config.epochs}")
    return TrainPlan(config, *directories, cluster, entry, builder, builder.check_hparams(config.hparams), preset,
                     test, recipe)


def _check_resumed_dataset(run_dir: Path, dataset: str) -> None:
    """A resume asks for the dataset its run trained on: refused before another one is prepared
    (:mod:`zoo.training.resume` checks every other setting)."""
    trained_on = Run(run_dir).config.dataset
    if dataset != trained_on:
        raise ZooUsageError(f"`resume` with different settings than run {run_dir} (`dataset`: it trained on "
                            f"{trained_on!r}, not {dataset!r}); resume with the same command")


def _check_recipe(model: str, recipe: Recipe) -> None:
    """A recipe's own values checked as options are, the error naming the file (not an option
    the user did not give)."""
    try:
        RunConfig.from_recipe(model, {}, recipe.options)
    except ZooUsageError as exc:
        where = f"recipe file {recipe.path}" if recipe.path else "the recipe"
        raise ZooUsageError(f"{where}: {str(exc).replace('`', '')}") from None


def resolve_config(
    config: RunConfig,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    export_base: str | os.PathLike | None = None,
    export_request: ExportRequest = SAVED_MODEL_ONLY,
    recipe: Recipe | None = None,
) -> TrainPlan:
    """Resolve a job that is already a RunConfig (a bench job, a Ray task): checked the same way;
    ``export_request`` is resolved already (:func:`zoo.export.request.resolve`); ``recipe`` is the
    recipe file already applied to ``config``, for the run to record."""
    backend = _backend(config.backend, None, None)
    directories = _directories(run_dir, resume, export_base, config.cache_dir, None)
    entry = registry.resolve(config.model)
    preset = _preset(config.init, entry, config.model, directories[0] if resume else None)
    builder = _load(entry, config.model)
    config = dataclasses.replace(config, backend=backend)
    return TrainPlan(config, *directories, None, entry, builder, builder.check_hparams(config.hparams), preset,
                     recipe=recipe, export_request=export_request)


def default_run_dir(model: str) -> str:
    """``runs/MODEL-TIMESTAMP``, the folder a run goes to when none is given."""
    return os.path.join("runs", f"{files.safe_name(model)}-{time.strftime('%Y%m%d-%H%M%S')}")


def recorded_backend(run_dir: str | os.PathLike) -> str | None:
    """The backend a run trained with, read without Keras (None: not a run; its resume then
    fails with the run directory's own one-line error). A config.json newer than this zoo reads
    is a one-line ZooError."""
    try:
        return formats.load(formats.RUN_CONFIG, Path(run_dir) / CONFIG)["config"]["backend"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _backend(requested: str | None, resumed: str | os.PathLike | None, cluster: multihost.Cluster | None) -> str:
    """The Keras backend: as asked; else a resumed run's own; else jax for a cluster (unless
    KERAS_BACKEND says otherwise); else KERAS_BACKEND or tensorflow. Set before Keras loads."""
    if requested is None and resumed is not None:
        requested = recorded_backend(resumed)
    if requested is None and cluster is not None and not os.environ.get("KERAS_BACKEND"):
        requested = "jax"
    backend = backend_lib.use(requested)
    if cluster is not None and backend != "jax":
        raise ZooUsageError(
            "training on several processes needs `backend` jax: Keras 3's fit does not run under "
            "TensorFlow's MultiWorkerMirroredStrategy (keras-team/keras#20585)"
        )
    return backend


def _directories(
    run_dir: str | os.PathLike,
    resume: bool,
    export_base: str | os.PathLike | None,
    cache_dir: str | None,
    cluster: multihost.Cluster | None,
) -> tuple[Path, bool, Path | None]:
    """The run directory, ``resume`` and the export base, checked; nothing is created. Processes
    other than 0 never touch either (they train into a temporary copy)."""
    writer = cluster is None or cluster.writer
    run_dir = files.given(run_dir, "run directory")
    path = Run.for_training(run_dir, resume=resume).path if writer else run_dir
    base = files.given(export_base, "export base") if export_base is not None else None
    if base is not None and writer:
        check_export_base(base)
        if base == path:
            raise ZooUsageError(f"export base {base} is the run directory: give a folder of its own")
        files.check_creatable(base, "export base")
    if cache_dir is not None:
        files.check_creatable(files.given(cache_dir, "cache folder"), "cache folder")
    return path, resume, base


def _preset(init: str | None, entry: registry.Entry, model: str, resumed: Path | None) -> Preset | None:
    """``init``'s preset, found and verified, of ``model``; for a resume, the very preset the run
    started from (its digest recorded). One-line errors, before anything loads or is written."""
    if init is None:
        return None
    preset = presets.find(init)
    preset.verify()
    if entry.name != preset.model:
        raise ZooUsageError(f"preset {preset.name} is a preset of model '{preset.model}', not '{model}'")
    if resumed is not None:
        try:
            recorded = (formats.load(formats.RUN_CONFIG, resumed / CONFIG).get("init") or {}).get("digest")
        except (OSError, ValueError, AttributeError):
            recorded = None  # the run directory's own check says what is wrong with it
        if recorded is not None and recorded != preset.digest:
            raise ZooUsageError(
                f"preset {preset.name} is not the one run {resumed} started from (digest {preset.digest[:19]}…, "
                f"the run recorded {recorded[:19]}…): resume needs the same preset"
            )
    return preset


def _load(entry: registry.Entry, shown_name: str) -> registry.Builder:
    backend_lib.import_tensorflow()  # its C++ start-up lines would bury one-line errors
    return entry.load(shown_name=shown_name)
