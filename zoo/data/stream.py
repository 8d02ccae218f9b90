"""Streaming a split bigger than memory from its TFDS shards: a seeded shard order, an interleave,
a shuffle buffer of encoded examples, then decoding a batch at a time. The shard order and the
buffer's seed are functions of (seed, epoch), so a resumed run reads what it would have read."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from .cache import cached
from .catalog import AUTOTUNE, OPTIONS, num_examples
from .images import normalise, random_shift

# Shards read at once on the streaming path, 16 examples from each in turn (TFDS's default): they
# mix before the shuffle buffer, so examples that sit together in a shard come apart.
_CYCLE = 16


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
    n = num_examples(builder, split)
    steps = -(-n // batch_size)
    source = cached(builder, split, cache) if cache else None

    # Plain Python on tensors: AutoGraph has nothing to convert, and warns about TFDS's wrappers.
    @tf.autograph.experimental.do_not_convert
    def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
        # Every random op below has its own seed, a tensor. With a graph-level seed as well
        # (keras.utils.set_random_seed sets one), TensorFlow's seed arithmetic compares the
        # tensor seed in Python and fails; this clears it for this function's graph only.
        tf.compat.v1.set_random_seed(None)
        key = epoch_key(seed, epoch)
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
        return tf.data.Dataset.zip((batches, batch_keys(key, steps)))

    decode = _batch_decoder(builder) if source is None else normalise

    def prepare(batch: tuple[tf.Tensor, tf.Tensor], key: tf.Tensor):
        images, labels = decode(*batch)
        return (random_shift(images, key) if augment else images), labels

    ds = tf.data.Dataset.range(epochs.start, epochs.stop).flat_map(one_epoch)
    ds = ds.map(prepare, num_parallel_calls=AUTOTUNE)
    ds = ds.apply(tf.data.experimental.assert_cardinality(len(epochs) * steps))
    return ds.prefetch(AUTOTUNE).with_options(OPTIONS)


def streaming_pipeline(
    builder: tfds.core.DatasetBuilder, split: str, *, batch_size: int, cache: str | None = None
) -> tf.data.Dataset:
    """Validation and test that do not fit in memory: read (or read back from ``cache``) each
    time, in split order."""
    if cache:
        ds = cached(builder, split, cache).batch(batch_size).map(normalise, num_parallel_calls=AUTOTUNE)
    else:
        ds = _encoded_batches(builder, split, batch_size=batch_size)
        ds = ds.map(_batch_decoder(builder), num_parallel_calls=AUTOTUNE)
    # Reading shards hides the length; Keras ends an evaluation cleanly only when it knows it.
    steps = -(-num_examples(builder, split) // batch_size)
    ds = ds.apply(tf.data.experimental.assert_cardinality(steps))
    return ds.prefetch(AUTOTUNE).with_options(OPTIONS)


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
        return normalise(tf.reshape(images, (-1, *shape))[:n], labels)

    return decode


_CHUNK = 32  # images decoded per loop iteration (see _batch_decoder)


def epoch_key(seed: int, epoch: tf.Tensor) -> tf.Tensor:
    return tf.random.experimental.stateless_fold_in(tf.constant([seed, 0], tf.int64), epoch)


def batch_keys(epoch_key: tf.Tensor, steps: int) -> tf.data.Dataset:
    """A key per batch for its augmentation: stateless, so parallel map calls cannot reorder it."""
    shift_key = tf.random.experimental.stateless_fold_in(epoch_key, 1)
    return tf.data.Dataset.range(steps).map(
        lambda i: tf.random.experimental.stateless_fold_in(shift_key, i)
    )
