"""TFDS -> tf.data. The only module of the zoo that imports tensorflow_datasets."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

import registry

from . import files, folders
from .config import show_size
from .errors import ZooError, ZooUsageError

AUTOTUNE = tf.data.AUTOTUNE

# Measured on 2 cores (scripts/bench_pipeline.py, README): with tf.data's autotuner on, whole
# stretches of training ran 1.6-1.9x slower with both cores partly idle, at random; off, never.
# AUTOTUNE below then resolves to TensorFlow's fixed defaults. As Keras does for NumPy input,
# the default graph rewrites are off too: they rebuild the pipeline at every epoch and have
# nothing to fuse here.
_OPTIONS = tf.data.Options()
_OPTIONS.autotune.enabled = False
_OPTIONS.experimental_optimization.apply_default_optimizations = False
TFDS_VERSION = tfds.__version__
MAX_SHIFT = 2  # pixels, for augment=True


@dataclass(frozen=True)
class DatasetInfo:
    """What the runner and the builders need to know about a dataset."""

    name: str
    version: str
    input_shape: tuple[int, ...]
    num_classes: int
    train_split: str
    validation_split: str
    test_split: str | None
    class_names: tuple[str, ...]
    num_train: int = 0
    num_validation: int = 0
    num_test: int = 0
    # Where the examples come from beyond TFDS's name and version: an image folder (its path,
    # files per split and class, fingerprint) or a dataset plugin (distribution and version).
    source: dict[str, Any] | None = None


@dataclass(frozen=True)
class InputPlan:
    """How a run's data reaches the model, decided once from TFDS metadata and recorded.

    ``train`` is ``"memory"`` (the decoded split held in RAM, one gather per batch) or
    ``"stream"`` (read from the TFDS shards every epoch through a shuffle buffer of
    ``shuffle_buffer`` examples); ``evaluation`` is the same choice for validation and test.
    """

    requested: str
    train: str
    evaluation: str
    reason: str
    budget_bytes: int
    decoded_bytes: dict[str, int]
    shuffle_buffer: int | None = None
    cache: str | None = None

    def record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Splits:
    train: tf.data.Dataset
    steps_per_epoch: int
    validation: tf.data.Dataset
    test: tf.data.Dataset | None
    info: DatasetInfo
    input: InputPlan | None = None
    epochs: range = range(1)  # the epochs ``train`` holds


@dataclass(frozen=True)
class Features:
    """What a model needs to be built, known from TFDS metadata before anything is prepared."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    class_names: tuple[str, ...]


def describe(
    name: str,
    *,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
    strict_files: bool = False,
) -> Features:
    """Check that ``name`` is an image-classification dataset that can be loaded, without loading it.

    Everything knowable before the work starts is checked here: the name, version and config
    against the TFDS registry, the features, and, for a dataset not prepared yet, that its data
    folder can be written and its files can be had (from ``manual_dir`` or the network).
    """
    with _no_absl_warnings():
        builder = _builder(name, data_dir, image_size, channels, strict_files)
        features = _features(builder)
        if not builder.is_prepared():
            _check_preparable(builder, manual_dir)
    return features


def split_strings(val_fraction: float) -> tuple[str, str]:
    """TFDS slices for train and validation: disjoint by construction, the same every epoch."""
    if not 0.0 < val_fraction < 1.0:
        raise ZooUsageError(f"`val_split` must be between 0 and 1 (exclusive), received {val_fraction}")
    cut = f"{100.0 * (1.0 - val_fraction):g}%"
    return f"train[:{cut}]", f"train[{cut}:]"


def load(
    name: str,
    *,
    val_fraction: float = 0.1,
    batch_size: int = 128,
    seed: int = 0,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    augment: bool = False,
    epochs: range = range(1),
    input: str = "auto",
    memory_budget: int | None = None,
    cache_dir: str | None = None,
    shuffle_buffer: int | None = None,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
    strict_files: bool = False,
    process: tuple[int, int] = (0, 1),
    pad_to: int = 1,
) -> Splits:
    """Prepare ``name`` if needed and return batched train / validation / test pipelines.

    ``train`` holds the batches of every epoch in ``epochs`` (``Splits.steps_per_epoch`` each);
    ``augment`` shifts its images by up to ``MAX_SHIFT`` pixels (validation and test never).
    ``input`` chooses the path (see :func:`plan_input`); ``shuffle_buffer`` overrides the
    streaming path's buffer size, so that a resumed run keeps the order it started with.

    ``process`` = (I, N): process I of a run on N processes trains on the I-th of N equal shares
    of the training split (the last ``num_train % N`` examples are left out), in batches of
    ``batch_size / N``, so every process runs the same steps. Validation and test are whole on
    every process: the model sees N copies of each batch, and the global metrics are the
    split's own. ``pad_to``: every batch's size is made a multiple of it (the devices of a JAX
    process share each batch evenly) with examples of weight 0; batches then carry weights.
    """
    if batch_size < 1:
        raise ZooUsageError(f"`batch_size` must be at least 1, received {batch_size}")
    index, count = process
    if batch_size % count:
        raise ZooUsageError(
            f"`batch_size` {batch_size} must be a multiple of the {count} processes (each takes an "
            f"equal part of every batch)"
        )
    train_split, val_split = split_strings(val_fraction)
    builder = prepared_builder(
        name, data_dir=data_dir, manual_dir=manual_dir, image_size=image_size, channels=channels,
        strict_files=strict_files,
    )
    info = _info(builder, train_split, val_split)
    try:
        info = dataclasses.replace(
            info,
            num_train=_num_examples(builder, train_split),
            num_validation=_num_examples(builder, val_split),
            num_test=_num_examples(builder, info.test_split) if info.test_split else 0,
        )
    except ValueError as exc:  # TFDS: a slice that rounds to no example at all
        raise ZooUsageError(
            f"`val_split` {val_fraction} leaves an empty split of '{name}' ({_first_line(exc)})"
        ) from None
    if not info.num_train or not info.num_validation:
        raise ZooUsageError(
            f"`val_split` {val_fraction} leaves {info.num_train} training and "
            f"{info.num_validation} validation examples in '{name}'; both need at least one"
        )
    plan = plan_input(builder, info, input, memory_budget, cache_dir, shuffle_buffer)
    share, batch_size = info.num_train // count, batch_size // count
    if count > 1:
        if not share:
            raise ZooUsageError(f"{info.num_train} training examples cannot be shared by {count} processes")
        # train_split is train[:X%], the first num_train examples: the shares are slices of it.
        train_split = f"train[{index * share}:{(index + 1) * share}]"
        seed += index << 32  # each share its own order and shifts; the seed of process 0 as before
    if plan.train == "memory":
        train = training_stream(
            _read(builder, train_split), batch_size=batch_size, seed=seed, epochs=epochs, augment=augment
        )
    else:
        train = streaming_training(
            builder, train_split, batch_size=batch_size, seed=seed, epochs=epochs, augment=augment,
            shuffle_buffer=plan.shuffle_buffer, cache=plan.cache,
        )

    def evaluation(split: str) -> tf.data.Dataset:
        if plan.evaluation == "memory":
            return pipeline(_read(builder, split), batch_size=batch_size)
        return streaming_pipeline(builder, split, batch_size=batch_size, cache=plan.cache)

    validation = evaluation(val_split)
    test = evaluation(info.test_split) if info.test_split else None
    if pad_to > 1:
        train, validation = _padded(train, pad_to), _padded(validation, pad_to)
        test = _padded(test, pad_to) if test is not None else None
    return Splits(
        train=train,
        steps_per_epoch=-(-share // batch_size),
        validation=validation,
        test=test,
        info=info,
        input=plan,
        epochs=epochs,
    )


def _padded(ds: tf.data.Dataset, multiple: int) -> tf.data.Dataset:
    """Batches of (images, labels, weights), each padded to a multiple of ``multiple`` examples
    with zeros of weight 0: a weighted loss and weighted metrics do not see them."""

    def pad(images: tf.Tensor, labels: tf.Tensor):
        n = tf.shape(labels)[0]
        extra = (multiple - n % multiple) % multiple
        images = tf.pad(images, [[0, extra]] + [[0, 0]] * (len(images.shape) - 1))
        weights = tf.concat([tf.ones([n]), tf.zeros([extra])], 0)
        return images, tf.pad(labels, [[0, extra]]), weights

    return ds.map(pad, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE).with_options(_OPTIONS)


# ---------------------------------------------------------------------------------------------
# Choosing the input path

# The budget's default share of the machine's memory. The memory path holds the decoded splits
# and, while it builds the training tensor, briefly a second copy of it; the model, TensorFlow
# itself and other processes (a sweep, the notebook) need the rest.
DEFAULT_BUDGET_FRACTION = 0.25
# Of the budget on the streaming path: the shuffle buffer takes one half, validation and test
# are held in memory when they fit the other.
_BUFFER_SHARE = 0.5
# Shards read at once on the streaming path, 16 examples from each in turn (TFDS's default): they
# mix before the shuffle buffer, so examples that sit together in a shard come apart.
_CYCLE = 16
# What one buffered element costs beyond its bytes (tensor headers, the buffer's bookkeeping).
_ELEMENT_OVERHEAD = 128


def machine_memory() -> int:
    """Bytes of memory this process may use: the machine's, or its container's limit if lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def default_memory_budget() -> int:
    return int(machine_memory() * DEFAULT_BUDGET_FRACTION)


def plan_input(
    builder: tfds.core.DatasetBuilder,
    info: DatasetInfo,
    requested: str = "auto",
    budget: int | None = None,
    cache_dir: str | None = None,
    shuffle_buffer: int | None = None,
) -> InputPlan:
    """Memory or stream, from the decoded sizes TFDS metadata gives (examples x image bytes).

    ``auto`` keeps the data in memory only when all three decoded splits fit ``budget``;
    ``memory`` is refused when they do not (better than being killed by the kernel halfway).
    """
    budget = budget or default_memory_budget()
    example = _decoded_bytes(info.input_shape)
    sizes = {
        "train": info.num_train * example,
        "validation": info.num_validation * example,
        "test": info.num_test * example,
    }
    total = sum(sizes.values())
    shape = "x".join(map(str, info.input_shape))
    needed = (
        f"the decoded splits of '{info.name}' take about {show_size(total)} "
        f"({info.num_train + info.num_validation + info.num_test:,} images of {shape})"
    )
    where = f"`memory_budget` {show_size(budget)}"
    if requested == "memory" and total > budget:
        raise ZooUsageError(
            f"`input` memory: {needed}, more than {where}; use `input` stream or auto, "
            f"or a larger `memory_budget`"
        )
    budget_words = f"the memory budget of {show_size(budget)}"
    if requested == "memory" or (requested == "auto" and total <= budget):
        reason = "asked for" if requested == "memory" else f"{needed}, within {budget_words}"
        return InputPlan(requested, "memory", "memory", reason, budget, sizes)
    reason = "asked for" if requested == "stream" else f"{needed}, more than {budget_words}"
    evaluation = sizes["validation"] + sizes["test"] <= budget * (1 - _BUFFER_SHARE)
    cache = _cache_folder(builder, cache_dir) if cache_dir else None
    if shuffle_buffer is None:
        # The buffer holds encoded examples (decoding comes after it), or decoded ones read back
        # from the cache.
        per_example = example if cache else _encoded_bytes_per_example(builder, "train", example)
        shuffle_buffer = int(budget * _BUFFER_SHARE // (per_example + _ELEMENT_OVERHEAD))
        shuffle_buffer = max(1, min(info.num_train, shuffle_buffer))
    return InputPlan(
        requested, "stream", "memory" if evaluation else "stream", reason, budget, sizes,
        shuffle_buffer=shuffle_buffer, cache=str(cache) if cache else None,
    )


def _num_examples(builder: tfds.core.DatasetBuilder, split: str) -> int:
    try:  # TFDS's record of the (sliced) split: nothing is read
        return int(builder.info.splits[split].num_examples)
    except KeyError:  # no split record (tfds.testing.mock_data): count what the split holds
        return _count(_read(builder, split))


def _decoded_bytes(shape: tuple[int, ...]) -> int:
    """One decoded example: uint8 pixels and an int64 label."""
    return math.prod(shape) + 8


def _encoded_bytes_per_example(builder: tfds.core.DatasetBuilder, split: str, unknown: int) -> int:
    """The mean size of one serialised example in the split's files (TFDS records the total);
    ``unknown`` where it has no record (tfds.testing.mock_data)."""
    try:
        whole = builder.info.splits[split]
    except KeyError:
        return unknown
    if whole.num_bytes and whole.num_examples:
        return -(-int(whole.num_bytes) // int(whole.num_examples))
    return unknown


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _count(ds: tf.data.Dataset) -> int:
    # TFDS attaches the exact cardinality to each (sliced) split, so this reads nothing.
    n = int(ds.cardinality())
    return n if n >= 0 else int(ds.reduce(0, lambda count, *_: count + 1))


def load_split(
    name: str,
    split: str,
    *,
    batch_size: int = 256,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
    strict_files: bool = False,
) -> tf.data.Dataset:
    """One split (e.g. ``test`` or ``train[90%:]``) as a batched, unshuffled pipeline."""
    builder = prepared_builder(
        name, data_dir=data_dir, manual_dir=manual_dir, image_size=image_size, channels=channels,
        strict_files=strict_files,
    )
    split_name = split.split("[", 1)[0]
    if not _has_split(builder, split_name):
        available = ", ".join(sorted(builder.info.splits)) or "none"
        raise ZooUsageError(f"dataset '{name}' has no split '{split_name}' (it has: {available})")
    try:  # one pass: nothing to cache, and a split of any size streams
        return streaming_pipeline(builder, split, batch_size=batch_size)
    except ValueError as exc:  # TFDS's own words on a malformed or empty slice
        raise ZooUsageError(f"bad split {split!r} of '{name}': {_first_line(exc)}") from None


def sample_images(
    name: str,
    split: str,
    count: int = 256,
    *,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
    strict_files: bool = False,
) -> np.ndarray:
    """The first ``count`` raw uint8 images of a split, e.g. to check an exported model."""
    builder = prepared_builder(
        name, data_dir=data_dir, manual_dir=manual_dir, image_size=image_size, channels=channels,
        strict_files=strict_files,
    )
    images, _ = next(iter(_read(builder, split).take(count).batch(count)))
    return images.numpy()


def pipeline(ds: tf.data.Dataset, *, batch_size: int) -> tf.data.Dataset:
    """Validation and test: uint8 examples -> batched float32 images in [0, 1], in split order.

    Decoded once into the cache, here; examples stay uint8 (4x smaller than float32) until a whole
    batch is normalised with one vectorised op.
    """
    ds = ds.cache()
    # Filled now, in one pass: a cache is kept only by an iterator that reads to its end, and
    # Keras' JAX trainer stops reading after the split's known number of batches.
    ds.reduce(np.int64(0), lambda count, _: count + 1)
    ds = ds.batch(batch_size).map(_normalise, num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE).with_options(_OPTIONS)


def training_stream(
    ds: tf.data.Dataset,
    *,
    batch_size: int,
    seed: int,
    epochs: range,
    augment: bool = False,
) -> tf.data.Dataset:
    """The training batches of every epoch in ``epochs``, one after another, read top to bottom.

    Each epoch's permutation and augmentation are a function of (seed, epoch) alone, so a run
    resumed at epoch k sees exactly the batches an uninterrupted run would have seen. The decoded
    uint8 split is held in memory as two tensors (what ``cache()`` would hold) and each batch is
    one gather from a permuted index, as Keras does for NumPy arrays: shuffling example by example
    through a buffer costs several per cent of an epoch on small models, and is a true
    permutation only while the buffer holds the whole split.
    """
    examples = next(iter(ds.batch(_count(ds))))  # decode once: (images, labels) of the split
    n = int(examples[1].shape[0])
    full, steps = n - n % batch_size, -(-n // batch_size)

    def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
        key = _epoch_key(seed, epoch)
        order = tf.argsort(tf.random.stateless_uniform([n], seed=key))
        batches = tf.data.Dataset.from_tensor_slices(tf.reshape(order[:full], [-1, batch_size]))
        if full < n:  # the last, smaller batch
            batches = batches.concatenate(tf.data.Dataset.from_tensors(order[full:]))
        return tf.data.Dataset.zip((batches, _batch_keys(key, steps)))

    def gather(batch: tuple[tf.Tensor, tf.Tensor], split: tuple[tf.Tensor, tf.Tensor]):
        index, key = batch
        images, labels = _normalise(tf.gather(split[0], index), tf.gather(split[1], index))
        # After decoding, so every epoch draws new shifts.
        return (_random_shift(images, key) if augment else images), labels

    # As in Keras' NumPy path, the split enters as a dataset element rather than as a tensor
    # captured by the map function, which the pipeline's graph would have to hold as a constant.
    split = tf.data.Dataset.from_tensors(examples).repeat()
    batches = tf.data.Dataset.range(epochs.start, epochs.stop).flat_map(one_epoch)
    ds = tf.data.Dataset.zip((batches, split)).map(gather, num_parallel_calls=AUTOTUNE)
    # flat_map hides the length; Keras needs it for progress bars and to end an epoch cleanly.
    ds = ds.apply(tf.data.experimental.assert_cardinality(len(epochs) * steps))
    return ds.prefetch(AUTOTUNE).with_options(_OPTIONS)


def streaming_training(
    builder: tfds.core.DatasetBuilder,
    split: str,
    *,
    batch_size: int,
    seed: int,
    epochs: range,
    augment: bool = False,
    shuffle_buffer: int,
    cache: str | None = None,
) -> tf.data.Dataset:
    """The training batches of every epoch in ``epochs``, read from the TFDS shards each epoch.

    TFDS's performance guide, top to bottom: the shards in a seeded random order, interleaved;
    a shuffle buffer of encoded examples; decoding after it, a batch at a time; batches
    normalised whole; prefetch. As on the memory path, an epoch's order (shard order and buffer
    seed) and augmentation are functions of (seed, epoch) alone, so a resumed run sees the
    batches an uninterrupted one would. With ``cache``, the decoded split is written to disk
    once and read back instead of the shards.
    """
    n = _num_examples(builder, split)
    steps = -(-n // batch_size)
    source = _cached(builder, split, cache) if cache else None

    # Plain Python on tensors: AutoGraph has nothing to convert, and warns about TFDS's wrappers.
    @tf.autograph.experimental.do_not_convert
    def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
        # Every random op below has its own seed, a tensor. With a graph-level seed as well
        # (keras.utils.set_random_seed sets one), TensorFlow's seed arithmetic compares the
        # tensor seed in Python and fails; this clears it for this function's graph only.
        tf.compat.v1.set_random_seed(None)
        key = _epoch_key(seed, epoch)
        seeds = tf.random.stateless_uniform(
            [2], seed=tf.random.experimental.stateless_fold_in(key, 2),
            minval=0, maxval=2**31 - 1, dtype=tf.int64,
        )
        if source is None:
            batches = _encoded_batches(
                builder, split, batch_size=batch_size, shard_seed=seeds[0],
                buffer=shuffle_buffer, buffer_seed=seeds[1],
            )
        else:
            batches = source.shuffle(shuffle_buffer, seed=seeds[1], reshuffle_each_iteration=False)
            batches = batches.batch(batch_size)
        return tf.data.Dataset.zip((batches, _batch_keys(key, steps)))

    decode = _batch_decoder(builder) if source is None else _normalise

    def prepare(batch: tuple[tf.Tensor, tf.Tensor], key: tf.Tensor):
        images, labels = decode(*batch)
        return (_random_shift(images, key) if augment else images), labels

    ds = tf.data.Dataset.range(epochs.start, epochs.stop).flat_map(one_epoch)
    ds = ds.map(prepare, num_parallel_calls=AUTOTUNE)
    ds = ds.apply(tf.data.experimental.assert_cardinality(len(epochs) * steps))
    return ds.prefetch(AUTOTUNE).with_options(_OPTIONS)


def streaming_pipeline(
    builder: tfds.core.DatasetBuilder, split: str, *, batch_size: int, cache: str | None = None
) -> tf.data.Dataset:
    """Validation and test that do not fit in memory: read (or read back from ``cache``) each
    time, in split order."""
    if cache:
        ds = _cached(builder, split, cache).batch(batch_size).map(_normalise, num_parallel_calls=AUTOTUNE)
    else:
        ds = _encoded_batches(builder, split, batch_size=batch_size)
        ds = ds.map(_batch_decoder(builder), num_parallel_calls=AUTOTUNE)
    # Reading shards hides the length; Keras ends an evaluation cleanly only when it knows it.
    steps = -(-_num_examples(builder, split) // batch_size)
    ds = ds.apply(tf.data.experimental.assert_cardinality(steps))
    return ds.prefetch(AUTOTUNE).with_options(_OPTIONS)


def _encoded_batches(
    builder: tfds.core.DatasetBuilder,
    split: str,
    *,
    batch_size: int,
    shard_seed: tf.Tensor | None = None,
    buffer: int = 0,
    buffer_seed: tf.Tensor | None = None,
) -> tf.data.Dataset:
    """Batches of (encoded image, label) of ``split``, its shards in a seeded order and its
    examples through a seeded shuffle buffer; in split order without seeds.

    The shards are read as TFDS's reader reads them (TFDS's file instructions slice the split;
    ``_CYCLE`` shards interleaved, 16 examples each in turn), but examples are parsed a batch at
    a time: TFDS parses every example on its own, which on MNIST cost 1.5 s of CPU per epoch
    against 0.1 s batched, as much as a small model's training step.
    """
    image_key, label_key = builder.info.supervised_keys
    shards = builder.info.splits[split].file_instructions
    files = tf.data.Dataset.from_tensor_slices((
        [f.filename for f in shards],
        tf.constant([f.skip for f in shards], tf.int64),
        tf.constant([f.take for f in shards], tf.int64),
    ))
    if shard_seed is not None:
        files = files.shuffle(len(shards), seed=shard_seed, reshuffle_each_iteration=False)
    # One thread reads the shards in turn: a parallel interleave hands every record between
    # threads, which cost mlp 7 % of its streamed throughput on 2 cores (measured); the reads
    # themselves are buffered and cheap beside parsing and decoding.
    examples = files.interleave(
        lambda path, skip, take: tf.data.TFRecordDataset(path).skip(skip).take(take),
        cycle_length=_CYCLE, block_length=16,
    )
    serialized = builder.info.features.get_serialized_info()
    spec = {k: tf.io.FixedLenFeature(serialized[k].shape, serialized[k].tf_dtype) for k in (image_key, label_key)}

    def parse(records: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        parsed = tf.io.parse_example(records, spec)
        return parsed[image_key], parsed[label_key]

    if buffer:
        examples = examples.shuffle(buffer, seed=buffer_seed, reshuffle_each_iteration=False)
    return examples.batch(batch_size).map(parse, num_parallel_calls=AUTOTUNE)


def _batch_decoder(builder: tfds.core.DatasetBuilder):
    """Encoded images of a batch -> float32 images in [0, 1], decoded by TFDS's image feature.

    There is no batched PNG/JPEG decoder; a loop over the batch pays TensorFlow's loop overhead
    per image, more than decoding a small image costs. So the loop runs over chunks of
    ``_CHUNK`` images, each decoded by ``_CHUNK`` ops side by side; a last, smaller batch is
    padded with a blank image, decoded and cut off again.
    """
    image = builder.info.features[builder.info.supervised_keys[0]]
    shape = tuple(image.shape)
    blank = tf.io.encode_png(np.zeros(shape, np.uint8)).numpy()

    def decode_chunk(chunk: tf.Tensor) -> tf.Tensor:
        return tf.stack([image.decode_example(chunk[i]) for i in range(_CHUNK)])

    def decode(encoded: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        n = tf.shape(encoded)[0]
        padded = tf.concat([encoded, tf.fill([(-n) % _CHUNK], blank)], 0)
        images = tf.map_fn(
            decode_chunk, tf.reshape(padded, [-1, _CHUNK]),
            fn_output_signature=tf.TensorSpec((_CHUNK, *shape), tf.uint8),
        )
        return _normalise(tf.reshape(images, (-1, *shape))[:n], labels)

    return decode


_CHUNK = 32  # images decoded per loop iteration (see _batch_decoder)


def _epoch_key(seed: int, epoch: tf.Tensor) -> tf.Tensor:
    return tf.random.experimental.stateless_fold_in(tf.constant([seed, 0], tf.int64), epoch)


def _batch_keys(epoch_key: tf.Tensor, steps: int) -> tf.data.Dataset:
    """A key per batch for its augmentation: stateless, so parallel map calls cannot reorder it."""
    shift_key = tf.random.experimental.stateless_fold_in(epoch_key, 1)
    return tf.data.Dataset.range(steps).map(
        lambda i: tf.random.experimental.stateless_fold_in(shift_key, i)
    )


# ---------------------------------------------------------------------------------------------
# The decoded cache on disk (--cache-dir)

_CACHE_FILE = "examples"  # Dataset.cache's file prefix inside a split's folder


def _cache_folder(builder: tfds.core.DatasetBuilder, cache_dir: str) -> Path:
    """``CACHE_DIR/<dataset>-<fingerprint>``: a dataset prepared again gets a cache of its own."""
    data = Path(builder.data_dir)
    stamp = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in data.iterdir() if p.is_file())
    digest = hashlib.sha256(repr((str(data), stamp)).encode()).hexdigest()[:12]
    return Path(cache_dir).expanduser().resolve() / files.safe_name(
        f"{builder.info.full_name.replace('/', '-')}-{digest}"
    )


def _cached(builder: tfds.core.DatasetBuilder, split: str, folder: str) -> tf.data.Dataset:
    """The decoded examples of ``split`` in file order, read back from the cache, written first if needed.

    The cache is written in a hidden temporary folder and renamed into place only once complete,
    so an interrupted cache is never read back as the whole split.
    """
    # "train[:90%]" and "train[90%:]" read alike as file names; the hash keeps them apart.
    digest = hashlib.sha256(split.encode()).hexdigest()[:8]
    final = Path(folder) / f"{files.safe_name(split)}-{digest}"
    if not (final / f"{_CACHE_FILE}.index").is_file():
        _fill_cache(builder, split, final)
    return _read(builder, split).cache(str(final / _CACHE_FILE))


def _fill_cache(
    builder: tfds.core.DatasetBuilder, split: str, final: Path, *, check_space: bool = True
) -> None:
    name = builder.info.name
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(final.parent)
    needed = _num_examples(builder, split) * _decoded_bytes(_features(builder).input_shape)
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
        _read(builder, split).cache(str(tmp / _CACHE_FILE)).batch(1024).reduce(
            np.int64(0), lambda count, *_: count + 1
        )
        try:
            tmp.rename(final)
        except OSError:
            if not (final / f"{_CACHE_FILE}.index").is_file():  # not another process's cache
                raise
    except tf.errors.OpError as exc:
        raise ZooError(
            f"cannot write the cache of '{name}' {split} in {final.parent}: {_first_line(exc)}"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remove_abandoned(folder: Path) -> None:
    """Temporary cache folders of processes that are gone (killed while writing)."""
    for tmp in folder.glob(".tmp-*"):
        pid = tmp.name.split("-")[1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def to_model_input(images) -> tf.Tensor:
    """uint8 images (array or tensor) -> what every builder takes: float32 in [0, 1]."""
    return tf.cast(images, tf.float32) / 255.0


def _normalise(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return to_model_input(images), labels


def _random_shift(images: tf.Tensor, key: tf.Tensor) -> tf.Tensor:
    """Translate each image of a batch by its own random whole-pixel offset, zero-filled."""
    n = tf.shape(images)[0]
    shifts = tf.random.stateless_uniform(
        [n, 2], seed=key, minval=-MAX_SHIFT, maxval=MAX_SHIFT + 1, dtype=tf.int32
    )
    shifts = tf.cast(shifts, tf.float32)
    ones, zeros = tf.ones([n, 1]), tf.zeros([n, 1])
    # Projective transforms map output to input pixels: [1, 0, dx, 0, 1, dy, 0, 0].
    transforms = tf.concat([ones, zeros, shifts[:, :1], zeros, ones, shifts[:, 1:], zeros, zeros], 1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation="NEAREST",
        fill_mode="CONSTANT",
    )


def _read(builder: tfds.core.DatasetBuilder, split: str) -> tf.data.Dataset:
    # We cache and shuffle ourselves, after decoding; TFDS's own auto-cache would be a second copy.
    return builder.as_dataset(
        split=split,
        as_supervised=True,
        shuffle_files=False,
        read_config=tfds.ReadConfig(try_autocache=False),
    )


def prepared_builder(
    name: str,
    *,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
    strict_files: bool = False,
) -> tfds.core.DatasetBuilder:
    """The TFDS builder for ``name``, prepared offline from ``manual_dir`` where needed.

    ``name`` is a TFDS catalog name, a dataset plugin's name or a folder of images.
    """
    with _no_absl_warnings():
        builder = _builder(name, data_dir, image_size, channels, strict_files)
        prepared = builder.is_prepared()
    if prepared:
        return builder
    _check_preparable(builder, manual_dir)
    config = tfds.download.DownloadConfig(
        manual_dir=manual_dir,
        # The prepared-data bucket needs the network and would only be slower to fail.
        try_download_gcs=False,
    )
    with _nothing_left_on_failure(builder), _quiet_unless_terminal():
        try:
            builder.download_and_prepare(download_config=config)
        except Exception as exc:
            if type(exc).__name__ != "NonMatchingChecksumError":
                raise
            found = re.search(r"downloaded to (.+?), has wrong checksum", str(exc))
            file = found.group(1) if found else _first_line(exc)
            raise ZooError(
                f"{file} does not have the checksum TFDS registered for dataset '{name}': it is "
                f"not the original file; replace it with the original download"
            ) from None
    return builder


def _builder(
    name: str,
    data_dir: str | None,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
    strict_files: bool = False,
) -> tfds.core.DatasetBuilder:
    """The builder ``name`` means: a folder of images, a dataset plugin or a TFDS catalog name.

    ``tfds.builder``'s errors (multi-line, several types) become one usage-error line.
    """
    if is_folder(name):
        return _folder_builder(name, data_dir, image_size, channels, strict_files)
    if image_size is not None or channels is not None:
        raise ZooUsageError(
            f"`image_size` and `channels` apply to folders of images; dataset '{name}' has "
            f"images of one size already"
        )
    if strict_files:
        raise ZooUsageError(f"`strict_files` applies to folders of images; dataset '{name}' is not one")
    plugin = registry.find_dataset(name)
    if plugin is not None:
        cls = plugin.load()
        try:
            builder = cls(data_dir=data_dir)
        except Exception as exc:  # a plugin must not take the zoo down with a traceback
            raise registry.PluginError(
                f"dataset '{name}' ({plugin.dist} {plugin.version}, {plugin.value}) cannot be "
                f"built: {type(exc).__name__}: {_first_line(exc)}"
            ) from None
        builder.zoo_source = plugin.record()
        return builder
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise ZooUsageError(
            f"unknown dataset '{name}' (see https://www.tensorflow.org/datasets/catalog)"
        ) from None
    except (AssertionError, ValueError, TypeError) as exc:  # version, config or name syntax
        # TFDS prefixes its reason with the builder's arguments; the reason is what helps.
        reason = _first_line(exc).rpartition("}\": ")[2].rstrip(".")
        raise ZooUsageError(f"cannot load dataset '{name}': {reason}") from None


def _check_preparable(builder: tfds.core.DatasetBuilder, manual_dir: str | None) -> None:
    """Fail now, with what to do, if preparing ``builder`` cannot succeed."""
    name = builder.info.full_name.split("/")[0]
    files.check_creatable(Path(builder.data_dir), f"the data folder of '{name}'")
    wrong = _wrong_size_manual_files(builder, manual_dir)
    if wrong:
        raise ZooUsageError(
            f"{wrong} is not the file dataset '{name}' needs; replace it with the original download"
        )
    missing = _missing_manual_files(builder, manual_dir)
    if missing and not _can_reach(builder):
        names = ", ".join(missing)
        where = f"`manual_dir` {manual_dir} lacks {names}" if manual_dir else f"it needs {names}"
        raise ZooError(
            f"dataset '{name}' is not prepared in {builder.data_dir} and cannot be downloaded "
            f"(no network); {where}. Pass `manual_dir` with those files (or set "
            f"ZOO_MANUAL_DIR), or `data_dir` where it is already prepared"
        )


@contextmanager
def _quiet_unless_terminal() -> Iterator[None]:
    """TFDS's progress bars only where a person watches them (not in logs)."""
    if sys.stderr.isatty():
        yield
        return
    tfds.display_progress_bar(False)
    try:
        yield
    finally:
        tfds.display_progress_bar(True)


@contextmanager
def _no_absl_warnings() -> Iterator[None]:
    """TFDS warns "Variant folder ... has no dataset_info.json" for every dataset not prepared
    yet: expected here, and it would bury the one line a failure prints."""
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        yield
    finally:
        absl.setLevel(level)


@contextmanager
def _nothing_left_on_failure(builder: tfds.core.DatasetBuilder) -> Iterator[None]:
    """Remove the folders a failed preparation created (TFDS leaves empty ones behind)."""
    version_dir = Path(builder.data_dir)
    root = Path(builder.data_dir_root)
    made = [version_dir, *version_dir.parents]
    made = [p for p in made[: made.index(root) + 1] if not p.exists()]
    made += [p for p in (root / "downloads" / "extracted", root / "downloads") if not p.exists()]
    before = set(version_dir.parent.glob("*")) if version_dir.parent.exists() else set()
    try:
        yield
    except BaseException:
        if version_dir.parent.exists():  # TFDS's half-written "incomplete.XXXXXX_<version>"
            for path in set(version_dir.parent.glob(f"incomplete.*_{version_dir.name}")) - before:
                shutil.rmtree(path, ignore_errors=True)
        for path in sorted(made, key=lambda p: len(p.parts), reverse=True):
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        raise


def _wrong_size_manual_files(builder: tfds.core.DatasetBuilder, manual_dir: str | None) -> str:
    """The first file in ``manual_dir`` whose size differs from TFDS's record of it ("" if none)."""
    if not manual_dir:
        return ""
    for url, info in sorted((builder.url_infos or {}).items()):
        path = Path(manual_dir) / (info.filename or Path(urlparse(url).path).name)
        if info.size and path.is_file() and path.stat().st_size != int(info.size):
            return f"{path} ({path.stat().st_size:,} bytes, TFDS registered {int(info.size):,})"
    return ""


def _missing_manual_files(builder: tfds.core.DatasetBuilder, manual_dir: str | None) -> list[str]:
    """Files the builder downloads that are not in ``manual_dir`` (names from TFDS's checksums)."""
    url_infos = builder.url_infos or {}
    names = sorted({info.filename or Path(urlparse(url).path).name for url, info in url_infos.items()})
    if not names:
        return []  # unknown: let TFDS decide
    folder = Path(manual_dir) if manual_dir else None
    return [n for n in names if folder is None or not (folder / n).is_file()]


def _can_reach(builder: tfds.core.DatasetBuilder, timeout: float = 3.0) -> bool:
    """One quick connection to the first download host; TFDS itself would retry for minutes."""
    if os.environ.get("ZOO_OFFLINE"):
        return False
    urls = list((builder.url_infos or {}).keys())
    if not urls:
        return True
    url = urlparse(urls[0])
    try:
        with socket.create_connection(
            (url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=timeout
        ):
            return True
    except OSError:
        return False


def _has_split(builder: tfds.core.DatasetBuilder, split_name: str) -> bool:
    try:  # indexing, not `in`: it also answers for tfds.testing.mock_data's split dict
        builder.info.splits[split_name]
    except (KeyError, ValueError):  # TFDS raises ValueError for an unknown split name
        return False
    return True


def _features(builder: tfds.core.DatasetBuilder) -> Features:
    info = builder.info
    keys = info.supervised_keys
    if not keys or len(keys) != 2:
        raise ZooUsageError(f"dataset '{info.name}' has no (image, label) supervised keys")
    image_key, label_key = keys
    image, label = info.features[image_key], info.features[label_key]
    if not isinstance(image, tfds.features.Image) or not isinstance(label, tfds.features.ClassLabel):
        raise ZooUsageError(f"dataset '{info.name}' is not an image-classification dataset")
    file_format = getattr(info, "file_format", None)
    if file_format is not None and file_format != tfds.core.FileFormat.TFRECORD:
        # TFDS's tf.data reader (as_dataset) reads TFRecord files only.
        raise ZooUsageError(
            f"dataset '{info.name}' is stored as {file_format.value}, which TFDS reads only "
            f"through as_data_source; prepare it as TFRecord (file_format='tfrecord')"
        )
    if any(d is None for d in image.shape):
        raise ZooUsageError(
            f"dataset '{info.name}' has images of varying size {image.shape}; the zoo needs a fixed shape"
        )
    return Features(
        name=getattr(builder, "zoo_name", info.name),  # a folder: its path
        input_shape=tuple(int(d) for d in image.shape),
        num_classes=int(label.num_classes),
        class_names=tuple(label.names),
    )


def _info(builder: tfds.core.DatasetBuilder, train_split: str, val_split: str) -> DatasetInfo:
    features = _features(builder)
    return DatasetInfo(
        name=features.name,
        version=str(builder.info.version),
        input_shape=features.input_shape,
        num_classes=features.num_classes,
        train_split=train_split,
        validation_split=val_split,
        test_split="test" if _has_split(builder, "test") else None,
        class_names=features.class_names,
        source=getattr(builder, "zoo_source", None),
    )


# ---------------------------------------------------------------------------------------------
# Folders of images, prepared as TFDS datasets


class ZooImageFolder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Images from class folders, prepared once per folder content and image shape.

    The config name is the folder's fingerprint and shape, so a folder whose files change (or
    the same folder at another ``image_size``) is prepared anew, in a folder of its own, while
    an unchanged one is read from ``data_dir`` again.
    """

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        "1.1.0": "Decoded by Pillow (zoo.folders.decode): every format it reads, first frames, EXIF "
                 "orientation, 16 bits scaled to 8; PNG and JPEG pixels may differ from 1.0.0's.",
        "1.0.0": "PNG and JPEG, decoded by tf.io.decode_image.",
    }

    def __init__(self, folder: folders.Folder, **kwargs: Any) -> None:
        self.folder = folder
        self.zoo_name, self.zoo_source = str(folder.path), folder.record()
        height, width, channels = folder.shape
        name = f"{folder.fingerprint}-{height}x{width}x{channels}"
        super().__init__(config=tfds.core.BuilderConfig(name=name), **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=f"Images from {self.folder.path}",
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=self.folder.shape),
                "label": tfds.features.ClassLabel(names=list(self.folder.classes)),
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {split: self._examples(split) for split in self.folder.files}

    def _examples(self, split: str):
        for label, names in self.folder.files[split].items():
            for name in names:
                yield name, {"image": _decode_file(self.folder.path / name, self.folder.shape), "label": label}

    def _generate_examples(self):  # the splits above are generators already
        raise NotImplementedError


_SCANNED: dict[tuple, folders.Folder] = {}


def is_folder(name: str) -> bool:
    """Whether ``--dataset`` names a folder of images rather than a plugin or TFDS dataset.

    Written like a path, it is one; a bare name only when it is an existing folder that no
    dataset plugin and no TFDS builder is called (TFDS names may hold "/": ``imagenet_resized/64x64``).
    """
    if not name.strip():
        raise ZooUsageError("`dataset` is empty; give a TFDS name, a dataset plugin or a folder")
    if folders.written_as_path(name):
        return True
    if not Path(name).expanduser().is_dir():
        return False
    return registry.find_dataset(name) is None and name.split(":")[0].split("/")[0] not in tfds.list_builders()


def dataset_name(name: str | os.PathLike) -> str:
    """``dataset`` as a run records it: a folder as an absolute path (a resume or a bench job may
    start in another working directory), any other name as it is."""
    name = os.fspath(name)
    return str(Path(name).expanduser().resolve()) if is_folder(name) else name


def _folder_builder(
    name: str,
    data_dir: str | None,
    image_size: tuple[int, int] | None,
    channels: int | None,
    strict_files: bool = False,
) -> ZooImageFolder:
    # Reading every image's header takes seconds for a large folder; a run asks several times.
    folder = folders.walk(name, strict=strict_files)
    key = (folder.path, folder.fingerprint, image_size, channels, folder.skipped)
    if key not in _SCANNED:
        _SCANNED[key] = folders.with_shape(folder, image_size, channels)
    return ZooImageFolder(_SCANNED[key], data_dir=data_dir)


def resize_images(images: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """uint8 images of any size -> uint8 images of ``size``: bilinear, antialiased, rounded.

    The same function resizes a folder's images while they are prepared and a served image in
    the exported SavedModel, so both see the same pixels.
    """
    resized = tf.image.resize(images, size, method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def _decode_file(path: Path, shape: tuple[int, int, int]) -> np.ndarray:
    """One image as prepared: decoded by Pillow (every format alike), resized as served."""
    image = folders.decode(path, shape[2])
    if tuple(image.shape[:2]) != shape[:2]:
        image = resize_images(image, shape[:2]).numpy()
    return image
