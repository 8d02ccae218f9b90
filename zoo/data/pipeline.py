"""The input pipelines: ``load`` gives a run its splits, in memory or streamed, batched, shuffled
per epoch by the run's seed, normalised per batch, prefetched."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ..errors import ZooUsageError, first_line
from .budget import InputChoice, choose_input
from .catalog import (
    AUTOTUNE,
    OPTIONS,
    DatasetInfo,
    count,
    has_split,
    info_of,
    num_examples,
    prepared_builder,
    read_split,
    split_strings,
)
from .images import normalise, random_shift
from .stream import batch_keys, epoch_key, streaming_pipeline, streaming_training


@dataclass(frozen=True)
class Splits:
    train: tf.data.Dataset
    steps_per_epoch: int
    validation: tf.data.Dataset
    test: tf.data.Dataset | None
    info: DatasetInfo
    input: InputChoice | None = None
    epochs: range = range(1)  # the epochs ``train`` holds


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
    ``input`` chooses the path (:func:`choose_input`); ``shuffle_buffer`` overrides the streaming
    path's buffer size, so that a resumed run keeps the order it started with. ``process`` =
    (I, N): process I of N trains on the I-th of N equal shares of the training split (the last
    ``num_train % N`` examples are left out) in batches of ``batch_size / N``; validation and test
    are whole on every process, so the global metrics are the split's own. ``pad_to``: every
    batch's size is made a multiple of it (a JAX process's devices share each batch evenly) with
    examples of weight 0; batches then carry weights.
    """
    count = process[1]
    _check_batch(batch_size, count)
    train_split, val_split = split_strings(val_fraction)
    builder = prepared_builder(
        name, data_dir=data_dir, manual_dir=manual_dir, image_size=image_size, channels=channels,
        strict_files=strict_files,
    )
    info = _sized_info(builder, name, train_split, val_split, val_fraction)
    choice = choose_input(builder, info, input, memory_budget, cache_dir, shuffle_buffer)
    share, batch_size = info.num_train // count, batch_size // count
    if count > 1:
        train_split, seed = _share(info.num_train, process, seed)
    train = _training(
        builder, choice, train_split, batch_size=batch_size, seed=seed, epochs=epochs, augment=augment
    )
    validation = _evaluation(builder, choice, val_split, batch_size)
    test = _evaluation(builder, choice, info.test_split, batch_size) if info.test_split else None
    if pad_to > 1:
        train, validation = padded(train, pad_to), padded(validation, pad_to)
        test = padded(test, pad_to) if test is not None else None
    return Splits(train=train, steps_per_epoch=-(-share // batch_size), validation=validation, test=test,
                  info=info, input=choice, epochs=epochs)


def _share(num_train: int, process: tuple[int, int], seed: int) -> tuple[str, int]:
    """Process I of N: its slice of the training split and its seed."""
    index, count = process
    share = num_train // count
    if not share:
        raise ZooUsageError(f"{num_train} training examples cannot be shared by {count} processes")
    # The training split is train[:X%], the first num_train examples: the shares are slices of it.
    # Each share has its own order and shifts; process 0 keeps the run's seed.
    return f"train[{index * share}:{(index + 1) * share}]", seed + (index << 32)


def _check_batch(batch_size: int, processes: int) -> None:
    if batch_size < 1:
        raise ZooUsageError(f"`batch_size` must be at least 1, received {batch_size}")
    if batch_size % processes:
        raise ZooUsageError(
            f"`batch_size` {batch_size} must be a multiple of the {processes} processes (each takes an "
            f"equal part of every batch)"
        )


def _training(builder, choice: InputChoice, split: str, **options) -> tf.data.Dataset:
    """The training batches of ``split`` on the path ``choice`` picked."""
    if choice.train == "memory":
        return training_stream(read_split(builder, split), **options)
    return streaming_training(
        builder, split, shuffle_buffer=choice.shuffle_buffer, cache=choice.cache, **options
    )


def _evaluation(builder, choice: InputChoice, split: str, batch_size: int) -> tf.data.Dataset:
    """Validation or test batches of ``split`` on the path ``choice`` picked."""
    if choice.evaluation == "memory":
        return pipeline(read_split(builder, split), batch_size=batch_size)
    return streaming_pipeline(builder, split, batch_size=batch_size, cache=choice.cache)


def _sized_info(builder, name: str, train_split: str, val_split: str, val_fraction: float) -> DatasetInfo:
    """The dataset's info with the sizes of the run's splits, none of them empty."""
    info = info_of(builder, train_split, val_split)
    try:
        info = dataclasses.replace(
            info,
            num_train=num_examples(builder, train_split),
            num_validation=num_examples(builder, val_split),
            num_test=num_examples(builder, info.test_split) if info.test_split else 0,
        )
    except ValueError as exc:  # TFDS: a slice that rounds to no example at all
        raise ZooUsageError(
            f"`val_split` {val_fraction} leaves an empty split of '{name}' ({first_line(exc)})"
        ) from None
    if not info.num_train or not info.num_validation:
        raise ZooUsageError(
            f"`val_split` {val_fraction} leaves {info.num_train} training and "
            f"{info.num_validation} validation examples in '{name}'; both need at least one"
        )
    return info


def padded(ds: tf.data.Dataset, multiple: int) -> tf.data.Dataset:
    """Batches of (images, labels, weights), each padded to a multiple of ``multiple`` examples
    with zeros of weight 0: a weighted loss and weighted metrics do not see them."""

    def pad(images: tf.Tensor, labels: tf.Tensor):
        n = tf.shape(labels)[0]
        extra = (multiple - n % multiple) % multiple
        images = tf.pad(images, [[0, extra]] + [[0, 0]] * (len(images.shape) - 1))
        weights = tf.concat([tf.ones([n]), tf.zeros([extra])], 0)
        return images, tf.pad(labels, [[0, extra]]), weights

    return ds.map(pad, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE).with_options(OPTIONS)


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
    if not has_split(builder, split_name):
        available = ", ".join(sorted(builder.info.splits)) or "none"
        raise ZooUsageError(
            f"dataset '{name}' has no split '{split_name}' (it has: {available}; a slice of one works "
            f"too, e.g. train[90%:] or train[:1000])"
        )
    try:  # one pass: nothing to cache, and a split of any size streams
        if not num_examples(builder, split):
            raise ValueError("it has no examples")
        return streaming_pipeline(builder, split, batch_size=batch_size)
    except ValueError as exc:  # TFDS's own words on a malformed or empty slice
        raise ZooUsageError(f"bad split {split!r} of '{name}': {first_line(exc)}") from None


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
    prepare: bool = True,
) -> np.ndarray:
    """The first ``count`` raw uint8 images of a split, e.g. to check an exported model
    (``prepare``: as :func:`zoo.data.catalog.prepared_builder` takes it)."""
    return split_arrays(name, split, count, data_dir=data_dir, manual_dir=manual_dir, image_size=image_size,
                        channels=channels, strict_files=strict_files, prepare=prepare)[0]


def split_arrays(
    name: str,
    split: str,
    count: int | None = None,
    *,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
    strict_files: bool = False,
    prepare: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` (None: all) raw uint8 images of a split and their labels, in split order,
    e.g. to calibrate a quantized export or measure its accuracy outside Keras."""
    builder = prepared_builder(
        name, data_dir=data_dir, manual_dir=manual_dir, image_size=image_size, channels=channels,
        strict_files=strict_files, prepare=prepare,
    )
    ds = read_split(builder, split)
    batches = list((ds if count is None else ds.take(count)).batch(1024).as_numpy_iterator())
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def pipeline(ds: tf.data.Dataset, *, batch_size: int) -> tf.data.Dataset:
    """Validation and test: uint8 examples -> batched float32 images in [0, 1], in split order.

    Decoded once into the cache, here; examples stay uint8 (4x smaller than float32) until a whole
    batch is normalised with one vectorised op.
    """
    ds = ds.cache()
    # Filled now, in one pass: a cache is kept only by an iterator that reads to its end, and
    # Keras' JAX trainer stops reading after the split's known number of batches.
    ds.reduce(np.int64(0), lambda count, _: count + 1)
    ds = ds.batch(batch_size).map(normalise, num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE).with_options(OPTIONS)


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
    examples = next(iter(ds.batch(count(ds))))  # decode once: (images, labels) of the split
    n = int(examples[1].shape[0])
    full, steps = n - n % batch_size, -(-n // batch_size)

    def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
        key = epoch_key(seed, epoch)
        order = tf.argsort(tf.random.stateless_uniform([n], seed=key))
        batches = tf.data.Dataset.from_tensor_slices(tf.reshape(order[:full], [-1, batch_size]))
        if full < n:  # the last, smaller batch
            batches = batches.concatenate(tf.data.Dataset.from_tensors(order[full:]))
        return tf.data.Dataset.zip((batches, batch_keys(key, steps)))

    def gather(batch: tuple[tf.Tensor, tf.Tensor], split: tuple[tf.Tensor, tf.Tensor]):
        index, key = batch
        images, labels = normalise(tf.gather(split[0], index), tf.gather(split[1], index))
        # After decoding, so every epoch draws new shifts.
        return (random_shift(images, key) if augment else images), labels

    # As in Keras' NumPy path, the split enters as a dataset element rather than as a tensor
    # captured by the map function, which the pipeline's graph would have to hold as a constant.
    split = tf.data.Dataset.from_tensors(examples).repeat()
    batches = tf.data.Dataset.range(epochs.start, epochs.stop).flat_map(one_epoch)
    ds = tf.data.Dataset.zip((batches, split)).map(gather, num_parallel_calls=AUTOTUNE)
    # flat_map hides the length; Keras needs it for progress bars and to end an epoch cleanly.
    ds = ds.apply(tf.data.experimental.assert_cardinality(len(epochs) * steps))
    return ds.prefetch(AUTOTUNE).with_options(OPTIONS)
