"""The callbacks of every run: the non-finite guard, history.csv, TensorBoard per epoch, and the
crash-safe backup that makes resume exact."""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from .. import files, formats
from ..errors import ZooError
from ..runs import HISTORY_FIELDS, Run


class NonFinite(Exception):
    pass


class NanGuard(keras.callbacks.Callback):
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

    def failed_step(self, value: str) -> NonFinite:
        batch = self._steps() - self._first_step + 1
        return NonFinite(f"loss became {value} at epoch {self._epoch + 1}, batch {batch}")

    def on_epoch_end(self, epoch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            raise NonFinite(f"loss became {loss} in epoch {epoch + 1}")
        if not all(np.isfinite(keras.ops.convert_to_numpy(w)).all() for w in self.model.trainable_weights):
            raise NonFinite(f"weights became non-finite in epoch {epoch + 1}")


class Unfreeze(keras.callbacks.Callback):
    """Fine-tuning's second phase: at the start of epoch ``epoch`` (counted from 0, as Keras
    does: after ``epoch`` epochs) the frozen ``layers`` train again.

    Inside the one ``fit``, so the data iterator, the optimizer and its schedule go on as they
    were; the train step is traced anew to take the thawed variables (the optimizer was built on
    every variable). Each backend's loop fetches the train function and the trainable state
    again after ``on_epoch_begin``.
    """

    def __init__(self, layers: list, epoch: int) -> None:
        super().__init__()
        self.layers, self.epoch = layers, epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            for layer in self.layers:
                layer.trainable = True
            self.model.make_train_function(force=True)


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """TensorBoard's per-epoch summaries, without its per-batch hooks.

    With ``update_freq="epoch"`` they write nothing, but their presence makes Keras read every
    step's logs on the host, in the training loop's own thread.
    """

    on_train_batch_begin = keras.callbacks.Callback.on_train_batch_begin
    on_train_batch_end = keras.callbacks.Callback.on_train_batch_end


class HistoryLogger(keras.callbacks.Callback):
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
            "epoch": epoch + 1,  # counted from 1, as the console's "Epoch 1/3" (Keras' index + 1)
            **{k: f"{float(logs[k]):.6g}" for k in HISTORY_FIELDS[1:5] if k in logs},
            "learning_rate": f"{self._learning_rate:.6g}",  # at the start of the epoch
            "train_seconds": f"{train_end - self._start:.3f}",
            "val_seconds": f"{end - train_end:.3f}",
            "examples_per_second": f"{self.train_examples / max(train_end - self._start, 1e-9):.1f}",
        })


class Backup(keras.callbacks.Callback):
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
        return formats.load(formats.BACKUP_STATE, path) if path.exists() else None

    def saved_epoch(self) -> int:
        """How many epochs the backup holds (0 without one)."""
        state = self._state()
        return int(state["epoch"]) if state else 0

    def restore(self, model: keras.Model) -> int:
        """Load the last finished epoch into ``model``; return the epoch to continue from."""
        state = self._state()
        if state is None:
            return 0
        if not model.optimizer.built:  # its variables must exist to load them
            model.optimizer.build(model.trainable_variables)
        model.load_weights(self.folder / state["weights"])
        seeds, saved = seed_states(model), state["seed_states"]
        if saved is None:  # not recorded (zoo.formats): resumes, though not exactly
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
        seeds = [keras.ops.convert_to_numpy(v).tolist() for v in seed_states(self.model)]
        formats.write(formats.BACKUP_STATE, self.folder / "state.json",
                      {"epoch": epoch + 1, "weights": name, "seed_states": seeds})
        for old in self.folder.glob("epoch-*.weights.h5"):
            if old.name != name:
                old.unlink()

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def seed_states(model: keras.Model) -> list[Any]:
    """The state of every seed generator in ``model`` (dropout and other random layers)."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]
