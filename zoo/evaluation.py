"""What can be done with a finished run's model: load it, evaluate it, export it.

Takes a :class:`zoo.runs.Run` and never imports that module (``Run`` calls in here, lazily, since
this module loads TensorFlow and a run directory is opened without it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

import registry

from .export import bundle as export_lib
from .export.request import ExportRequest
from . import files
from .compute import backend, devices
from .data import catalog, folders, pipeline
from .errors import DatasetNotHereError, ZooError, first_line
from .version import __version__

if TYPE_CHECKING:
    from .runs import Run


@backend.quiet_retracing()  # one process may evaluate model after model
def evaluate(run: Run, split: str | None = None, *, data_dir: str | os.PathLike | None = None,
             manual_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Evaluate a finished run's model on a split of its dataset: loss, accuracy, accuracy per class
    and the confusion matrix; writes eval-<split>.json and confusion-<split>.png.

    ``split`` None: the test split, or the run's held-out validation slice when the dataset has no
    test split; ``validation`` on a dataset without a validation split is that slice too (the
    result's ``note`` says so). ``data_dir``, ``manual_dir``: where the dataset is, when not
    where the run trained."""
    config = run.config
    with run.locked(exclusive=False):  # refused while the run is still training
        model = load_model(run)  # a run that cannot be loaded says so first
        info = run.dataset
        split, note = _split(run, split)
        ds = pipeline.load_split(config.dataset, split, **config.moved(data_dir, manual_dir).dataset_options())
        loss, accuracy = test_metrics(plain_compiled(model), ds)
        matrix = confusion_matrix(model, ds, info["num_classes"])
        result = {"split": split, "loss": float(loss), "accuracy": float(accuracy)}
        if note:
            result["note"] = note
        result.update(per_class(matrix, info["class_names"]))
        changed = changed_images(run)
        if changed:  # the images as they are now, and the run says which
            result["trained_on_fingerprint"], result["fingerprint"] = changed
        name = _file_name(run, split)
        run.write_json(f"eval-{name}.json", result)
        plot_confusion(matrix, info["class_names"], run.file(f"confusion-{name}.png"), f"{info['name']} {split}")
    return result


def _file_name(run: Run, split: str) -> str:
    """``split`` in the names of eval-<name>.json and confusion-<name>.png: its letters and digits
    (``train[90%:]``: ``train-90``), and a hash of it where another split's file has those
    (``train[:90%]`` after it), so no split's figures overwrite another's."""
    name = files.safe_name(split)
    try:
        taken = (run.read_json(f"eval-{name}.json") or {}).get("split", split) != split
    except ZooError:  # a damaged file: replaced by this split's
        taken = False
    return f"{name}-{hashlib.sha256(split.encode()).hexdigest()[:8]}" if taken else name


def _split(run: Run, split: str | None) -> tuple[str, str]:
    """The split to evaluate, and a note when it is the held-out validation slice instead."""
    info = run.dataset
    held_out = info["validation_split"]
    if split is None:
        if info["test_split"]:
            return info["test_split"], ""
        return held_out, f"no test split in {info['name']}: evaluated on the held-out validation slice {held_out}"
    if split == "validation" and split not in _splits_of(run):
        return held_out, f"no validation split in {info['name']}: evaluated on the held-out validation slice {held_out}"
    return split, ""


def _splits_of(run: Run) -> list[str]:
    return list(catalog.prepared_builder(run.config.dataset, **run.config.dataset_options()).info.splits)


def confusion_matrix(model: keras.Model, ds, num_classes: int) -> np.ndarray:
    """Counts [true class, predicted class] over the examples of ``ds`` (padding, of weight 0, left out)."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    for batch in ds:
        images, labels = batch[0], np.asarray(batch[1])
        predicted = np.argmax(np.asarray(model(images, training=False)), axis=-1)
        if len(batch) > 2:  # weighted (padded) batches
            keep = np.asarray(batch[2]) > 0
            labels, predicted = labels[keep], predicted[keep]
        np.add.at(matrix, (labels.astype(np.int64), predicted), 1)
    return matrix


def per_class(matrix: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Accuracy per class (None for a class the split does not hold) and the confusion matrix."""
    counts = matrix.sum(axis=1)
    accuracy = {
        name: (float(matrix[i, i] / counts[i]) if counts[i] else None) for i, name in enumerate(names)
    }
    return {"per_class_accuracy": accuracy, "confusion": {"labels": list(names), "matrix": matrix.tolist()}}


def plot_confusion(matrix: np.ndarray, names: list[str], path, title: str) -> None:
    """The confusion matrix as an image: rows the true class, columns the predicted one."""
    from matplotlib.figure import Figure  # no pyplot: no backend to choose, nothing global

    size = min(12.0, 2.5 + 0.35 * len(names))
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    if len(names) <= 30:
        ticks = range(len(names))
        ax.set_xticks(ticks, names, rotation=90)
        ax.set_yticks(ticks, names)
        if len(names) <= 15:
            for (i, j), count in np.ndenumerate(matrix):
                ax.text(j, i, str(count), ha="center", va="center",
                        color="white" if rates[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"{title}: confusion matrix")
    with warnings.catch_warnings():  # class names in a script the font lacks: drawn as boxes, not warned
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from")
        fig.tight_layout()
        with files.atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100)


def export(run: Run, export_base: str | os.PathLike, request: ExportRequest | None = None, *,
           data_dir: str | os.PathLike | None = None,
           manual_dir: str | os.PathLike | None = None) -> export_lib.ExportResult:
    """Export a finished run as the next version under ``export_base``: a SavedModel and the
    other formats ``request`` asks for. ``data_dir``, ``manual_dir``: where the run's dataset is
    (for the check images, a quantized file's calibration and accuracy), when not where it trained."""
    export_base = files.given(export_base, "export base")
    config, info = run.config.moved(data_dir, manual_dir), run.dataset
    with run.locked(exclusive=False):  # refused while the run is still training
        model = load_model(run)
        images, not_here = _check_images(config, info, request.quantize if request else None)
        metadata = {
            "model": config.model,
            "precision": config.precision,
            "dataset": info["name"],
            "input_shape": info["input_shape"],
            "class_names": info["class_names"],
            "run_dir": str(run.path),
            "zoo_version": __version__,
        }
        source = info["source"] or {}
        if source:
            metadata["dataset_source"] = source
        result = export_lib.export_model(
            model, export_base, check_images=images, metadata=metadata,
            tolerance=export_lib.TOLERANCE[config.precision],
            # Trained on a folder's images: serve images of any size and colour, converted and
            # resized the same way (the images sent to a server vary).
            any_size=source.get("kind") == "folder" or bool(source.get("resized")),
            class_names=info["class_names"], request=request,
            data=export_lib.RunData(config, info, (run.metrics or {}).get("test_accuracy")),
        )
    return dataclasses.replace(result, random_because=not_here)


def _check_images(config, info: dict[str, Any], quantize: str | None) -> tuple[np.ndarray, str]:
    """The images an export is compared on, and why they are random ("" when they are not): the
    run's test images (images the model never trained on) where its dataset is on this machine
    (its folder, or prepared: an export never downloads or prepares a dataset for its check);
    otherwise random images of its input shape, since any images show that a format computes what
    Keras does. A run copied without its data exports all the same, unless ``quantize`` asks for a
    file whose accuracy (and int8's calibration) needs the run's own images, prepared if need be."""
    try:
        return pipeline.sample_images(config.dataset, info["test_split"] or info["validation_split"],
                                      **config.dataset_options(), prepare=bool(quantize)), ""
    except DatasetNotHereError as exc:
        if quantize:
            raise type(exc)(f"`quantize` {quantize} measures the quantized file on the run's own "
                            f"images: {first_line(exc)}") from None
        shape = tuple(info["input_shape"])
        return np.random.default_rng(0).integers(0, 256, (64, *shape), dtype=np.uint8), first_line(exc)


def load_model(run: Run) -> keras.Model:
    """Load model.keras in safe mode under the run's dtype policy, after importing the plugin so
    its custom layers exist. Without the plugin (uninstalled, or registered in the process that
    trained it) a model of plain Keras layers still loads; one that needs the plugin's layers is
    a one-line error naming the distribution and version to install."""
    path = run.model_path()
    try:
        registry.get(run.config.model)  # imports the plugin module: registers its custom layers
        missing = None
    except registry.UnknownModelError:
        missing = run.record.get("model") or {"name": run.config.model}
        recorded = str(missing.get("name") or run.config.model)
        if recorded.rpartition(":")[2] != run.config.model.rpartition(":")[2]:  # edited by hand, or damaged
            raise ZooError(f"{run.file('config.json')} is corrupted or not a zoo config: its config trains "
                           f"'{run.config.model}', its model record is '{recorded}'")
    try:
        return devices.load_model(path, run_precision(run))
    except Exception as exc:  # Keras raises many types for a damaged zip
        if Path(path).is_file() and not zipfile.is_zipfile(path):  # Keras would say "File not found"
            raise ZooError(f"cannot load {path}: it is not a .keras (zip) file; damaged or cut short "
                           f"({Path(path).stat().st_size} bytes)") from None
        if missing is not None:
            keras_says = first_line(exc).split(" Full object config:")[0]  # not the whole layer config
            raise ZooError(f"cannot load {path}: {_needs(missing)} ({type(exc).__name__}: {keras_says})") from None
        raise ZooError(f"cannot load {path}: {type(exc).__name__}: {exc}") from None


def _needs(model: dict[str, Any]) -> str:
    """What to do when a model's own layers are not there: install its plugin, or register it."""
    name = model.get("name", "?")
    if model.get("origin") == "entry point" and model.get("distribution"):
        version = f"=={model['version']}" if model.get("version") else ""
        return (f"model '{name}' needs the layers of its plugin, {model['distribution']} {model.get('version', '')}, "
                f"which is not installed here: pip install \"{model['distribution']}{version}\"").replace(" ,", ",")
    return (f"model '{name}' was registered in the process that trained it and needs its layers: "
            f"register it again (zoo.register) before loading")


def run_precision(run: Run) -> str:
    """The dtype policy a run trained in (its config records it resolved; zoo.formats resolves
    it for the runs from before that did not)."""
    return run.config.precision


def plain_compiled(model: keras.Model) -> keras.Model:
    # Test loss is always the plain cross-entropy, whatever the training loss, so runs compare.
    # XLA as in training (and as the run records it); a trained model keeps its optimizer.
    model.compile(
        optimizer=getattr(model, "optimizer", None) or "rmsprop",
        loss=keras.losses.SparseCategoricalCrossentropy(),
        # Weighted: the padding of padded batches has weight 0 (Keras' own loss figure counts it).
        weighted_metrics=["accuracy", keras.metrics.SparseCategoricalCrossentropy(name=TEST_LOSS)],
        jit_compile=model.jit_compile,
    )
    return model


TEST_LOSS = "crossentropy"


def test_metrics(model: keras.Model, ds) -> tuple[float, float]:
    """(loss, accuracy) of a model compiled by plain_compiled, over the real examples of ``ds``."""
    results = model.evaluate(ds, verbose=0, return_dict=True)
    return float(results[TEST_LOSS]), float(results["accuracy"])


def changed_images(run: Run) -> tuple[str, str] | None:
    """(fingerprint then, now) when the run's folder of images changed since it trained."""
    source = run.dataset["source"] or {}
    if source.get("kind") != "folder":
        return None
    now = folders.walk(source["path"]).fingerprint
    return (source["fingerprint"], now) if now != source["fingerprint"] else None
