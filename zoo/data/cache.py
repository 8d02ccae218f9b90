"""``--cache-dir``: each split decoded once into ``Dataset.cache`` files, written in a hidden
folder and renamed into place when complete; temporaries of dead processes are removed."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from .. import files
from ..config import show_size
from ..errors import ZooError, first_line
from .catalog import decoded_bytes, features_of, num_examples, read_split

_CACHE_FILE = "examples"  # Dataset.cache's file prefix inside a split's folder


def cache_folder(builder: tfds.core.DatasetBuilder, cache_dir: str) -> Path:
    """``CACHE_DIR/<dataset>-<fingerprint>``: a dataset prepared again gets a cache of its own."""
    data = Path(builder.data_dir)
    stamp = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in data.iterdir() if p.is_file())
    digest = hashlib.sha256(repr((str(data), stamp)).encode()).hexdigest()[:12]
    return Path(cache_dir).expanduser().resolve() / files.safe_name(
        f"{builder.info.full_name.replace('/', '-')}-{digest}"
    )


def cached(builder: tfds.core.DatasetBuilder, split: str, folder: str) -> tf.data.Dataset:
    """The decoded examples of ``split`` in file order, read back from the cache, written first if needed.

    The cache is written in a hidden temporary folder and renamed into place only once complete,
    so an interrupted cache is never read back as the whole split.
    """
    # "train[:90%]" and "train[90%:]" read alike as file names; the hash keeps them apart.
    digest = hashlib.sha256(split.encode()).hexdigest()[:8]
    final = Path(folder) / f"{files.safe_name(split)}-{digest}"
    if not (final / f"{_CACHE_FILE}.index").is_file():
        fill_cache(builder, split, final)
    return read_split(builder, split).cache(str(final / _CACHE_FILE))


def fill_cache(
    builder: tfds.core.DatasetBuilder, split: str, final: Path, *, check_space: bool = True
) -> None:
    name = builder.info.name
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(final.parent)
    needed = num_examples(builder, split) * decoded_bytes(features_of(builder).input_shape)
    free = shutil.disk_usage(final.parent).free
    if check_space and needed * 1.05 > free:
        raise ZooError(
            f"`cache_dir` {final.parent.parent} has {show_size(free)} free; the decoded split "
            f"{split} of '{name}' needs about {show_size(needed)}"
        )
    print(f"zoo: writing the decoded {split} of '{name}' to {final} (once)", file=sys.stderr)
    tmp = final.with_name(f".tmp-{os.getpid()}-{time.time_ns()}-{final.name}")
    try:
        tmp.mkdir()
        # One pass through Dataset.cache writes it; batches only make the pass cheaper.
        read_split(builder, split).cache(str(tmp / _CACHE_FILE)).batch(1024).reduce(
            np.int64(0), lambda count, *_: count + 1
        )
        try:
            tmp.rename(final)
        except OSError:
            if not (final / f"{_CACHE_FILE}.index").is_file():  # not another process's cache
                raise
    except tf.errors.OpError as exc:
        raise ZooError(
            f"cannot write the cache of '{name}' {split} in {final.parent}: {first_line(exc)}"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remove_abandoned(folder: Path) -> None:
    """Temporary cache folders of processes that are gone (killed while writing)."""
    for tmp in folder.glob(".tmp-*"):
        pid = tmp.name.split("-")[1]
        if pid.isdigit() and not files.process_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)

