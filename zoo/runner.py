"""One runner for every model: fit, evaluate and export over a run directory.

Run directory::

    config.json   everything needed to reproduce the run (config, model source, dataset, versions)
    history.csv   one row per finished epoch
    metrics.json  test metrics, parameter count, training time
    model.keras   the trained model
    curves.png    loss and accuracy, train vs validation
    tensorboard/  TensorBoard logs
    backup/       weights and optimizer state of the last finished epoch, for --resume
                  (removed when the run completes)
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import registry

from . import __version__, data, files, export as export_lib
from . import run as run_lib
from .config import RunConfig
from .errors import ZooError, ZooUsageError

HISTORY_FIELDS = (
    "epoch",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "learning_rate",
    "seconds",
    "examples_per_second",
)


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    metrics: dict[str, Any]
    export: export_lib.ExportResult | None


def train(
    config: RunConfig,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    export_base: str | os.PathLike | None = None,
    verbose: int = 2,
) -> TrainResult:
    """Train ``config.model`` on ``config.dataset``, evaluate on test, optionally export.

    Everything that can be checked without data is checked first (builder, hyperparameters by
    building the model, dataset name and files, run directory, export base), so a bad request
    fails in seconds and leaves nothing behind. The run directory is locked for the whole run.
    """
    entry = registry.resolve(config.model)
    builder = entry.load(shown_name=config.model)
    hparams = builder.check_hparams(config.hparams)
    run = run_lib.check_new_or_resumable(run_dir, resume=resume)
    if export_base is not None:
        files.check_creatable(Path(export_base).expanduser().resolve(), "export base")
    features = data.describe(config.dataset, data_dir=config.data_dir, manual_dir=config.manual_dir)
    keras.utils.set_random_seed(config.seed)
    model = builder.build(input_shape=features.input_shape, num_classes=features.num_classes, **hparams)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()

    if resume:
        with run_lib.locked(run, exclusive=True):
            changes = _resume_changes(run, config)
            backup = _Backup(run / "backup")
            splits = _load(config, range(backup.saved_epoch(), config.epochs))
            _record_resume(run, config, changes, backup.saved_epoch())
            metrics = _fit(model, config, splits, run, entry, builder, hparams, backup, verbose)
    else:
        splits = _load(config, range(config.epochs))
        run.mkdir(parents=True, exist_ok=True)
        with run_lib.locked(run, exclusive=True):
            if run_lib.contents(run):  # another process started a run here in the meantime
                raise ZooUsageError(f"run directory {run} is not empty any more; choose another `run_dir`")
            record = _config_record(config, entry, builder, hparams, splits.info)
            files.write_json(run / "config.json", record)
            metrics = _fit(model, config, splits, run, entry, builder, hparams, None, verbose)
    exported = export(run, export_base) if export_base is not None else None
    return TrainResult(run, metrics, exported)


def _load(config: RunConfig, epochs: range) -> data.Splits:
    return data.load(
        config.dataset,
        val_fraction=config.val_split,
        batch_size=config.batch_size,
        seed=config.seed,
        data_dir=config.data_dir,
        manual_dir=config.manual_dir,
        augment=config.augment,
        epochs=epochs,
    )


def _fit(model, config, splits, run, entry, builder, hparams, restore, verbose) -> dict[str, Any]:
    """The training loop over a locked run directory; returns the metrics it wrote.

    ``restore`` is the backup to continue from (None for a new run).
    """
    info = splits.info
    model.compile(
        optimizer=_optimizer(config, splits.steps_per_epoch),
        loss=_loss(config.label_smoothing, info.num_classes),
        metrics=["accuracy"],
    )
    backup = _Backup(run / "backup")
    initial_epoch = restore.restore(model) if restore is not None else 0
    if config.schedule == "constant":
        # A constant rate is an optimizer variable that the backup restored; a resume after a
        # non-finite loss may have lowered it. (A schedule's rate follows the restored step.)
        model.optimizer.learning_rate = config.learning_rate
    # Rows of epochs after the restored one are stale (killed after the row, before the backup).
    _rewrite_history(run / "history.csv", lambda r: int(r["epoch"]) < initial_epoch)
    callbacks = [
        _NanGuard(),  # first: a broken step must never reach the history or the backup
        # The history row is written before the backup of the same epoch; a kill between the two
        # repeats that epoch on resume and the stale row is dropped above.
        _HistoryLogger(run / "history.csv", info.num_train),
        backup,
        keras.callbacks.TensorBoard(str(run / "tensorboard"), write_graph=False),
    ]
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
    except _NonFinite as exc:
        finished = len(read_history(run / "history.csv"))
        files.write_json(run / "failed.json", {"reason": str(exc), "finished_epochs": finished, "time": _now()})
        kept = (
            f"the weights after epoch {finished} are kept in {run / 'backup'}"
            if finished
            else "no epoch had finished"
        )
        raise ZooError(f"{exc}; training stopped, {kept} (try a smaller `learning_rate`)") from None

    with files.atomic_path(run / "model.keras") as tmp:
        model.save(tmp)
    backup.remove()
    history = read_history(run / "history.csv")
    metrics = {
        "model": config.model,
        "distribution": entry.dist,
        "version": entry.version,
        "hparams": {**builder.defaults(), **hparams},
        "dataset": info.name,
        "params": int(model.count_params()),
        "epochs": len(history),
        "train_seconds": round(sum(float(r["seconds"]) for r in history), 3),
    }
    if splits.test is not None:
        loss, accuracy = _plain_compiled(model).evaluate(splits.test, verbose=0)
        metrics.update(test_loss=float(loss), test_accuracy=float(accuracy))
    files.write_json(run / "metrics.json", metrics)
    plot_curves(history, run / "curves.png", title=f"{config.model} on {info.name}")
    return metrics


def evaluate(run_dir: str | os.PathLike, split: str = "test") -> dict[str, Any]:
    """Evaluate a finished run's model on a split of its dataset; writes eval-<split>.json."""
    run, config = run_lib.load_run(run_dir)
    with run_lib.locked(run, exclusive=False):  # refused while the run is still training
        model = load_model(run, config)
        ds = data.load_split(config.dataset, split, data_dir=config.data_dir, manual_dir=config.manual_dir)
        loss, accuracy = _plain_compiled(model).evaluate(ds, verbose=0)
        result = {"split": split, "loss": float(loss), "accuracy": float(accuracy)}
        files.write_json(run / f"eval-{files.safe_name(split)}.json", result)
    return result


def export(run_dir: str | os.PathLike, export_base: str | os.PathLike) -> export_lib.ExportResult:
    """Export a finished run as the next SavedModel version under ``export_base``."""
    run, config = run_lib.load_run(run_dir)
    with run_lib.locked(run, exclusive=False):  # refused while the run is still training
        model = load_model(run, config)
        info = json.loads((run / "config.json").read_text(encoding="utf-8"))["dataset"]
        # Compare on real images the model never trained on.
        images = data.sample_images(
            config.dataset,
            info["test_split"] or info["validation_split"],
            data_dir=config.data_dir,
            manual_dir=config.manual_dir,
        )
        metadata = {
            "model": config.model,
            "dataset": info["name"],
            "input_shape": info["input_shape"],
            "class_names": info["class_names"],
            "run_dir": str(run),
            "zoo_version": __version__,
        }
        return export_lib.export_model(model, export_base, check_images=images, metadata=metadata)


def load_model(run: Path, config: RunConfig) -> keras.Model:
    """Load model.keras in safe mode, after importing the plugin so its custom layers exist."""
    path = run_lib.model_file(run)
    registry.get(config.model)  # imports the plugin module: registers its serialisable objects
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a damaged zip
        raise ZooError(f"cannot load {path}: {type(exc).__name__}: {exc}") from None


def read_history(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def plot_curves(history: list[dict[str, str]], path: Path, *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    epochs = [int(r["epoch"]) + 1 for r in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        ax.plot(epochs, [float(r[metric]) for r in history], marker="o", label="train")
        ax.plot(epochs, [float(r[f"val_{metric}"]) for r in history], marker="o", label="validation")
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
    """Stop at the first non-finite loss, before the backup can save the broken weights."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise _NonFinite(f"loss became {float(loss)} at epoch {self._epoch + 1}, batch {batch + 1}")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch


class _HistoryLogger(keras.callbacks.Callback):
    """history.csv with per-epoch time and training throughput, flushed every epoch."""

    def __init__(self, path: Path, train_examples: int) -> None:
        super().__init__()
        self.path = path
        self.train_examples = train_examples

    def on_epoch_begin(self, epoch, logs=None):
        self._learning_rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self._start = time.perf_counter()
        self._train_end = None

    def on_test_begin(self, logs=None):
        if self._train_end is None:
            self._train_end = time.perf_counter()  # validation is not training throughput

    def on_epoch_end(self, epoch, logs=None):
        end = time.perf_counter()
        train_seconds = (self._train_end or end) - self._start
        logs = logs or {}
        row = {
            "epoch": epoch,
            **{k: f"{float(logs[k]):.6g}" for k in HISTORY_FIELDS[1:5] if k in logs},
            "learning_rate": f"{self._learning_rate:.6g}",  # at the start of the epoch
            "seconds": f"{end - self._start:.3f}",
            "examples_per_second": f"{self.train_examples / max(train_seconds, 1e-9):.1f}",
        }
        _append_history(self.path, row)


def _rewrite_history(path: Path, keep) -> None:
    files.write_csv(path, [r for r in read_history(path) if keep(r)], HISTORY_FIELDS)


def _append_history(path: Path, row: dict[str, Any]) -> None:
    with path.open("a", newline="") as f:
        csv.DictWriter(f, fieldnames=HISTORY_FIELDS).writerow(row)
        f.flush()
        os.fsync(f.fileno())


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
        seeds = _seed_states(model)
        if len(seeds) != len(state["seed_states"]):
            raise ZooError(f"the backup in {self.folder} does not fit this model (random generators)")
        for variable, value in zip(seeds, state["seed_states"]):
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


def _loss(label_smoothing: float, num_classes: int):
    if not label_smoothing:
        return keras.losses.SparseCategoricalCrossentropy()

    def smoothed_crossentropy(y_true, y_pred):
        labels = keras.ops.one_hot(keras.ops.reshape(keras.ops.cast(y_true, "int32"), (-1,)), num_classes)
        return keras.losses.categorical_crossentropy(labels, y_pred, label_smoothing=label_smoothing)

    return smoothed_crossentropy


def _plain_compiled(model: keras.Model) -> keras.Model:
    # Test loss is always the plain cross-entropy, whatever the training loss, so runs compare.
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    return model


def _resume_changes(run: Path, config: RunConfig) -> dict[str, list[Any]]:
    """Settings a resume changes, ``{key: [old, new]}``; refuse all but the allowed ones.

    Where the data lives does not change the run. After a non-finite loss a smaller learning
    rate is allowed, since that is the remedy; everything else must stay as it was.
    """
    ignored = {"data_dir", "manual_dir"}
    old, new = (files.jsonable(c.to_dict()) for c in (RunConfig.read(run / "config.json"), config))
    changed = {k: [old[k], new[k]] for k in old if k not in ignored and old[k] != new[k]}
    after_blow_up = (run / "failed.json").exists()
    allowed = {"learning_rate"} if after_blow_up and new["learning_rate"] < old["learning_rate"] else set()
    refused = [k for k in changed if k not in allowed]
    if refused:
        hint = "; after a non-finite loss only a smaller `learning_rate` may change" if after_blow_up else ""
        raise ZooUsageError(
            f"`resume` with different settings than run {run} ({', '.join(f'`{k}`' for k in refused)}); "
            f"resume with the same command{hint}"
        )
    return changed


def _record_resume(run: Path, config: RunConfig, changes: dict[str, list[Any]], epoch: int) -> None:
    """A resume that changes settings updates config.json and says what changed when and why."""
    if not changes:
        return
    failed = run / "failed.json"
    reason = json.loads(failed.read_text())["reason"] if failed.exists() else ""
    record = json.loads((run / "config.json").read_text(encoding="utf-8"))
    record["config"] = {**config.to_dict(), "hparams": record["config"]["hparams"]}
    record.setdefault("changes", []).append(
        {"from_epoch": epoch, "changed": changes, "reason": reason, "time": _now()}
    )
    files.write_json(run / "config.json", record)
    failed.unlink(missing_ok=True)  # the run goes on; the reason is in config.json now


def _config_record(config, entry, builder, hparams, info) -> dict[str, Any]:
    return {
        "config": {**config.to_dict(), "hparams": hparams},
        "model": {
            "name": entry.name,
            "distribution": entry.dist,
            "version": entry.version,
            "entry_point": entry.value,
            "hparams_resolved": {**builder.defaults(), **hparams},
        },
        "dataset": asdict(info),
        "versions": _versions(),
        "created": _now(),
    }


def _versions() -> dict[str, str]:
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
