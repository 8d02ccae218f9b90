"""A run directory and its one owner, :class:`Run`: every file name of a run is defined here.

Run directory::

    config.json   everything needed to reproduce the run (config, model source, dataset, versions,
                  and the changes a resume made)
    history.csv   one row per finished epoch
    metrics.json  test metrics, parameter count, training and validation time
    model.keras   the trained model
    curves.png    loss and accuracy, train vs validation
    eval-SPLIT.json, confusion-SPLIT.png   what `zoo evaluate` measured on a split
    tensorboard/  TensorBoard logs
    backup/       the last finished epoch's state, for resuming (removed when the run completes)
    failed.json   why training stopped, if it did (a non-finite loss)
    pruned.json   why a tuning trial's pruner stopped it
    error.log     tracebacks of unexpected errors
    .lock         locked by the one process that writes the run

One writer per run: ``zoo train`` holds an OS lock (``flock(2)``) on ``.lock`` exclusively for the
whole run; evaluation and export hold it shared, so they are refused while a run is training but
run side by side. A killed process leaves no stale lock (a file is not a lock); the holder writes
its process id and host into the file so a refusal can name it. Nothing here imports TensorFlow:
the CLI opens and checks runs before TensorFlow loads.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import json
import os
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from . import files, formats
from .arguments import checked
from .config import RunConfig
from .errors import RunLockedError, ZooError, ZooUsageError, first_line

CONFIG, HISTORY, METRICS, MODEL = "config.json", "history.csv", "metrics.json", "model.keras"
CURVES, TENSORBOARD, BACKUP = "curves.png", "tensorboard", "backup"
FAILED, PRUNED, ERROR_LOG, LOCK_FILE = "failed.json", "pruned.json", "error.log", ".lock"
# train_seconds: the training part of the epoch, val_seconds its validation; examples_per_second:
# training examples per training second.
HISTORY_FIELDS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "train_seconds",
                  "val_seconds", "examples_per_second")


@contextmanager
def locked(run: Path, *, exclusive: bool) -> Iterator[None]:
    """Hold the run's lock for the block; refuse at once if another process holds it."""
    path = run / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | (os.O_CREAT if exclusive else 0), 0o644)
    except OSError as exc:
        if exclusive or exc.errno not in (errno.ENOENT, errno.EROFS, errno.EACCES, errno.EPERM):
            raise ZooError(f"cannot lock run {run}: {exc.strerror}") from None
        # No run ever trained here under a lock, or a run on a read-only share: nobody can be
        # writing it, and a reader leaves no trace.
        yield
        return
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            holder = holder or "another zoo process (an evaluation or export)"
            raise RunLockedError(
                f"run {run} is in use by {holder}; wait until it ends or stop that process"
            ) from None
        if exclusive:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
        if exclusive:
            os.ftruncate(fd, 0)  # no longer the holder; a killed holder leaves its name, harmlessly
    finally:
        os.close(fd)  # releases the lock


def training(run: Path) -> bool:
    """Whether a process holds the run's lock to write it (``zoo train``), now."""
    try:
        fd = os.open(run / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # taken at once unless a writer holds it
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


DEFAULT_RUNS = "runs"  # where `zoo train` puts a run without --run-dir
LATEST = "latest"  # a RUN_DIR argument meaning the newest run under ./runs


def find_runs(folder: str | os.PathLike = DEFAULT_RUNS) -> list[Run]:
    """The run directories in ``folder`` (itself, its folders and theirs: a bench's ``runs/``), newest first."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ZooUsageError(f"{root} is not a folder")
    found = {p.parent for pattern in (CONFIG, f"*/{CONFIG}", f"*/*/{CONFIG}") for p in root.glob(pattern)}
    runs = [Run(p) for p in found if p.name != BACKUP]
    return sorted(runs, key=lambda r: ((r.path / CONFIG).stat().st_mtime, str(r.path)), reverse=True)


def summaries(folder: str | os.PathLike = DEFAULT_RUNS) -> list[dict[str, Any]]:
    """A row per run directory in ``folder``, newest first (:meth:`Run.summary`, or ``unreadable``)."""
    rows = []
    for run in find_runs(folder):
        try:
            rows.append(run.summary())
        except ZooError as exc:  # a damaged run is a row of its own: its path, status and error
            rows.append({"run": str(run.path), "status": "unreadable", "error": str(exc)})
    return rows


def named_run(text: str | os.PathLike) -> Path:
    """A RUN_DIR as given; ``latest``: the newest run under ./runs (unless such a folder exists here)."""
    path = Path(text).expanduser()
    if str(text) != LATEST or path.exists():
        return path
    runs = find_runs(DEFAULT_RUNS) if Path(DEFAULT_RUNS).is_dir() else []
    if not runs:
        raise ZooUsageError(f"`latest` stands for the newest run under {Path(DEFAULT_RUNS).resolve()}; there is none")
    return runs[0].path


def file_kind(name: str) -> str:
    """The format kind (zoo.formats) of a run directory's JSON file ``name``."""
    kinds = {CONFIG: formats.RUN_CONFIG, METRICS: formats.RUN_METRICS, FAILED: formats.RUN_FAILED,
             PRUNED: formats.RUN_PRUNED}
    if name in kinds:
        return kinds[name]
    if name.startswith("eval-") and name.endswith(".json"):
        return formats.RUN_EVAL
    raise ValueError(f"{name} is not a JSON file of a run directory")


def _evaluation():
    """:mod:`zoo.evaluation`, TensorFlow imported first with its C++ log lines hidden."""
    from .compute.backend import import_tensorflow

    import_tensorflow()
    from . import evaluation
    return evaluation


class Run:
    """A run directory: open one to read it, or let ``zoo.train`` make one.

    ``Run.open(path)`` checks that ``path`` holds a run (a readable ``config.json``). Reading is
    lazy and cheap; ``model()``, ``evaluate()`` and ``export()`` load TensorFlow when called.
    """

    exported = None  # the ExportResult when zoo.train(..., export=...) exported it

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path).expanduser().resolve()

    def __repr__(self) -> str:
        state = "complete" if self.complete else f"{len(self.history)} epoch(s)"
        return f"Run({str(self.path)!r}, model={self.config.model!r}, {state})"

    def __fspath__(self) -> str:
        return str(self.path)

    # -- reading ------------------------------------------------------------------------------

    @classmethod
    @checked(own=("path",))
    def open(cls, path: str | os.PathLike) -> Run:
        """An existing run directory, or a one-line error saying why it is not one."""
        if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
            raise ZooUsageError(f"a run directory is a folder path, received {path!r}")
        run = cls(path)
        if not run.path.is_dir():
            kind = "a file" if run.path.exists() else "no such folder"
            raise ZooUsageError(f"{run.path} is not a run directory ({kind})")
        run.config  # noqa: B018  (reads and checks config.json)
        return run

    @property
    def config(self) -> RunConfig:
        return RunConfig.read(self.path / CONFIG)

    @property
    def record(self) -> dict[str, Any]:
        """The whole of config.json: config, model source, dataset, versions, changes (older
        formats migrated to the current one, without its ``format_version``: zoo.formats)."""
        self.config  # noqa: B018  (a one-line error for a missing or corrupted file)
        record = formats.load(formats.RUN_CONFIG, self.path / CONFIG)
        dataset = record.get("dataset")
        if not (isinstance(dataset, dict) and isinstance(dataset.get("name"), str)):
            raise ZooError(f"{self.path / CONFIG} is corrupted or not a zoo config: its dataset is {dataset!r}")
        return record

    @property
    def dataset(self) -> dict[str, Any]:
        """The dataset as the run saw it: name, version, split strings, shapes, class names."""
        return self.record["dataset"]

    @property
    def metrics(self) -> dict[str, Any] | None:
        """Test metrics and timings of a complete run (None while it is not complete)."""
        return self.read_json(METRICS)

    @property
    def complete(self) -> bool:
        return (self.path / METRICS).is_file()

    @property
    def history(self) -> list[dict[str, float | int]]:
        """A list of rows, one dict of numbers per finished epoch (history.csv; its ``epoch`` counts
        from 1, as the console and curves.png do, in runs of every format: zoo.formats)."""
        try:
            return [
                {k: int(v) if k == "epoch" else float(v) for k, v in row.items() if v not in ("", None)}
                for row in self._history_rows()
            ]
        except (ValueError, TypeError, AttributeError) as exc:  # a cell that is no number, a row cut short
            raise ZooError(f"{self.path / HISTORY} is corrupted: {first_line(exc)}") from None

    @property
    def status(self) -> str:
        """``running`` (a process is training it), ``finished``, ``failed`` (stopped at a
        non-finite loss), ``pruned`` (a tuning trial its pruner stopped) or ``interrupted``
        (resumable; so are the other two)."""
        if training(self.path):
            return "running"
        if self.complete:
            return "finished"
        stopped = [name for name, file in (("failed", FAILED), ("pruned", PRUNED)) if (self.path / file).is_file()]
        return stopped[0] if stopped else "interrupted"

    def summary(self) -> dict[str, Any]:
        """One row of ``zoo runs``: what trained on what, how far, how well, when."""
        record, history, metrics = self.record, self.history, self.metrics or {}
        return {
            "run": str(self.path),
            "model": record["config"]["model"],
            "dataset": record["dataset"]["name"],
            "status": self.status,
            "epochs": len(history),
            "of_epochs": record["config"]["epochs"],
            "val_accuracy": history[-1].get("val_accuracy") if history else None,
            "test_accuracy": metrics.get("test_accuracy", self._evaluated_test_accuracy()),
            "precision": (record.get("hardware") or {}).get("precision", record["config"]["precision"]),
            "created": record.get("created"),
        }

    def _evaluated_test_accuracy(self) -> float | None:  # a tuning study's best trial, measured afterwards
        with suppress(ZooError):  # a damaged file: the listing goes on
            return (self.read_json("eval-test.json") or {}).get("accuracy")

    def model_path(self) -> Path:
        """The trained model, which exists only once training finished."""
        path = self.path / MODEL
        if not path.is_file():
            why = "the run finished: it was moved or deleted since" if self.complete else "training did not finish"
            raise ZooUsageError(f"run {self.path} has no model.keras ({why})")
        return path

    def model(self):
        """The trained ``keras.Model``, loaded in safe mode (imports the model's plugin first)."""
        return _evaluation().load_model(self)

    @checked
    def evaluate(self, split: str | None = None, *, data_dir: str | os.PathLike | None = None,
                 manual_dir: str | os.PathLike | None = None) -> dict[str, Any]:
        """Accuracy, loss, per-class accuracy and confusion matrix on a split (default: test, else the
        held-out slice), its data where the run trained unless given; also in eval-<split>.json and .png."""
        return _evaluation().evaluate(self, split, data_dir=data_dir, manual_dir=manual_dir)

    @checked
    def export(self, export_base: str | os.PathLike, *, formats: str | Iterable[str] | None = None,
               quantize: str | None = None, max_accuracy_drop: float | None = None,
               data_dir: str | os.PathLike | None = None, manual_dir: str | os.PathLike | None = None):
        """Export as the next version under ``export_base``: a SavedModel, and beside it the other
        ``formats`` (``onnx``, ``litert``), each verified in its own runtime before any is published;
        ``quantize`` (``float16``, ``int8``) a LiteRT file, refused if it loses more than
        ``max_accuracy_drop`` points of test accuracy; ``data_dir``, ``manual_dir`` as for evaluate."""
        from .compute import backend
        from .export.request import resolve
        request = resolve(formats, quantize, max_accuracy_drop, backend.default())  # before TensorFlow loads
        return _evaluation().export(self, export_base, request, data_dir=data_dir, manual_dir=manual_dir)

    @checked
    def publish(self, dest: str | os.PathLike, *, license: str, name: str | None = None,
                dataset_terms: str | None = None):
        """Publish the finished run as the preset ``dest/name`` (default name ``model.dataset``):
        its model is reloaded and re-evaluated first; returns the :class:`zoo.presets.store.Preset`."""
        _evaluation()  # TensorFlow, quietly, before publish imports it
        from .presets import publish

        return publish.publish(self, dest, license=license, name=name, dataset_terms=dataset_terms)

    # -- writing (by the one process that holds the lock) -----------------------------------------

    def locked(self, *, exclusive: bool):
        return locked(self.path, exclusive=exclusive)

    def contents(self) -> list[Path]:
        """What the run directory holds besides its lock file."""
        return [p for p in self.path.iterdir() if p.name != LOCK_FILE] if self.path.is_dir() else []

    def file(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, payload: Mapping[str, Any]) -> None:
        """Write config.json, metrics.json, failed.json, pruned.json or an eval-<split>.json, with its format version.

        config.json's version is history.csv's too (zoo.formats): written over an older one (a
        resume of a run of an earlier zoo), it rewrites history.csv in the current format first.
        """
        current = formats.CURRENT[formats.RUN_CONFIG]
        if name == CONFIG and (self.path / HISTORY).exists() and self._format() < current:
            self.keep_history(lambda row: True)
        formats.write(file_kind(name), self.path / name, payload)

    def read_json(self, name: str) -> dict[str, Any] | None:
        """One of the files write_json writes, in the current format (None if there is none)."""
        path = self.path / name
        if not path.is_file():
            return None
        try:
            payload = formats.load(file_kind(name), path)
            if not isinstance(payload, dict):
                raise TypeError(f"a JSON {type(payload).__name__}, not an object")
            return payload
        except (ValueError, KeyError, TypeError) as exc:  # json's errors are ValueErrors
            raise ZooError(f"{path} is corrupted: {first_line(exc)}") from None

    def append_history(self, row: Mapping[str, Any]) -> None:
        """One epoch's row, flushed to disk before the epoch's backup is written."""
        path = self.path / HISTORY
        new = not path.exists()
        with path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=HISTORY_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow(row)
            f.flush()
            os.fsync(f.fileno())

    def keep_history(self, keep: Callable[[dict[str, str]], bool]) -> None:
        """Drop the rows ``keep`` rejects (stale epochs after a kill), atomically."""
        files.write_csv(self.path / HISTORY, [r for r in self._history_rows() if keep(r)], HISTORY_FIELDS)

    def _history_rows(self) -> list[dict[str, str]]:
        """history.csv's rows as text, in the current format (an older run's migrated)."""
        path = self.path / HISTORY
        if not path.exists():
            return []
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        return formats.read_history(rows, self._format())

    def _format(self) -> int:
        """The format version of config.json, and so of history.csv (zoo.formats); the current
        one before config.json is written."""
        path = self.path / CONFIG
        if not path.is_file():
            return formats.CURRENT[formats.RUN_CONFIG]
        self.config  # noqa: B018  (a one-line error for a corrupted file)
        return formats.version(formats.RUN_CONFIG, json.loads(path.read_text(encoding="utf-8")), path)

    # -- making one ---------------------------------------------------------------------------

    @classmethod
    def for_training(cls, path: str | os.PathLike, *, resume: bool) -> Run:
        """Check a run directory for ``zoo train``: new and creatable, or an unfinished run to resume.

        Creates nothing: the directory is made only once data and model are ready, so a bad
        request leaves no trace.
        """
        run = cls(path)
        if run.path.exists() and not run.path.is_dir():
            raise ZooUsageError(f"run directory {run.path} exists and is not a directory")
        if run.contents():
            if not resume:
                raise ZooUsageError(
                    f"run directory {run.path} is not empty; pass `resume` to continue it or "
                    f"choose another `run_dir`"
                )
            if run.complete:
                raise ZooUsageError(f"run {run.path} is already complete; nothing to resume")
            with run.locked(exclusive=True):  # refuse now, not after preparing the data
                pass
        elif resume:
            raise ZooUsageError(f"nothing to resume: {run.path} is empty or does not exist")
        files.check_creatable(run.path, "run directory")
        return run
