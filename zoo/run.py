"""One writer per run directory: an OS lock on ``RUN/.lock`` that dies with its process.

``zoo train`` holds it exclusively for the whole run; ``zoo evaluate`` and ``zoo export`` hold it
shared, so they are refused while a run is training but run side by side with each other. The
lock is ``flock(2)`` on an open file: a killed process leaves no stale lock behind (the file stays,
but a file is not a lock). The holder writes its process id and host into the file so the refusal
can name it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import files
from .config import RunConfig
from .errors import RunLockedError, ZooError, ZooUsageError

LOCK_FILE = ".lock"


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


def contents(run: Path) -> list[Path]:
    """What the run directory holds besides its lock file."""
    return [p for p in run.iterdir() if p.name != LOCK_FILE] if run.is_dir() else []


def check_new_or_resumable(run_dir: str | os.PathLike, *, resume: bool) -> Path:
    """Resolve a run directory for ``zoo train`` and refuse to overwrite a finished or foreign one.

    Creates nothing: the directory is made only once data and model are ready, so a bad request
    leaves no trace.
    """
    path = Path(run_dir).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ZooUsageError(f"run directory {path} exists and is not a directory")
    if contents(path):
        if not resume:
            raise ZooUsageError(
                f"run directory {path} is not empty; pass `resume` to continue it or choose "
                f"another `run_dir`"
            )
        if (path / "metrics.json").exists():
            raise ZooUsageError(f"run {path} is already complete; nothing to resume")
        with locked(path, exclusive=True):  # refuse now, not after preparing the data
            pass
    elif resume:
        raise ZooUsageError(f"nothing to resume: {path} is empty or does not exist")
    files.check_creatable(path, "run directory")
    return path


def load_run(run_dir: str | os.PathLike) -> tuple[Path, RunConfig]:
    """An existing run directory and its RunConfig, or a one-line error."""
    run = Path(run_dir).expanduser().resolve()
    if not run.is_dir():
        raise ZooUsageError(f"{run} is not a run directory (no such folder)")
    return run, RunConfig.read(run / "config.json")


def model_file(run: Path) -> Path:
    """The run's trained model, which exists only once training finished."""
    path = run / "model.keras"
    if not path.is_file():
        raise ZooUsageError(f"run {run} has no model.keras (training did not finish)")
    return path
