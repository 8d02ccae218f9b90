"""The SavedModel of an export: TensorFlow ops around the model's own function, and its check.

Signature ``serving_default``: ``image`` uint8 ``[None, H, W, C]`` (the [0, 1] scaling is baked in)
-> ``probabilities`` float32 ``[None, num_classes]``, ``class_id`` int64 ``[None]`` and
``class_name`` string ``[None]``, the same whichever Keras backend trained the model. A model
trained on image folders takes images of any height, width and channel count (1 to 4) and
converts and resizes them in the graph as the folder's images were; any other refuses a batch
of another shape with an InvalidArgumentError naming the expected and received shapes. A second
signature, ``normalized``, is the model alone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from ..data.images import resize_images, to_model_input
from ..errors import ZooError
from ..models import contract

SIGNATURE = "serving_default"
# The largest difference between the reloaded SavedModel's probabilities and the trained model's
# that is still round-off, by the precision the model computes in: float32 through the same graph
# agrees to 1e-5; a 16-bit type keeps 11 (float16) or 8 (bfloat16) significant bits, and the
# SavedModel's graph may fuse and order the ops differently than Keras' predict.
TOLERANCE = {"float32": 1e-5, "mixed_float16": 5e-3, "mixed_bfloat16": 3e-2}
NORMALIZED = "normalized"  # the model itself: float32 images in [0, 1]


def verify(path: Path, model: keras.Model, images: np.ndarray, tolerance: float,
           class_names: Sequence[str] | None = None) -> float:
    """Reload the SavedModel with TensorFlow alone and compare it with the in-memory model."""
    absl = logging.getLogger("absl")
    level, _ = absl.level, absl.setLevel(logging.ERROR)  # JAX's graphs: "unsaved custom gradients"
    try:
        loaded = tf.saved_model.load(str(path))
    finally:
        absl.setLevel(level)
    serve = loaded.signatures[SIGNATURE]
    outputs = serve(image=tf.constant(images, dtype=tf.uint8))
    expected = model.predict(to_model_input(images), batch_size=256, verbose=0)
    probabilities = outputs["probabilities"].numpy()
    diff = float(np.max(np.abs(probabilities - expected)))
    if diff > tolerance:
        raise ZooError(
            f"exported model differs from the trained one (max abs diff {diff:.3g}, tolerance {tolerance:g})"
        )
    if outputs["class_id"].dtype != tf.int64 or not np.array_equal(
        outputs["class_id"].numpy(), np.argmax(probabilities, axis=-1)
    ):
        raise ZooError("exported class_id is not the argmax of the exported probabilities")
    names = names_or_ids(class_names, probabilities.shape[-1])
    served = [n.decode() for n in outputs["class_name"].numpy()]
    if served != [names[i] for i in outputs["class_id"].numpy()]:
        raise ZooError("exported class_name is not the name of the exported class_id")
    return diff


def fixed_size_warning(shape: Sequence[int], because: str) -> str:
    """What another format's file of a folder-trained model says when it cannot take any size as
    its SavedModel does: the shape it takes, why not any, and what to do instead."""
    height, width, channels = shape
    return (f"takes uint8 [N, {height}, {width}, {channels}] only, not any size as the SavedModel does: {because}; "
            f"resize images to {height}x{width} with {channels} channel{'s' if channels > 1 else ''} before "
            f"sending them, or serve the SavedModel")


def names_or_ids(class_names: Sequence[str] | None, count: int) -> list[str]:
    return list(class_names) if class_names is not None else [str(i) for i in range(count)]


def write(model: keras.Model, path: Path, any_size: bool = False, class_names: Sequence[str] | None = None) -> None:
    """The serving graph: TensorFlow ops around the model's own function.

    The model is added as an endpoint of its own (``normalized``: float32 images in [0, 1]), which
    Keras converts from whatever backend trained it (on JAX through jax2tf), and the uint8
    ``serving_default`` calls it, as Keras' documentation combines TensorFlow preprocessing with a
    model on any backend.
    """
    height, width, channels = contract.input_shape(model)
    archive = keras.export.ExportArchive()
    archive.track(model)
    model_fn = archive.add_endpoint(
        NORMALIZED, inference(model), input_signature=[tf.TensorSpec([None, height, width, channels], tf.float32)]
    )
    serve = serving_function(model_fn, contract.input_shape(model), any_size,
                             names_or_ids(class_names, contract.num_classes(model)))
    archive.add_endpoint(SIGNATURE, serve)
    archive.write_out(str(path), verbose=False)


def inference(model: keras.Model):
    """``model`` called in inference mode, always: after `fit`, a plain call can run a nested
    model's BatchNormalization (a keras.applications backbone) with the batch's statistics."""

    def normalized(images):
        return model(images, training=False)

    return normalized


def serving_function(model_fn, input_shape: Sequence[int], any_size: bool,
                     class_names: Sequence[str] | None, *, checked: bool = True) -> tf.types.experimental.GenericFunction:
    """The export's contract around ``model_fn`` (float32 images in [0, 1] -> probabilities), as a
    tf.function of one uint8 ``image`` ``[None, H, W, C]`` (``[None] * 4`` with ``any_size``: made
    ``C`` channels and resized to ``H x W`` in the graph) returning ``probabilities`` float32 and
    ``class_id`` int64, and ``class_name`` unless ``class_names`` is None.

    ``checked``: refuse a batch of another shape at run time with an InvalidArgumentError naming
    both (the SavedModel); a format whose runtime checks the declared shape itself leaves it out.
    """
    height, width, channels = input_shape
    shape = [None, None, None, None] if any_size else [None, height, width, channels]
    names = None if class_names is None else tf.constant(list(class_names))

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.uint8, name="image")])
    def serve(image):
        if checked:
            image = _checked(image, None if any_size else (height, width, channels))
        probabilities, class_id = predictions(model_fn, image, input_shape, any_size)
        outputs = {"probabilities": probabilities, "class_id": class_id}
        if names is not None:
            outputs["class_name"] = tf.gather(names, class_id)
        return outputs

    return serve


def image_spec(model: keras.Model, any_size: bool) -> tf.TensorSpec:
    """The serving input: ``image`` uint8 [N, H, W, C] of the model's size, or of any size."""
    shape = [None, None, None, None] if any_size else [None, *contract.input_shape(model)]
    return tf.TensorSpec(shape, tf.uint8, name="image")


def predictions(model_fn, image: tf.Tensor, input_shape: Sequence[int], any_size: bool) -> tuple[tf.Tensor, tf.Tensor]:
    """What every format converted from TensorFlow computes: uint8 ``image`` (made the model's
    channels and size first when ``any_size``) -> ``probabilities`` float32 (whatever the model
    computes in) and ``class_id`` int64, their argmax. ``model_fn`` takes float32 images in [0, 1]."""
    height, width, channels = input_shape
    if any_size:
        image = resize_images(_with_channels(image, channels), (height, width))
    probabilities = tf.cast(model_fn(to_model_input(image)), tf.float32)
    return probabilities, tf.argmax(probabilities, axis=-1, output_type=tf.int64)


def _checked(image: tf.Tensor, expected: tuple[int, int, int] | None) -> tf.Tensor:
    """``image`` once its shape is checked at run time: [N, H, W, C] with these H, W, C (or, with
    ``expected`` None, any H, W >= 1 and 1 to 4 channels). A served batch of another shape is
    refused with TensorFlow's InvalidArgumentError (TF Serving's INVALID_ARGUMENT), naming both."""
    shape = tf.shape(image)
    padded = tf.concat([shape, tf.zeros([4], tf.int32)], 0)  # rank < 4 still has four entries
    if expected is None:
        wanted = "[N, H, W, C] with 1 to 4 channels"
        ok = (padded[1] >= 1) & (padded[2] >= 1) & (padded[3] >= 1) & (padded[3] <= 4)
    else:
        wanted = "[N, {}, {}, {}]".format(*expected)
        ok = tf.reduce_all(tf.equal(padded[1:4], expected))
    ok = ok & tf.equal(tf.size(shape), 4)
    message = tf.strings.format(f"image must be a uint8 batch of shape {wanted}; received shape {{}}", shape)
    with tf.control_dependencies([tf.debugging.Assert(ok, [message])]):
        return tf.identity(image)


def _with_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
    """A batch of 1 to 4 channels as ``channels`` (1 or 3), as a folder's images are prepared:
    alpha dropped, colour to ITU-R 601-2 luma, gray repeated into RGB."""
    colour = tf.shape(image)[-1] >= 3
    if channels == 1:

        def luma():
            gray = tf.image.rgb_to_grayscale(tf.cast(image[..., :3], tf.float32))
            return tf.cast(tf.clip_by_value(tf.round(gray), 0.0, 255.0), tf.uint8)

        return tf.cond(colour, luma, lambda: image[..., :1])
    return tf.cond(colour, lambda: image[..., :3], lambda: tf.repeat(image[..., :1], 3, axis=-1))


