"""TF-Serving SavedModels: ``EXPORT_BASE/<version>/``, written aside, verified, then renamed in.

Signature ``serving_default``: ``image`` uint8 ``[None, H, W, C]`` (the [0, 1] scaling is baked in)
-> ``probabilities`` float32 ``[None, num_classes]`` and ``class_id`` int64 ``[None]``, the same
whichever Keras backend trained the model. A second signature, ``normalized``, is the model alone.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from . import files, formats
from .data.images import resize_images, to_model_input
from .errors import ZooError, ZooUsageError

SIGNATURE = "serving_default"
NORMALIZED = "normalized"  # the model itself: float32 images in [0, 1]
TMP_PREFIX = ".tmp-"
# The largest difference between the reloaded SavedModel's probabilities and the trained model's
# that is still round-off, by the precision the model computes in: float32 through the same graph
# agrees to 1e-5; a 16-bit type keeps 11 (float16) or 8 (bfloat16) significant bits, and the
# SavedModel's graph may fuse and order the ops differently than Keras' predict.
TOLERANCE = {"float32": 1e-5, "mixed_float16": 5e-3, "mixed_bfloat16": 3e-2}


@dataclass(frozen=True)
class ExportResult:
    path: Path
    version: int
    max_abs_diff: float
    examples_compared: int
    tolerance: float


def export_model(
    model: keras.Model,
    export_base: str | os.PathLike,
    *,
    check_images: np.ndarray,
    metadata: dict[str, Any] | None = None,
    tolerance: float = TOLERANCE["float32"],
    any_size: bool = False,
) -> ExportResult:
    """Write, reload and compare a SavedModel, then publish it as the next integer version.

    ``any_size``: the signature takes images of any height and width and resizes them to the
    model's input inside the graph, as a folder's images were resized for training.
    """
    base = _export_base(export_base)
    _remove_stale_temporaries(base)
    tmp = base / f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        _write(model, tmp, any_size)
        if metadata is not None:
            # assets.extra/ is where TF Serving expects files it should ignore.
            (tmp / "assets.extra").mkdir()
            record = formats.stamp(formats.EXPORT, {**metadata, "verified_tolerance": tolerance})
            (tmp / "assets.extra" / "zoo.json").write_text(json.dumps(record, indent=2) + "\n")
        diff = verify(tmp, model, check_images, tolerance)
        version = _publish(tmp, base)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(base / str(version), version, diff, len(check_images), tolerance)


def verify(path: Path, model: keras.Model, images: np.ndarray, tolerance: float = TOLERANCE["float32"]) -> float:
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
    return diff


def _write(model: keras.Model, path: Path, any_size: bool = False) -> None:
    """The serving graph: TensorFlow ops around the model's own function.

    The model is added as an endpoint of its own (``normalized``: float32 images in [0, 1]), which
    Keras converts from whatever backend trained it (on JAX through jax2tf), and the uint8
    ``serving_default`` calls it, as Keras' documentation combines TensorFlow preprocessing with a
    model on any backend.
    """
    height, width, channels = model.input_shape[1:]
    shape = [None, None, None, channels] if any_size else [None, height, width, channels]
    archive = keras.export.ExportArchive()
    archive.track(model)

    def normalized(images):
        # Inference mode, always: after `fit`, a plain call can run a nested model's
        # BatchNormalization (a keras.applications backbone) with the batch's statistics.
        return model(images, training=False)

    model_fn = archive.add_endpoint(
        NORMALIZED, normalized, input_signature=[tf.TensorSpec([None, height, width, channels], tf.float32)]
    )

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.uint8, name="image")])
    def serve(image):
        if any_size:
            image = resize_images(image, (height, width))
        probabilities = model_fn(to_model_input(image))
        return {
            "probabilities": tf.cast(probabilities, tf.float32),  # whatever the model computes in
            "class_id": tf.argmax(probabilities, axis=-1, output_type=tf.int64),
        }

    archive.add_endpoint(SIGNATURE, serve)
    archive.write_out(str(path), verbose=False)


def _export_base(export_base: str | os.PathLike) -> Path:
    base = Path(export_base).expanduser().resolve()
    if base.exists() and not base.is_dir():
        raise ZooUsageError(f"export base {base} exists and is not a directory")
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ZooUsageError(f"cannot create export base {base}: {exc.strerror}") from None
    return base


def latest_version(base: Path) -> int:
    """The highest published version under ``base`` (0 when there is none)."""
    return max((int(p.name) for p in base.iterdir() if p.name.isdigit()), default=0) if base.is_dir() else 0


def next_version(base: Path) -> int:
    return 1 + latest_version(base)


def _publish(tmp: Path, base: Path) -> int:
    """Rename ``tmp`` to the next free version; a concurrent export simply takes the next one."""
    while True:
        version = next_version(base)
        try:
            os.rename(tmp, base / str(version))  # atomic; fails if the target has content
            return version
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise


def _remove_stale_temporaries(base: Path) -> None:
    """Remove what a killed export left behind (its process is gone); never a live one's."""
    for path in base.glob(f"{TMP_PREFIX}*"):
        pid = path.name[len(TMP_PREFIX) :].split("-")[0]
        if pid.isdigit() and not files.process_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
