"""Atomic file writes: a reader, or a process killed half-way, never sees a half-written file."""

from __future__ import annotations

import csv
import errno
import fcntl
import json
import os
import re
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import ZooUsageError


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A hidden sibling to write to, renamed onto ``path`` only if the block succeeds.

    The temporary's name is unique to this call, so two processes writing the same file never
    publish each other's half; it ends with the whole file name (``.tmp-1a2b3c4d-model.keras``),
    because Keras and matplotlib choose the format from it.
    """
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def append_line(path: Path, line: str) -> None:
    """Append one line, whole, even while other processes append to the same file.

    O_APPEND puts every write at the end, but a long line can still be split into several
    writes; the lock makes each line one uninterrupted write.
    """
    data = (line.rstrip("\n") + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock(2)`` on the file ``path`` (created if missing) for the block,
    waiting for other processes that hold it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def given(path: str | os.PathLike, what: str) -> Path:
    """``path`` as an absolute Path; an empty one is a one-line ZooUsageError, never the current
    folder (``Path("")`` is ``.``)."""
    if not str(path).strip():
        raise ZooUsageError(f"{what} is empty; give a folder")
    return Path(path).expanduser().resolve()


def check_creatable(path: Path, what: str) -> None:
    """Raise a one-line ZooUsageError unless a folder can be made at ``path`` (or written in it).

    Permission bits do not tell (root, read-only mounts, /proc): a real folder is made in the
    nearest existing ancestor and removed again.
    """
    for folder in (path, *path.parents):
        if folder.exists():
            break
    if folder == path and not folder.is_dir():
        raise ZooUsageError(f"{what} {path} exists and is not a directory")
    if not folder.is_dir():
        raise ZooUsageError(f"cannot create {what} {path}: {folder} is a file")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".zoo-probe-", dir=folder))
    except OSError as exc:
        raise ZooUsageError(f"cannot create {what} {path}: {exc.strerror} in {folder}") from None


def safe_name(text: str) -> str:
    """``text`` as one file name: no separators or '..', so it cannot leave its folder."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip(".-") or "model"


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path, payload: Mapping[str, Any]) -> None:
    write_text(path, json.dumps(payload, indent=2, default=_jsonable) + "\n")


def write_csv(path: Path, rows: Iterable[Mapping[str, Any]], fields: Iterable[str]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows(rows)


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def sync_tree(path: Path) -> None:
    """Flush every file and folder under ``path`` (and ``path``) to disk: renamed into place
    afterwards, a folder cannot come back from a power cut with its files empty or cut short."""
    for folder, _, names in os.walk(path, topdown=False):
        for name in names:
            _fsync(Path(folder) / name)
        sync_folder(Path(folder))


def sync_folder(path: Path) -> None:
    """Flush the folder ``path`` itself: its entries, such as a name just renamed into it (where
    the file system can: some refuse fsync on a folder, EINVAL, and keep its entries their way)."""
    try:
        _fsync(path, os.O_DIRECTORY)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise


def _fsync(path: Path, flags: int = 0) -> None:
    fd = os.open(path, os.O_RDONLY | flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def jsonable(payload: Any) -> Any:
    """``payload`` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(payload, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "item"):  # NumPy scalars
        return value.item()
    raise TypeError(f"not JSON serialisable: {value!r}")


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a temporary named by a dead one is litter)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's: alive
        return True
    return True


def timestamp() -> str:
    """Now, as the zoo's records write it (local time with its UTC offset)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
