"""Executing a resolved training plan (:mod:`zoo.plan`): build the model where the plan places
it, load the data, write config.json, fit (:mod:`zoo.training.loop`), write metrics.json and the
curves, export. With several processes, process 0 decides and writes; the others follow."""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import platform
import shutil
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from .. import evaluation, files
from ..compute import backend, devices, multihost
from ..config import RunConfig
from ..data import catalog
from ..errors import ZooError, ZooUsageError
from ..export import bundle as export_lib
from ..models import contract
from ..plan import TrainPlan
from ..presets import weights as preset_weights
from ..runs import BACKUP, CONFIG, CURVES, METRICS, Run
from ..version import __version__
from .callbacks import Backup
from .loop import fit, load_splits
from .resume import resume_splits


@dataclass(frozen=True)
class TrainResult:
    run: Run
    export: export_lib.ExportResult | None


@backend.quiet_retracing()  # one process may train model after model (a notebook, a study)
def train(plan: TrainPlan, *, verbose: int | str = "auto", callbacks: Sequence = ()) -> TrainResult:
    """Execute a resolved plan (:mod:`zoo.plan`): train, evaluate on test, optionally export.

    The run directory is locked for the whole run. With a cluster, this process is one of several
    training together (JAX backend): process 0 alone writes the run directory and the export and
    decides where a resumed run continues; the others keep their copies of the same files in a
    temporary folder, removed at exit. ``callbacks`` (Keras') run after the zoo's own: a tuning
    trial's pruner, which may raise to stop the run where it is."""
    config, cluster = plan.config, plan.cluster
    if cluster is not None:
        multihost.start(cluster)  # before JAX computes anything
    # First: splitting the CPU into logical devices is possible only before the backend starts.
    placement = devices.place(config.devices, config.precision, config.backend, config.deterministic)
    config = dataclasses.replace(config, precision=placement.precision, devices=placement.text)
    run = Run(plan.run_dir) if plan.writer else _scratch_run(cluster)
    features = _checked_features(plan, config, placement)
    with _process_state(config), placement.scope():
        with devices.dtype_policy(placement.precision):
            model = plan.builder.build(
                input_shape=features.input_shape, num_classes=features.num_classes, **plan.hparams
            )
            devices.float32_outputs(model)  # then checked under the policy model.keras will load in
            contract.check_before_training(plan.builder.name, model, features.input_shape,
                                           call=cluster is None and placement.replicas == 1)
        # A resume loads them too: a run stopped before its first backup starts from them again.
        new_head = (preset_weights.start_from(plan.init, model, features.class_names, placement.precision)
                    if plan.init is not None else None)
        backup = None
        if plan.writer and not plan.resume:
            splits = _shared_start(cluster, lambda: load_splits(config, range(config.epochs), placement))
            config = dataclasses.replace(config, input=splits.input.train)  # recorded resolved
            run.path.mkdir(parents=True, exist_ok=True)
        elif not plan.writer:  # where process 0 says the run continues, read as process 0 reads it
            start = _shared_start(cluster, None)
            config = dataclasses.replace(config, input=start["input"])
            splits = load_splits(config, range(start["epoch"], config.epochs), placement, start["shuffle_buffer"])
            run.path.mkdir(parents=True)
        with run.locked(exclusive=True):
            if plan.writer and plan.resume:
                backup = Backup(run.file(BACKUP))
                splits = _shared_start(cluster, lambda: resume_splits(run, config, placement, backup))
                config = dataclasses.replace(config, input=splits.input.train)
            elif run.contents() and plan.writer:  # another process started a run here meanwhile
                raise ZooUsageError(f"run directory {run.path} is not empty any more; choose another `run_dir`")
            else:
                record = _config_record(config, plan, splits.info, new_head)
                run.write_json(CONFIG, {
                    **record, "hardware": placement.record(config.jit_compile), "input": splits.input.record()
                })
            if cluster is not None and splits.epochs.start > 0:  # every process restores process 0's backup
                multihost.share_folder(run.file(BACKUP))
                backup = Backup(run.file(BACKUP))
            results = _fit_together(model, splits, config, run, backup, cluster, verbose, callbacks, plan.test)
            # XLA as Keras resolved it for this model.
            _finish(run, config, {
                **results, "hardware": placement.record(model.jit_compile), "input": splits.input.record()
            })
    multihost.finish()  # all processes together; process 0 alone goes on to export
    export = plan.export_base is not None and plan.writer
    return TrainResult(run, evaluation.export(run, plan.export_base, plan.export_request) if export else None)


def _checked_features(plan: TrainPlan, config: RunConfig, placement: devices.Placement) -> catalog.Features:
    """The dataset's features, and what they and the devices refuse before anything is built or
    written: a batch the devices cannot share, an export base serving another task, a preset
    for other images."""
    placement.check_batch(config.batch_size)
    features = catalog.describe(config.dataset, **config.dataset_options())
    if plan.export_base is not None and plan.writer and plan.export_base.is_dir():
        export_lib.check_same_contract(plan.export_base, features.class_names, features.input_shape)
    if plan.init is not None:
        preset_weights.check_input(plan.init, features.input_shape, config.dataset, catalog.is_folder(config.dataset))
    return features


def _scratch_run(cluster: multihost.Cluster) -> Run:
    """Where a process other than 0 keeps the same files as process 0's, where nobody looks."""
    scratch = tempfile.mkdtemp(prefix=f"zoo-process-{cluster.process_id}-")
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    return Run(Path(scratch) / "run")


def _fit_together(model, splits, config, run, backup, cluster, verbose, callbacks, test) -> dict[str, Any]:
    """``fit``, with a lost peer explained; several processes agree on the weights at the end."""
    try:
        results = fit(model, splits, config, run, restore=backup, verbose=verbose, callbacks=callbacks, test=test)
    except Exception as exc:
        explained = multihost.explained(exc)
        if explained is None:
            raise
        raise explained from None
    if cluster is not None:  # one model, trained together: the same weights everywhere
        results["weights_digest"] = weights_digest(model)
        multihost.agree("weights", results["weights_digest"])
    return results


def weights_digest(model: keras.Model) -> str:
    """The first 16 hex digits of the SHA-256 of the model's weights, in model order."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()[:16]


def _shared_start(cluster: multihost.Cluster | None, decide):
    """Process 0 runs ``decide`` (which loads the splits) and tells the others where training
    starts; they receive that. A refusal on process 0 is the others' refusal too."""
    if cluster is None:
        return decide()
    if not cluster.writer:
        start = multihost.share("start")
        if "error" in start:
            kind = ZooUsageError if start["usage"] else ZooError
            raise kind(f"process 0: {start['error']}")
        return start
    try:
        splits = decide()
    except ZooError as exc:
        multihost.share("start", {"error": str(exc), "usage": isinstance(exc, ZooUsageError)}, acknowledged=30)
        raise
    multihost.share("start", {"input": splits.input.train, "epoch": splits.epochs.start,
                              "shuffle_buffer": splits.input.shuffle_buffer})
    return splits


def _finish(run: Run, config: RunConfig, results: dict[str, Any]) -> None:
    """metrics.json, which marks the run complete, then the curves."""
    source = run.record["model"]
    run.write_json(METRICS, {
        "model": config.model,
        "distribution": source["distribution"],
        "version": source["version"],
        "hparams": source["hparams_resolved"],
        **results,
    })
    plot_curves(run.history, run.file(CURVES), title=f"{config.model} on {results['dataset']}")


@contextmanager
def _process_state(config: RunConfig):
    """Seed and op determinism for one run, and the determinism setting put back afterwards, so
    a notebook's next cell is not surprised by it. Every process of a run seeds alike: JAX
    refuses to start a model whose initial weights differ between processes."""
    keras.utils.set_random_seed(config.seed)
    with backend.deterministic_ops(config.deterministic):
        yield


def plot_curves(history: list[dict[str, float]], path: Path, *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    epochs = [int(r["epoch"]) for r in history]  # counted from 1, as the console
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        ax.plot(epochs, [r[metric] for r in history], marker="o", label="train")
        ax.plot(epochs, [r[f"val_{metric}"] for r in history], marker="o", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    with files.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def _config_record(config: RunConfig, plan: TrainPlan, info: catalog.DatasetInfo,
                   new_head: bool | None) -> dict[str, Any]:
    """What config.json holds: enough to reproduce the run and to trace where its model came from."""
    entry, builder, hparams, preset = plan.entry, plan.builder, plan.hparams, plan.init
    return {
        "config": {**config.to_dict(), "hparams": hparams},
        "model": {
            "name": entry.name,
            # A builder registered in the running process (a notebook) has no package to name.
            "origin": "registered in the process (zoo.register)" if entry.local else "entry point",
            "distribution": None if entry.local else entry.dist,
            "version": None if entry.local else entry.version,
            "entry_point": entry.value,
            "hparams_resolved": {**builder.defaults(), **hparams},
            "recipe": builder.recipe,  # as it was: a later version of the plugin may change it
        },
        "dataset": asdict(info),
        # Fine-tuning: the preset the weights started from (its digest names its exact files), and
        # whether the head was new (other classes than the preset's). A published preset of this
        # run names it as its parent.
        "init": None if preset is None else {
            "preset": preset.name, "digest": preset.digest, "new_head": new_head, "freeze": config.freeze,
        },
        # The recipe file that filled in the options (a study's best trial: its provenance).
        "recipe_file": None if plan.recipe is None else plan.recipe.record(),
        "versions": versions(),
        "created": files.timestamp(),
    }


def versions() -> dict[str, str]:
    """The library versions a run or a benchmark record names."""
    return {
        "zoo": __version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tensorflow_datasets": catalog.TFDS_VERSION,
        "numpy": np.__version__,
    }

