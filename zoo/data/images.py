"""Image ops shared by training, serving and checks: TensorFlow only, no TFDS (the export imports
them). One resizing function for preparation and the exported graph, so both resize alike."""

from __future__ import annotations

import tensorflow as tf

MAX_SHIFT = 2  # pixels, for augment=True


def to_model_input(images) -> tf.Tensor:
    """uint8 images (array or tensor) -> what every builder takes: float32 in [0, 1]."""
    return tf.cast(images, tf.float32) / 255.0


def normalise(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return to_model_input(images), labels


def random_shift(images: tf.Tensor, key: tf.Tensor) -> tf.Tensor:
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


def resize_images(images: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """uint8 images of any size -> uint8 images of ``size``: bilinear, antialiased, rounded.

    The same function resizes a folder's images while they are prepared and a served image in
    the exported SavedModel, so both see the same pixels.
    """
    resized = tf.image.resize(images, size, method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)
