"""A plugin model zoo for Keras 3: register builders, train, benchmark and export them.

One import for notebooks::

    import zoo
    zoo.list_models()                       # ['cnn', 'mlp', 'softmax', ...]
    model = zoo.create_model("cnn", input_shape=(28, 28, 1), num_classes=10, dropout=0.25)
    run = zoo.train("mlp", epochs=3)        # the same run directory as `zoo train`
    run.metrics["test_accuracy"], run.history[-1], run.export("exports")

Importing ``zoo`` loads neither TensorFlow nor Keras; the functions that need them do.
"""

from __future__ import annotations

import typing as _typing

from .arguments import checked as _checked
from .compute import backend as _backend
from .errors import ZooError, ZooUsageError
from .runs import Run
from .version import __version__  # noqa: F401  (zoo.__version__)

_backend.quiet_tensorflow_import()  # a notebook's own `import keras` after `import zoo` is quiet too

if _typing.TYPE_CHECKING:  # names for annotations only: ``dir(zoo)`` is the API below (and submodules)
    import os
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any

__all__ = [
    "Run",
    "ZooError",
    "ZooUsageError",
    "bench",
    "create_model",
    "evaluate_preset",
    "export_preset",
    "list_models",
    "list_presets",
    "list_runs",
    "predict",
    "preset",
    "register",
    "train",
    "tune",
]


@_checked
def list_models(pattern: str | None = None) -> list[str]:
    """The names ``zoo list`` shows (``dist:name`` where two distributions claim one name)."""
    import registry

    everything = registry.entries()
    return [registry.selector(e, everything) for e in registry.find(pattern)]


@_checked
def create_model(name: str, *, input_shape: Iterable[int | None] | None = None, num_classes: int | None = None,
                 weights: str | os.PathLike | None = None, **hparams: Any):
    """Build a registered model; hyperparameters are typed and checked as ``--hp`` values are.

    ``weights``: a preset (``"cnn.mnist"``, ``dist:name`` or a folder) of this model, verified and
    loaded; its input shape, classes and hyperparameters are the defaults then."""
    import registry

    from .compute import backend

    backend.import_tensorflow()  # its C++ start-up lines hidden, as zoo.train hides them
    if weights is not None:
        from .presets import catalog
        from .presets import weights as preset_weights

        preset = catalog.find(weights)
        if registry.resolve(name).name != preset.model:
            raise ZooUsageError(f"preset {preset.name} is a preset of model '{preset.model}', not '{name}'")
        return preset_weights.build(preset, input_shape=input_shape, num_classes=num_classes, hparams=hparams)
    if input_shape is None or num_classes is None:
        raise ZooUsageError("create_model needs input_shape and num_classes (or weights=PRESET)")
    input_shape = tuple(input_shape)
    if num_classes < 2:  # as the zoo's datasets are refused with one class: nothing to tell apart
        raise ZooUsageError(f"`num_classes` must be at least 2, received {num_classes}")
    if len(input_shape) != 3 or any(d is not None and d < 1 for d in input_shape):
        raise ZooUsageError(f"`input_shape` is (height, width, channels) of positive sizes (None: any), "
                            f"received {input_shape}")
    builder = registry.get(name)
    return builder.build(input_shape=input_shape, num_classes=num_classes, **builder.coerce_hparams(hparams))


@_checked
def list_presets(pattern: str | None = None) -> list[dict[str, Any]]:
    """The presets ``zoo list --presets`` shows: name, model, dataset, test accuracy, size,
    license, where from (``shadowed_by``: the preset of that name that wins; ``error``: why a
    preset.json cannot be read); read from preset.json alone (nothing imported)."""
    from .presets import catalog

    return catalog.listing(pattern)


def register(fn: Callable[..., Any] | None = None, *, name: str | None = None):
    """Register a builder defined here (a notebook cell) for ``train``, ``bench`` and ``check``.

    Use as ``@zoo.register`` or ``@zoo.register(name="mynet")``. The builder must satisfy the
    plugin contract (keyword-only ``input_shape`` and ``num_classes``, hyperparameters with
    defaults); a name an installed distribution uses is refused.
    """
    import registry

    def add(builder: Callable[..., Any]) -> Callable[..., Any]:
        registry.register(builder, name=name)
        return builder

    return add(fn) if fn is not None else add


@_checked(own=("model", "hparams"))
def train(
    model: str | Callable[..., Any],
    *,
    dataset: str | os.PathLike = "mnist",
    epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    optimizer: str | None = None,
    schedule: str | None = None,
    label_smoothing: float | None = None,
    augment: bool | None = None,
    init: str | os.PathLike | None = None,
    freeze: int | str | None = None,
    val_split: float = 0.1,
    seed: int = 0,
    deterministic: bool = True,
    precision: str = "auto",
    jit_compile: str = "auto",
    devices: str = "auto",
    input: str = "auto",
    memory_budget: str | float | None = None,
    cache_dir: str | os.PathLike | None = None,
    image_size: str | int | tuple[int, int] | None = None,
    channels: int | None = None,
    strict_files: bool = False,
    hparams: Mapping[str, Any] | None = None,
    recipe: str | os.PathLike | None = None,
    run_dir: str | os.PathLike | None = None,
    resume: bool = False,
    export: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    manual_dir: str | os.PathLike | None = None,
    verbose: bool | _typing.Literal[0, 1, 2, "auto"] = "auto",
    backend: str | None = None,
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    peer_timeout: float | None = None,
) -> Run:
    """Train, evaluate and (with ``export``) export a model, exactly as ``zoo train`` does.

    ``model`` is a registered name or a builder function (registered on the fly). Options left
    at None come from the model's recipe; ``precision``, ``jit_compile``, ``devices``,
    ``input`` (auto, memory or stream), ``memory_budget`` (``"4GB"`` or bytes; default a quarter
    of the machine's memory) and ``cache_dir`` are those of ``zoo train --help``. ``dataset``
    is a TFDS name, a dataset plugin's name or a folder of images (``image_size`` and
    ``channels`` resize and convert its images; files in it that are not images are skipped and
    counted, or refused with ``strict_files``). ``manual_dir`` defaults to ``$ZOO_MANUAL_DIR``. Returns
    the finished :class:`Run`; its ``exported`` attribute is the export's result (or None).

    ``recipe`` is a recipe file (``zoo tune`` writes one for the best trial): its settings and
    hyperparameters apply where the arguments leave them at None.

    ``init`` starts from a preset's weights (``"cnn.mnist"``, ``dist:name`` or a preset folder) of
    this model, whose hyperparameters are then the defaults; a new head when the dataset's class
    names are not the preset's. ``freeze`` (N or ``"all"``) trains only the head for the first N
    epochs, or throughout.

    ``backend`` is Keras' (tensorflow or jax; default ``$KERAS_BACKEND``, else tensorflow, and
    for a resume the run's own); it must be chosen before Keras is first imported in the
    process. ``coordinator`` (HOST:PORT), ``num_processes`` and ``process_id`` make this process
    one of several training together on JAX (or Keras' ``KERAS_DISTRIBUTION_*`` variables do);
    ``peer_timeout`` is how long a silent peer is waited for (seconds, default 30). On
    processes other than 0 the returned run is a temporary copy, removed at exit.
    """
    import registry

    from . import plan
    from .compute import multihost

    given = locals()
    cluster = multihost.cluster(coordinator, num_processes, process_id, peer_timeout)
    name = model if isinstance(model, str) else registry.register(model).name
    request = plan.resolve(
        name, options={key: given[key] for key in plan.OPTIONS}, hparams=hparams, run_dir=run_dir,
        resume=resume, export_base=export, cluster=cluster, recipe=recipe,
    )
    from .training import runner  # after the plan chose the backend: it imports Keras

    result = runner.train(request, verbose=verbose)
    result.run.exported = result.export
    return result.run


@_checked
def bench(
    models: Iterable[str] | str | None = None,
    *,
    seeds: Iterable[int] = (0, 1, 2),
    out: str | os.PathLike = "bench",
    dataset: str | os.PathLike | None = None,
    hparams: Mapping[str, Any] | None = None,
    data_dir: str | os.PathLike | None = None,
    manual_dir: str | os.PathLike | None = None,
    shard: str | None = None,
    ray: str | None = None,
    cpus_per_job: int | None = None,
    gpus_per_job: float | None = None,
    from_presets: str | os.PathLike | Iterable[str | os.PathLike] = (),
    formats: str | Iterable[str] | None = None,
    quantize: str | None = None,
    max_accuracy_drop: float | None = None,
    tune: int | None = None,
    recipes: str | os.PathLike | Iterable[str | os.PathLike] = (),
    space: Mapping[str, str] | None = None,
    **recipe: Any,
) -> list[dict[str, Any]]:
    """Train, export and measure models side by side, as ``zoo bench`` does; return the records.

    ``models`` are names or shell patterns (None: every healthy model; an empty list is refused); ``recipe`` takes
    the training options of :func:`train` (epochs, batch_size, learning_rate, ...). The records
    are also appended to ``OUT/results.jsonl`` and summarised in ``OUT/results.md``; jobs that
    file already records are skipped (and not returned). ``shard="I/N"``, ``ray`` (an address,
    or ``"local"``), ``cpus_per_job`` and ``gpus_per_job`` are ``zoo bench``'s options. Raises
    ZooError after the sweep if a job failed (its record is in results.jsonl too); ``dataset``: mnist.

    ``formats`` (default the SavedModel alone), ``quantize`` and ``max_accuracy_drop`` are
    :meth:`Run.export`'s; a record's ``formats`` holds each other format measured in its runtime.
    ``recipes``: recipe files, each for its model. ``tune=N`` tunes every model first (N trials in
    ``OUT/tune/MODEL``, ``space`` as :func:`tune`'s, the first seed), then benches its best recipe.

    ``from_presets`` (names, ``dist:name``, folders or patterns, as ``zoo bench --from-presets``)
    measures those presets as they are instead of training: on the test split of their own
    dataset, or of ``dataset`` when given (with the preset's classes). Each record's ``preset``
    names the preset, its digest and license; a preset ``out`` records is not measured again.
    No ``models``, ``hparams``, ``recipe``, ``shard`` or ``ray`` with it.
    """
    import os
    from pathlib import Path

    from .benchmark.jobs import bench_inputs
    from .compute import backend as backend_lib
    from .export.request import resolve

    presets, patterns, recipes = bench_inputs(models, from_presets, recipes, hparams=hparams, recipe=recipe, tune=tune,
                                              space=space, shard=shard, ray=ray)
    backend = recipe.get("backend") or backend_lib.default()
    formats = formats if formats is None or isinstance(formats, str) else list(formats)
    request = resolve(formats, quantize, max_accuracy_drop, backend)  # before anything loads or trains
    backend_lib.import_tensorflow()  # quietly, before the plan and the dataset's name load it
    from .benchmark import child, sweep  # load TensorFlow

    out, manual_dir = Path(out).resolve(), manual_dir or os.environ.get("ZOO_MANUAL_DIR")
    where = {"dataset": dataset, "data_dir": data_dir, "manual_dir": manual_dir}
    planned = (child.preset_jobs(presets, where, request) if presets else
               _sweep_jobs(patterns, seeds, out, hparams, {"backend": backend, **where, **recipe}, request,
                           {"recipe_paths": recipes, "tune": tune, "space": space, "threads": None if ray else cpus_per_job}))
    return sweep.run_jobs(planned, out, shard, ray=ray, cpus_per_job=cpus_per_job, gpus_per_job=gpus_per_job)


def _sweep_jobs(patterns: list[str], seeds: Iterable[int], out, hparams, options: Mapping[str, Any], request,
                tuning: Mapping[str, Any]) -> list:
    """:func:`bench`'s training jobs (``options``: RunConfig fields, None for the recipe's), tuned first."""
    from .benchmark import sweep
    from .data.catalog import dataset_name

    options = {**{k: v for k, v in options.items() if v is not None}, "data_dir": options["data_dir"],
               "manual_dir": options["manual_dir"], "dataset": dataset_name(options["dataset"] or "mnist")}
    return sweep.training_jobs(patterns, seeds=list(seeds), out=out, hparams=dict(hparams or {}), options=options,
                               export=request, **tuning)


@_checked
def tune(
    model: str,
    *,
    trials: int,
    out: str | os.PathLike = "tune",
    space: Mapping[str, str] | None = None,
    storage: str | None = None,
    study: str | None = None,
    pruner: str = "median",
    shard: str | None = None,
    verbose: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """Tune ``model`` on Optuna as ``zoo tune`` does and return the study's summary.

    ``trials`` finished trials are the budget, shared by every worker of the study (run this in
    several processes or machines with the same ``out``/``storage``). ``space`` maps a recipe
    field or hyperparameter to ``log(a,b)``, ``uniform(a,b)``, ``int(a,b)`` or ``choice(...)``,
    over the model's default space. ``options`` are :func:`train`'s (dataset, epochs, seed, ...),
    fixed for every trial. The objective is the last epoch's validation accuracy; only the best
    trial is measured on the test split. ``verbose`` prints a line per trial. Returns
    ``{"trials": rows, "running": n, "best": ..., "recipe": path, "plots": [...], "counts": {...}}``
    (each row's ``params`` typed as the trial trained with them); ``recipe`` is a file for
    ``train(recipe=...)``.
    """
    from . import plan
    from .tuning.request import resolve

    unknown = sorted(set(options) - set(plan.OPTIONS))
    if unknown:
        raise ZooUsageError(f"tune() got an unknown option {unknown[0]!r}")
    request = resolve(model, trials=trials, out=out, options=options, space=space, storage=storage,
                      study=study, pruner=pruner, shard=shard)
    from .tuning import report, run

    summary = report.finish(request, run.work(request, print if verbose else lambda line: None))
    return {"trials": summary.rows, "running": summary.running, "best": summary.best,
            "recipe": str(summary.recipe) if summary.recipe else None, "plots": [str(p) for p in summary.plots],
            "counts": summary.counts}


@_checked
def list_runs(folder: str | os.PathLike = "runs") -> list[dict[str, Any]]:
    """What ``zoo runs`` lists: a dict per run directory in ``folder`` (newest first) with its
    model, dataset, status (running, finished, failed or interrupted), epochs, validation and test
    accuracy, precision and creation time. A run whose files cannot be read is listed as
    ``{"run": ..., "status": "unreadable", "error": ...}``."""
    from .runs import summaries

    return summaries(folder)


@_checked
def predict(target: str | os.PathLike, images: str | os.PathLike | Iterable[str | os.PathLike], *,
            top: int = 3, unreadable: list | None = None) -> list[dict[str, Any]]:
    """``zoo predict``: for each image file in ``images`` (a path or a list of them; a folder
    stands for the image files beneath it), its ``top`` classes (``class_id``, ``class_name``,
    ``probability``) from ``target``, a run directory (or ``"latest"``), an export version, an
    export base or a preset. Files are read as a folder's images are and resized as in training.
    A file that cannot be read is a :class:`ZooUsageError`; given a list ``unreadable``, it is
    added to that list as ``(path, reason)`` instead and the other files are answered."""
    from .compute.backend import import_tensorflow
    from .data.imagefiles import image_paths

    one = isinstance(images, str) or hasattr(images, "__fspath__")  # one file or folder
    paths = image_paths([images] if one else list(images))
    import_tensorflow()
    from . import prediction as predict_lib

    return predict_lib.predict(predict_lib.open_target(target), paths, top=top, unreadable=unreadable)


@_checked
def preset(name: str | os.PathLike):
    """The preset ``name`` means (``"cnn.mnist"``, ``"dist:name"`` or a folder), with its
    ``record`` (preset.json), ``digest`` and ``verify()``; read without TensorFlow."""
    from .presets import catalog

    return catalog.find(name)


@_checked
def evaluate_preset(name: str | os.PathLike, split: str | None = None, *, data_dir: str | os.PathLike | None = None,
                    manual_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """``zoo evaluate PRESET``: loss, accuracy (beside the published one), accuracy per class and
    the confusion matrix of a preset on its dataset; nothing is written to the preset (its dataset is
    prepared in ``data_dir``, default where TFDS keeps datasets, ``TFDS_DATA_DIR``)."""
    from .compute.backend import import_tensorflow

    found = preset(name)
    import_tensorflow()
    from .presets import use

    return use.evaluate(found, split, data_dir=data_dir, manual_dir=manual_dir)


@_checked
def export_preset(name: str | os.PathLike, export_base: str | os.PathLike):
    """``zoo export PRESET EXPORT_BASE``: the next SavedModel version, verified; its zoo.json names
    the preset, its digest and license."""
    from .compute.backend import import_tensorflow

    found = preset(name)
    import_tensorflow()
    from .presets import use

    return use.export(found, export_base)


del annotations  # the __future__ import's name, no part of the API
