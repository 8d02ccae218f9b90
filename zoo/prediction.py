"""``zoo predict``: the top classes of image files, from a finished run's model or an exported
SavedModel. Each file is read as a folder's images are (any format Pillow reads, EXIF orientation
applied, converted to the model's channels) and resized to the model's input as in training."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import evaluation
from .data import imagefiles
from .errors import ZooUsageError
from .export import bundle, saved_model
from .presets import catalog as preset_catalog
from .runs import CONFIG, Run, named_run

BATCH = 256  # images per call: a few thousand files need no more memory than this many


@dataclass(frozen=True)
class Target:
    """What answers: a run's model or an export, with the shape it takes and its class names."""

    kind: str  # "run", "export" or "preset"
    path: Path
    input_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    probabilities: Callable[[np.ndarray], np.ndarray]  # uint8 [N, H, W, C] -> float32 [N, classes]


def open_target(text: str | os.PathLike) -> Target:
    """A run directory (or ``latest``), an export version (``EXPORT_BASE/3``), an export base
    (its newest version) or a preset (verified)."""
    preset = preset_catalog.named(text)
    if preset is not None:
        return _preset(preset)
    path = Path(text).expanduser()
    if (path / "saved_model.pb").is_file():
        return _export(path.resolve())
    if path.is_dir() and not (path / CONFIG).is_file():
        newest = bundle.latest_version(path)
        if newest:
            return _export((path / str(newest)).resolve())
        raise ZooUsageError(
            f"{path} is neither a run directory (no config.json) nor an export (no saved_model.pb, "
            f"no numbered versions)"
        )
    run = Run.open(named_run(text))
    run.model_path()  # a one-line error for a run that did not finish
    info = run.dataset
    return _keras("run", run.path, evaluation.load_model(run), info["input_shape"], info["class_names"])


def _preset(preset) -> Target:
    from .presets import weights

    model = weights.build(preset)  # verifies its files first
    return _keras("preset", preset.path, model, preset.input_shape, preset.class_names)


def _keras(kind: str, path: Path, model, input_shape, class_names) -> Target:
    """A Keras model that answers, in inference mode, for images as a folder's are read."""
    from .data.images import to_model_input

    def probabilities(images: np.ndarray) -> np.ndarray:
        return np.asarray(model(to_model_input(images), training=False), dtype=np.float32)

    return Target(kind, path, tuple(input_shape), tuple(class_names), probabilities)


def _export(path: Path) -> Target:
    import tensorflow as tf

    metadata_file = path / "assets.extra" / "zoo.json"
    try:
        metadata = json.loads(metadata_file.read_text())
        shape, names = tuple(metadata["input_shape"]), tuple(metadata["class_names"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ZooUsageError(f"{path} is not a zoo export (no readable assets.extra/zoo.json)") from None
    serve = tf.saved_model.load(str(path)).signatures[saved_model.SIGNATURE]

    def probabilities(images: np.ndarray) -> np.ndarray:
        return serve(image=tf.constant(images))["probabilities"].numpy()

    return Target("export", path, shape, names, probabilities)


def read_images(paths: Sequence[str | os.PathLike], shape: tuple[int, int, int],
                unreadable: list[tuple[str, str]] | None = None) -> tuple[list, np.ndarray]:
    """The files of ``paths`` that could be read, and their pixels as uint8 [N, H, W, C]: each
    file decoded to C channels and resized to H x W as in training. A file that is not an image is
    a one-line error naming it, or, with ``unreadable``, listed there (path, reason) and left out."""
    from .data.images import resize_images

    height, width, channels = shape
    read, images = [], []
    for path in paths:
        try:
            image = imagefiles.decode(path, channels)
        except ZooUsageError as exc:
            if unreadable is None:
                raise
            unreadable.append((str(path), str(exc)))
            continue
        if image.shape[:2] != (height, width):
            image = resize_images(image, (height, width)).numpy()
        read.append(path)
        images.append(image)
    return read, np.stack(images) if images else np.zeros((0, height, width, channels), np.uint8)


def predict(target: Target, paths: Sequence[str | os.PathLike], top: int = 3,
            unreadable: list[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    """For each file, its ``top`` classes with their probabilities, most likely first. A file that
    is not an image stops it with a one-line error, or, given a list ``unreadable``, is added to
    it as (path, reason) and the other files are still answered."""
    if top < 1:
        raise ZooUsageError(f"`top` must be at least 1, received {top}")
    results = []
    for start in range(0, len(paths), BATCH):
        chunk, images = read_images(paths[start:start + BATCH], target.input_shape, unreadable)
        if not chunk:
            continue
        for path, row in zip(chunk, target.probabilities(images)):
            best = np.argsort(-row, kind="stable")[:top]
            results.append({"image": str(path), "top": [
                {"class_id": int(i), "class_name": target.class_names[i], "probability": float(row[i])}
                for i in best
            ]})
    return results
