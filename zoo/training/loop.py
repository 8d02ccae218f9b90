"""The training loop for any ``keras.Model`` and a locked run: the optimizer and schedule, the
checked loss, compile and fit with the callbacks, and each split loaded for the epochs to run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

from .. import evaluation, files, optimizers
from ..compute import backend, devices, multihost
from ..config import RunConfig, parse_size
from ..data import pipeline
from ..errors import ZooError
from ..presets import weights as preset_weights
from ..runs import BACKUP, FAILED, MODEL, TENSORBOARD, Run
from .callbacks import Backup, EpochTensorBoard, HistoryLogger, NanGuard, NonFinite, Unfreeze


def load_splits(
    config: RunConfig, epochs: range, placement: devices.Placement, shuffle_buffer: int | None = None
) -> pipeline.Splits:
    cluster = multihost.active()
    return pipeline.load(
        config.dataset,
        val_fraction=config.val_split,
        batch_size=config.batch_size,
        seed=config.seed,
        **config.dataset_options(),
        augment=config.augment,
        epochs=epochs,
        input=config.input,
        memory_budget=parse_size(config.memory_budget) if config.memory_budget is not None else None,
        cache_dir=config.cache_dir,
        shuffle_buffer=shuffle_buffer,
        process=(cluster.process_id, cluster.num_processes) if cluster else (0, 1),
        # Every batch is split evenly over a process's devices: JAX's, and TensorFlow's replicas,
        # which fail on a last batch they cannot share equally (9 test images on 2 devices).
        pad_to=len(placement.devices) if placement.backend == "jax" or placement.replicas > 1 else 1,
    )


def fit(
    model: keras.Model,
    splits: pipeline.Splits,
    config: RunConfig,
    run: Run,
    *,
    restore: Backup | None = None,
    verbose: int | str = "auto",
    callbacks: Sequence[keras.callbacks.Callback] = (),
    test: bool = True,
) -> dict[str, Any]:
    """Train ``model`` into a run directory whose lock the caller holds; return what it measured.

    Writes history.csv every epoch, the backup after each epoch and model.keras at the end; any
    ``keras.Model`` will do. ``splits.train`` covers the epochs still to run; ``restore`` is the
    backup to continue from; ``callbacks`` run after the zoo's own; ``test`` False leaves the test
    split untouched.
    """
    info = splits.info
    frozen = _compiled(model, splits, config, restore)
    initial_epoch = _restored(model, restore, config)
    # Rows 1..initial_epoch (the backup's epochs) stay; later ones are stale (killed before the backup).
    run.keep_history(lambda r: int(r["epoch"]) <= initial_epoch)
    guard, backup = NanGuard(), Backup(run.file(BACKUP))
    callbacks = [
        *([Unfreeze(frozen, config.freeze)] if frozen and isinstance(config.freeze, int) else []),
        guard,  # before the rest: a broken epoch must never reach the history or the backup
        # The history row is written before the backup of the same epoch; a kill between the two
        # repeats that epoch on resume and the stale row is dropped above.
        HistoryLogger(run, info.num_train), backup, EpochTensorBoard(str(run.file(TENSORBOARD)), write_graph=False),
        *callbacks,
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
    except NonFinite as exc:
        raise _stopped(run, exc) from None
    finally:
        for layer in frozen:  # frozen for training only: model.keras is an ordinary model
            layer.trainable = True

    evaluation.plain_compiled(model)  # model.keras: a plain loss Keras alone loads; the optimizer's state kept
    with files.atomic_path(run.file(MODEL)) as tmp:
        model.save(tmp)
    backup.remove()
    return _measured(model, splits, run.history, test)


def _compiled(model: keras.Model, splits: pipeline.Splits, config: RunConfig, restore: Backup | None) -> list:
    """Compile ``model`` for ``config``; return the layers frozen for the epochs to run."""
    variables = list(model.trainable_variables)  # before any layer is frozen: what the optimizer keeps
    frozen = _frozen(model, config, restore.saved_epoch() if restore is not None else 0)
    model.compile(
        optimizer=_optimizer(config, splits.steps_per_epoch),
        loss=_loss(config.label_smoothing, splits.info.num_classes),
        weighted_metrics=["accuracy"],  # padded batches' padding has weight 0
        jit_compile=KERAS_JIT_COMPILE[config.jit_compile],
    )
    if frozen:
        # Built on every variable, frozen or not: the same optimizer (state, step, schedule) trains
        # on after the layers thaw, and a backup holds its state whichever phase it was saved in.
        model.optimizer.build(variables)
    return frozen


def _frozen(model: keras.Model, config: RunConfig, start: int) -> list[keras.layers.Layer]:
    """``freeze``: the layers with weights but the head (:func:`zoo.presets.weights.head`), made
    untrainable when a run's epochs from ``start`` (0, or where a resume continues) begin in its
    frozen phase; none otherwise. ``Unfreeze`` thaws them at epoch ``freeze``."""
    freeze = config.freeze
    if freeze is None or (freeze != "all" and start >= freeze):
        return []
    head = {id(layer) for layer in preset_weights.head(model)}
    frozen = [layer for layer in model.layers if layer.weights and id(layer) not in head]
    for layer in frozen:
        layer.trainable = False
    return frozen


def _restored(model: keras.Model, restore: Backup | None, config: RunConfig) -> int:
    """Restore the backup's weights and optimizer into ``model``; the epoch to start from."""
    if restore is None:
        return 0
    initial_epoch = restore.restore(model)
    if config.schedule == "constant":
        # A constant rate is an optimizer variable that the backup restored; a resume after a
        # non-finite loss may have lowered it. (A schedule's rate follows the restored step.)
        model.optimizer.learning_rate = config.learning_rate
    return initial_epoch


def _stopped(run: Run, exc: NonFinite) -> ZooError:
    """Record in failed.json that training stopped at a non-finite loss; the error to raise."""
    finished = len(run.history)
    run.write_json(FAILED, {"reason": str(exc), "finished_epochs": finished, "time": files.timestamp()})
    kept = (
        f"the weights after epoch {finished} are kept in {run.file(BACKUP)}"
        if finished
        else "no epoch had finished"
    )
    return ZooError(f"{exc}; training stopped, {kept} (try a smaller `learning_rate`)")


def _measured(model: keras.Model, splits: pipeline.Splits, history: list[dict], test: bool) -> dict[str, Any]:
    """metrics.json's figures of a finished run: size, time, and (``test``) the test split's loss
    and accuracy; a tuning trial's run is judged on validation alone and never touches test."""
    metrics = {
        "dataset": splits.info.name,
        "params": int(model.count_params()),
        "epochs": len(history),
        # Training and validation apart: "how long did it train" must not count validation.
        "train_seconds": round(sum(r.get("train_seconds", 0.0) for r in history), 3),
        "val_seconds": round(sum(r.get("val_seconds", 0.0) for r in history), 3),
    }
    if test and splits.test is not None:
        loss, accuracy = evaluation.test_metrics(model, splits.test)
        metrics.update(test_loss=float(loss), test_accuracy=float(accuracy))
    return metrics


KERAS_JIT_COMPILE = {"auto": "auto", "on": True, "off": False}  # `jit_compile` -> compile()'s


def _optimizer(config: RunConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    lr: Any = config.learning_rate
    if config.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=config.epochs * steps_per_epoch)
    return optimizers.make(config.optimizer, lr)


NON_FINITE = "zoo: the training loss is not finite"


def _loss(label_smoothing: float, num_classes: int) -> keras.losses.Loss:
    return _CheckedCrossentropy(label_smoothing, num_classes)


class _CheckedCrossentropy(keras.losses.Loss):
    """Cross-entropy (with label smoothing), each example's value checked for NaN and inf on the
    device. Padded batches (zoo.data.padded) weigh their padding 0: the mean is over the real
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
