"""One runner for every model: fit, evaluate and export over a run directory (see zoo/runs.py).

Two layers: :func:`fit` is the training loop for any ``keras.Model`` and a locked :class:`Run`
(non-finite guard, history, crash-safe backup, exact resume); :func:`train` is the bookkeeping
above it (registry, hyperparameters, dataset, run directory, export).
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import json
import math
import os
import platform
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import registry

from . import backend, data, devices, evaluation, files, multihost
from . import export as export_lib
from .config import RunConfig, parse_size
from .errors import ZooError, ZooUsageError
from .runs import BACKUP, CONFIG, CURVES, FAILED, HISTORY_FIELDS, METRICS, MODEL, TENSORBOARD, Run
from .version import __version__


@dataclass(frozen=True)
class TrainResult:
    run: Run
    export: export_lib.ExportResult | None


def train(
    config: RunConfig,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    export_base: str | os.PathLike | None = None,
    verbose: int | str = "auto",
    cluster: multihost.Cluster | None = None,
) -> TrainResult:
    """Train ``config.model`` on ``config.dataset``, evaluate on test, optionally export.

    Everything that can be checked without data is checked first (builder, hyperparameters by
    building the model, dataset name and files, run directory, export base), so a bad request
    fails in seconds and leaves nothing behind. The run directory is locked for the whole run.

    ``cluster``: this process is one of several training together (JAX backend). Process 0
    alone writes ``run_dir`` and the export and decides where a resumed run continues; the
    others keep their copies of the same files in a temporary folder, removed at exit.
    """
    entry = registry.resolve(config.model)
    backend.use(config.backend)  # refused if Keras started with another one in this process
    if cluster is not None:
        if config.backend != "jax":
            raise ZooUsageError(
                "training on several processes needs `backend` jax: Keras 3's fit does not run under "
                "TensorFlow's MultiWorkerMirroredStrategy (keras-team/keras#20585)"
            )
        multihost.start(cluster)  # before JAX computes anything
    # First: splitting the CPU into logical devices is possible only before the backend starts.
    placement = devices.place(config.devices, config.precision, config.backend, config.deterministic)
    config = dataclasses.replace(config, precision=placement.precision, devices=placement.text)
    builder = entry.load(shown_name=config.model)
    hparams = builder.check_hparams(config.hparams)
    writer = cluster is None or cluster.writer
    if writer:
        run = Run.for_training(run_dir, resume=resume)
    else:  # the same files as process 0's, where nobody looks
        scratch = tempfile.mkdtemp(prefix=f"zoo-process-{cluster.process_id}-")
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        run = Run.for_training(Path(scratch) / "run", resume=False)
    if export_base is not None and writer:
        files.check_creatable(Path(export_base).expanduser().resolve(), "export base")
    if config.cache_dir is not None:
        files.check_creatable(Path(config.cache_dir).expanduser().resolve(), "cache folder")
    features = data.describe(config.dataset, **evaluation.data_options(config))
    with _process_state(config), placement.scope():
        with devices.dtype_policy(placement.precision):
            model = builder.build(input_shape=features.input_shape, num_classes=features.num_classes, **hparams)
        devices.float32_outputs(model)
        backup = None
        if writer and not resume:
            splits = _shared_start(cluster, lambda: _load(config, range(config.epochs), placement))
            config = dataclasses.replace(config, input=splits.input.train)  # recorded resolved
            run.path.mkdir(parents=True, exist_ok=True)
        elif not writer:  # where process 0 says the run continues, read as process 0 reads it
            start = _shared_start(cluster, None)
            config = dataclasses.replace(config, input=start["input"])
            splits = _load(config, range(start["epoch"], config.epochs), placement, start["shuffle_buffer"])
            run.path.mkdir(parents=True)
        with run.locked(exclusive=True):
            if writer and resume:
                backup = _Backup(run.file(BACKUP))
                splits = _shared_start(cluster, lambda: _resume(run, config, placement, backup))
                config = dataclasses.replace(config, input=splits.input.train)
            elif run.contents() and writer:  # another process started a run here in the meantime
                raise ZooUsageError(f"run directory {run.path} is not empty any more; choose another `run_dir`")
            else:
                record = _config_record(config, entry, builder, hparams, splits.info)
                run.write_json(CONFIG, {
                    **record, "hardware": placement.record(config.jit_compile), "input": splits.input.record()
                })
            if cluster is not None and splits.epochs.start > 0:  # every process restores process 0's backup
                multihost.share_folder(run.file(BACKUP))
                backup = _Backup(run.file(BACKUP))
            try:
                results = fit(model, splits, config, run, restore=backup, verbose=verbose)
            except Exception as exc:
                explained = multihost.explained(exc)
                if explained is None:
                    raise
                raise explained from None
            if cluster is not None:  # one model, trained together: the same weights everywhere
                results["weights_digest"] = weights_digest(model)
                multihost.agree("weights", results["weights_digest"])
            # XLA as Keras resolved it for this model.
            _finish(run, config, {
                **results, "hardware": placement.record(model.jit_compile), "input": splits.input.record()
            })
    multihost.finish()  # all processes together; process 0 alone goes on to export
    exported = evaluation.export(run, export_base) if export_base is not None and writer else None
    return TrainResult(run, exported)


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


def _resume(run: Run, config: RunConfig, placement: devices.Placement, backup: _Backup) -> data.Splits:
    """The splits of a resumed run's remaining epochs, once its settings are checked."""
    recorded = run.record.get("input") or {}
    if config.input == "auto":  # the path the run took, not a new decision
        config = dataclasses.replace(config, input=run.config.input)
    changes = _resume_changes(run, config)
    processes = (run.record.get("hardware") or {}).get("processes", 1)
    if processes != placement.processes:
        raise ZooUsageError(
            f"run {run.path} trained on {processes} process(es), this resume has {placement.processes}; "
            f"each process's share of the data depends on it: resume with {processes}"
        )
    changed = evaluation.changed_images(run)  # checked before a changed folder is prepared again
    if changed:
        raise ZooUsageError(
            f"the images in {run.dataset['source']['path']} changed since run {run.path} "
            f"started (fingerprint {changed[0]}, now {changed[1]}); resume needs the same "
            f"images, or start a new run"
        )
    # The recorded buffer size, whatever the budget now: the same order as before.
    splits = _load(config, range(backup.saved_epoch(), config.epochs), placement, recorded.get("shuffle_buffer"))
    _record_resume(run, config, changes, backup.saved_epoch())
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


def _load(
    config: RunConfig, epochs: range, placement: devices.Placement, shuffle_buffer: int | None = None
) -> data.Splits:
    cluster = multihost.active()
    return data.load(
        config.dataset,
        val_fraction=config.val_split,
        batch_size=config.batch_size,
        seed=config.seed,
        **evaluation.data_options(config),
        augment=config.augment,
        epochs=epochs,
        input=config.input,
        memory_budget=parse_size(config.memory_budget) if config.memory_budget is not None else None,
        cache_dir=config.cache_dir,
        shuffle_buffer=shuffle_buffer,
        process=(cluster.process_id, cluster.num_processes) if cluster else (0, 1),
        # JAX splits every batch evenly over a process's devices.
        pad_to=len(placement.devices) if placement.backend == "jax" else 1,
    )




def fit(
    model: keras.Model,
    splits: data.Splits,
    config: RunConfig,
    run: Run,
    *,
    restore: _Backup | None = None,
    verbose: int | str = "auto",
) -> dict[str, Any]:
    """Train ``model`` into a run directory whose lock the caller holds; return what it measured.

    Writes history.csv every epoch, the backup after each epoch and model.keras at the end; any
    ``keras.Model`` will do. ``splits.train`` covers the epochs still to run; ``restore`` is the
    backup to continue from.
    """
    info = splits.info
    model.compile(
        optimizer=_optimizer(config, splits.steps_per_epoch),
        loss=_loss(config.label_smoothing, info.num_classes),
        weighted_metrics=["accuracy"],  # padded batches' padding has weight 0
        jit_compile=JIT_COMPILE[config.jit_compile],
    )
    initial_epoch = restore.restore(model) if restore is not None else 0
    if config.schedule == "constant":
        # A constant rate is an optimizer variable that the backup restored; a resume after a
        # non-finite loss may have lowered it. (A schedule's rate follows the restored step.)
        model.optimizer.learning_rate = config.learning_rate
    # Rows of epochs after the restored one are stale (killed after the row, before the backup).
    run.keep_history(lambda r: int(r["epoch"]) < initial_epoch)
    backup = _Backup(run.file(BACKUP))
    guard = _NanGuard()
    callbacks = [
        guard,  # first: a broken epoch must never reach the history or the backup
        # The history row is written before the backup of the same epoch; a kill between the two
        # repeats that epoch on resume and the stale row is dropped above.
        _HistoryLogger(run, info.num_train),
        backup,
        _EpochTensorBoard(str(run.file(TENSORBOARD)), write_graph=False),
    ]
    try:
        try:
            model.fit(
                splits.train,  # every remaining epoch, one after another: Keras keeps one iterator
                steps_per_epoch=splits.steps_per_epoch,
                validation_data=splits.validation,
                epochs=config.epochs,
                initial_epoch=initial_epoch,
                callbacks=callbacks,
                shuffle=False,  # the pipeline reshuffles every epoch itself
                verbose=verbose,
            )
        except tf.errors.InvalidArgumentError as exc:  # what _loss's check raises in the step
            if NON_FINITE not in exc.message:
                raise
            raise guard.failed_step("nan" if "NaN" in exc.message else "inf") from None
    except _NonFinite as exc:
        finished = len(run.history)
        run.write_json(FAILED, {"reason": str(exc), "finished_epochs": finished, "time": _now()})
        kept = (
            f"the weights after epoch {finished} are kept in {run.file(BACKUP)}"
            if finished
            else "no epoch had finished"
        )
        raise ZooError(f"{exc}; training stopped, {kept} (try a smaller `learning_rate`)") from None

    # model.keras carries a plain Keras loss (not the checked one), so Keras alone can load it
    # compiled; the optimizer and its state are kept.
    evaluation.plain_compiled(model)
    with files.atomic_path(run.file(MODEL)) as tmp:
        model.save(tmp)
    backup.remove()
    history = run.history
    metrics = {
        "dataset": info.name,
        "params": int(model.count_params()),
        "epochs": len(history),
        # Training and validation apart: "how long did it train" must not count validation.
        "train_seconds": round(sum(r.get("train_seconds", 0.0) for r in history), 3),
        "val_seconds": round(sum(r.get("val_seconds", 0.0) for r in history), 3),
    }
    if splits.test is not None:
        loss, accuracy = evaluation.test_metrics(model, splits.test)
        metrics.update(test_loss=float(loss), test_accuracy=float(accuracy))
    return metrics










def plot_curves(history: list[dict[str, float]], path: Path, *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    epochs = [int(r["epoch"]) + 1 for r in history]
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


class _NonFinite(Exception):
    pass


class _NanGuard(keras.callbacks.Callback):
    """Stop at the first non-finite loss, before the history or the backup can see its epoch.

    Reading the loss on the host after every step would make each step wait for the device, and
    any batch hook at all costs Python work per step. So the training loss checks its own values
    inside the compiled step (``_loss``), which stops ``fit`` at the step that broke; the step
    count then names the batch. At the end of each epoch, before any other callback's
    ``on_epoch_end``, the epoch's mean loss and the weights are checked as well.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._first_step = epoch, self._steps()

    def _steps(self) -> int:
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))  # mirrored too

    def failed_step(self, value: str) -> _NonFinite:
        batch = self._steps() - self._first_step + 1
        return _NonFinite(f"loss became {value} at epoch {self._epoch + 1}, batch {batch}")

    def on_epoch_end(self, epoch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            raise _NonFinite(f"loss became {loss} in epoch {epoch + 1}")
        if not all(np.isfinite(keras.ops.convert_to_numpy(w)).all() for w in self.model.trainable_weights):
            raise _NonFinite(f"weights became non-finite in epoch {epoch + 1}")


class _EpochTensorBoard(keras.callbacks.TensorBoard):
    """TensorBoard's per-epoch summaries, without its per-batch hooks.

    With ``update_freq="epoch"`` they write nothing, but their presence makes Keras read every
    step's logs on the host, in the training loop's own thread.
    """

    on_train_batch_begin = keras.callbacks.Callback.on_train_batch_begin
    on_train_batch_end = keras.callbacks.Callback.on_train_batch_end


class _HistoryLogger(keras.callbacks.Callback):
    """history.csv with per-epoch training and validation time and throughput, flushed every epoch."""

    def __init__(self, run: Run, train_examples: int) -> None:
        super().__init__()
        self.run = run
        self.train_examples = train_examples

    def on_epoch_begin(self, epoch, logs=None):
        self._learning_rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self._start = time.perf_counter()
        self._train_end = None

    def on_test_begin(self, logs=None):
        if self._train_end is None:
            self._train_end = time.perf_counter()  # validation is not training time

    def on_epoch_end(self, epoch, logs=None):
        end = time.perf_counter()
        train_end = self._train_end or end
        logs = logs or {}
        self.run.append_history({
            "epoch": epoch,
            **{k: f"{float(logs[k]):.6g}" for k in HISTORY_FIELDS[1:5] if k in logs},
            "learning_rate": f"{self._learning_rate:.6g}",  # at the start of the epoch
            "train_seconds": f"{train_end - self._start:.3f}",
            "val_seconds": f"{end - train_end:.3f}",
            "examples_per_second": f"{self.train_examples / max(train_end - self._start, 1e-9):.1f}",
        })


class _Backup(keras.callbacks.Callback):
    """Weights, optimizer and random-generator state after each epoch, for resuming exactly.

    Keras' BackupAndRestore overwrites its weights file in place, so a kill during the save
    leaves a file that cannot be loaded. Here each epoch is written to its own file and
    ``state.json`` is switched to it with an atomic rename only once it is complete. Weights files
    hold no seed-generator state (dropout's), so ``state.json`` carries it.
    """

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder

    def _state(self) -> dict[str, Any] | None:
        path = self.folder / "state.json"
        return json.loads(path.read_text()) if path.exists() else None

    def saved_epoch(self) -> int:
        """How many epochs the backup holds (0 without one)."""
        state = self._state()
        return int(state["epoch"]) if state else 0

    def restore(self, model: keras.Model) -> int:
        """Load the last finished epoch into ``model``; return the epoch to continue from."""
        state = self._state()
        if state is None:
            return 0
        model.optimizer.build(model.trainable_variables)  # its variables must exist to load them
        model.load_weights(self.folder / state["weights"])
        seeds, saved = _seed_states(model), state.get("seed_states")
        if saved is None:  # a backup from before they were saved: resumes, though not exactly
            return int(state["epoch"])
        if len(seeds) != len(saved):
            raise ZooError(f"the backup in {self.folder} does not fit this model (random generators)")
        for variable, value in zip(seeds, saved):
            variable.assign(value)
        return int(state["epoch"])

    def on_epoch_end(self, epoch, logs=None):
        self.folder.mkdir(exist_ok=True)
        name = f"epoch-{epoch + 1}.weights.h5"
        with files.atomic_path(self.folder / name) as tmp:
            self.model.save_weights(tmp)
        # In model order: variable names carry per-process counters (seed_generator_6).
        seeds = [keras.ops.convert_to_numpy(v).tolist() for v in _seed_states(self.model)]
        files.write_json(self.folder / "state.json", {"epoch": epoch + 1, "weights": name, "seed_states": seeds})
        for old in self.folder.glob("epoch-*.weights.h5"):
            if old.name != name:
                old.unlink()

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _seed_states(model: keras.Model) -> list[Any]:
    """The state of every seed generator in ``model`` (dropout and other random layers)."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


JIT_COMPILE = {"auto": "auto", "on": True, "off": False}  # --jit-compile -> Keras' compile()


def _optimizer(config: RunConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    lr: Any = config.learning_rate
    if config.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=config.epochs * steps_per_epoch)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(lr)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=1e-4)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)
    return keras.optimizers.RMSprop(lr)


NON_FINITE = "zoo: the training loss is not finite"


def _loss(label_smoothing: float, num_classes: int) -> keras.losses.Loss:
    return _CheckedCrossentropy(label_smoothing, num_classes)


class _CheckedCrossentropy(keras.losses.Loss):
    """Cross-entropy (with label smoothing), each example's value checked for NaN and inf on the
    device. Padded batches (zoo.data._padded) weigh their padding 0: the mean is over the real
    examples."""

    def __init__(self, label_smoothing: float, num_classes: int) -> None:
        super().__init__(name="crossentropy", reduction="mean_with_sample_weight")
        self.label_smoothing, self.num_classes = label_smoothing, num_classes

    def call(self, y_true, y_pred):
        if self.label_smoothing:
            labels = keras.ops.one_hot(keras.ops.reshape(keras.ops.cast(y_true, "int32"), (-1,)), self.num_classes)
            values = keras.losses.categorical_crossentropy(labels, y_pred, label_smoothing=self.label_smoothing)
        else:
            values = keras.losses.sparse_categorical_crossentropy(y_true, y_pred)
        return backend.checked(values, NON_FINITE)








def _resume_changes(run: Run, config: RunConfig) -> dict[str, list[Any]]:
    """Settings a resume changes, ``{key: [old, new]}``; refuse all but the allowed ones.

    Where the data lives does not change the run. After a non-finite loss a smaller learning
    rate is allowed, since that is the remedy; everything else must stay as it was.
    """
    old, new = (files.jsonable(c.to_dict()) for c in (run.config, config))
    # Runs from before `devices` was a setting ran on TensorFlow's default device.
    # How much memory the data may use and where its cache lives change neither (the recorded
    # shuffle buffer is reused).
    ignored = {"data_dir", "manual_dir", "memory_budget", "cache_dir"}
    ignored |= {"devices"} if old["devices"] == "auto" else set()
    changed = {k: [old[k], new[k]] for k in old if k not in ignored and old[k] != new[k]}
    after_blow_up = run.file(FAILED).exists()
    allowed = {"learning_rate"} if after_blow_up and new["learning_rate"] < old["learning_rate"] else set()
    refused = [k for k in changed if k not in allowed]
    if refused:
        hint = "; after a non-finite loss only a smaller `learning_rate` may change" if after_blow_up else ""
        raise ZooUsageError(
            f"`resume` with different settings than run {run.path} ({', '.join(f'`{k}`' for k in refused)}); "
            f"resume with the same command{hint}"
        )
    return changed




def _record_resume(run: Run, config: RunConfig, changes: dict[str, list[Any]], epoch: int) -> None:
    """A resume that changes settings updates config.json and says what changed when and why."""
    if not changes:
        return
    failed = run.read_json(FAILED) or {}
    record = run.record
    record["config"] = {**config.to_dict(), "hparams": record["config"]["hparams"]}
    record.setdefault("changes", []).append(
        {"from_epoch": epoch, "changed": changes, "reason": failed.get("reason", ""), "time": _now()}
    )
    run.write_json(CONFIG, record)
    run.file(FAILED).unlink(missing_ok=True)  # the run goes on; the reason is in config.json now


def _config_record(config, entry, builder, hparams, info) -> dict[str, Any]:
    """What config.json holds: enough to reproduce the run and to trace where its model came from."""
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
        "versions": versions(),
        "created": _now(),
    }


def versions() -> dict[str, str]:
    """The library versions a run or a benchmark record names."""
    return {
        "zoo": __version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tensorflow_datasets": data.TFDS_VERSION,
        "numpy": np.__version__,
    }


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
