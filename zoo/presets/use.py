"""Using a preset where a run could be used: evaluate it on its dataset, export it for serving.
Nothing is written into the preset (it may be a read-only shared folder)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from .. import evaluation
from ..compute import devices
from ..config import RunConfig
from ..data import pipeline
from ..errors import ZooUsageError
from ..export import bundle as export_lib
from ..export.request import ExportRequest
from ..version import __version__
from . import weights
from .store import Preset

SCALING = "float32 = uint8 / 255, in [0, 1]"


def input_contract(info: dict[str, Any]) -> dict[str, Any]:
    """What the model takes, from a run's dataset record: preset.json's ``input``."""
    source = info.get("source") or {}
    any_size = source.get("kind") == "folder" or bool(source.get("resized"))
    height, width, channels = info["input_shape"]
    colour = "grayscale" if channels == 1 else "RGB"
    return {
        "shape": [height, width, channels], "dtype": "uint8", "scaling": SCALING, "any_size": any_size,
        "resize": (f"images of any size and 1 to 4 channels are made {colour} and resized to {height}x{width} "
                   f"(bilinear, antialiased)") if any_size else None,
    }


def config(preset: Preset) -> RunConfig:
    """The preset's recipe as a RunConfig, its dataset found where this machine keeps datasets."""
    names = {f.name for f in dataclasses.fields(RunConfig)}
    recipe = {k: v for k, v in preset.record["recipe"].items() if k in names}
    # Where this machine keeps datasets, read now (TFDS itself reads TFDS_DATA_DIR once, at import).
    return RunConfig(**recipe, data_dir=os.environ.get("TFDS_DATA_DIR") or None,
                     manual_dir=os.environ.get("ZOO_MANUAL_DIR") or None)


def model(preset: Preset):
    """The preset's model with its weights, in the precision it was trained in."""
    with devices.dtype_policy(config(preset).precision):
        built = weights.build(preset)
    devices.float32_outputs(built)
    return built


def evaluate(preset: Preset, split: str | None = None, *, data_dir: str | os.PathLike | None = None,
             manual_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Loss, accuracy, accuracy per class and the confusion matrix of the preset on a split of its
    dataset (default: the split it was published with), beside the accuracy it was published with.
    ``data_dir``, ``manual_dir``: where the dataset is (default TFDS_DATA_DIR, ZOO_MANUAL_DIR)."""
    cfg, record = config(preset), preset.record
    metrics = record.get("metrics") or {}
    split = split or metrics.get("split") or record["dataset"].get("test_split")
    if not split:
        raise ZooUsageError(f"preset {preset.name} names no split to evaluate on: give one (--split)")
    built = model(preset)
    try:
        ds = pipeline.load_split(cfg.dataset, split, **cfg.moved(data_dir, manual_dir).dataset_options())
    except FileNotFoundError as exc:
        raise ZooUsageError(f"preset {preset.name}: its dataset {cfg.dataset} is not here ({exc})") from None
    loss, accuracy = evaluation.test_metrics(evaluation.plain_compiled(built), ds)
    names = preset.class_names
    result = {"preset": preset.name, "split": split, "loss": float(loss), "accuracy": float(accuracy)}
    published = metrics.get("test_accuracy", metrics.get("val_accuracy"))
    if published is not None and split == metrics.get("split"):
        result["published_accuracy"] = published
    result.update(evaluation.per_class(evaluation.confusion_matrix(built, ds, len(names)), names))
    return result


def export(preset: Preset, export_base: str | os.PathLike, request: ExportRequest | None = None, *,
           data_dir: str | os.PathLike | None = None,
           manual_dir: str | os.PathLike | None = None) -> export_lib.ExportResult:
    """Export the preset as the next SavedModel version under ``export_base``; its zoo.json names
    the preset, its digest and its license. ``data_dir``, ``manual_dir``: where its dataset is, for
    a quantized file (default TFDS_DATA_DIR, ZOO_MANUAL_DIR)."""
    record, cfg = preset.record, config(preset).moved(data_dir, manual_dir)
    built = model(preset)
    # Any images check that the SavedModel computes what Keras does; these need no dataset here.
    shape = preset.input_shape
    images = np.random.default_rng(0).integers(0, 256, (64, *shape), dtype=np.uint8)
    metadata = {
        "model": preset.model, "precision": cfg.precision, "dataset": record["dataset"].get("name"),
        "input_shape": list(shape), "class_names": preset.class_names, "preset": preset.name,
        "preset_digest": preset.digest, "license": record["license"], "zoo_version": __version__,
    }
    return export_lib.export_model(
        built, export_base, check_images=images, metadata=metadata, tolerance=export_lib.TOLERANCE[cfg.precision],
        any_size=bool(record["input"].get("any_size")), class_names=preset.class_names, request=request,
        data=export_lib.RunData(cfg, {**record["dataset"], "class_names": preset.class_names,
                                      "input_shape": list(shape)}, (record.get("metrics") or {}).get("test_accuracy")),
    )
