"""What can be done with a finished run's model: load it, evaluate it, export it.

Takes a :class:`zoo.runs.Run` and never imports that module (``Run`` calls in here, lazily, since
this module loads TensorFlow and a run directory is opened without it).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import keras

import registry

from . import export as export_lib
from . import files
from .compute import devices
from .data import folders, pipeline
from .errors import ZooError
from .version import __version__

if TYPE_CHECKING:
    from .runs import Run


def evaluate(run: Run, split: str = "test") -> dict[str, Any]:
    """Evaluate a finished run's model on a split of its dataset; writes eval-<split>.json."""
    config = run.config
    with run.locked(exclusive=False):  # refused while the run is still training
        model = load_model(run)
        ds = pipeline.load_split(config.dataset, split, **config.dataset_options())
        loss, accuracy = test_metrics(plain_compiled(model), ds)
        result = {"split": split, "loss": float(loss), "accuracy": float(accuracy)}
        changed = changed_images(run)
        if changed:  # the images as they are now, and the run says which
            result["trained_on_fingerprint"], result["fingerprint"] = changed
        run.write_json(f"eval-{files.safe_name(split)}.json", result)
    return result


def export(run: Run, export_base: str | os.PathLike) -> export_lib.ExportResult:
    """Export a finished run as the next SavedModel version under ``export_base``."""
    config, info = run.config, run.dataset
    with run.locked(exclusive=False):  # refused while the run is still training
        model = load_model(run)
        # Compare on real images the model never trained on.
        images = pipeline.sample_images(
            config.dataset,
            info["test_split"] or info["validation_split"],
            **config.dataset_options(),
        )
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
        return export_lib.export_model(
            model, export_base, check_images=images, metadata=metadata,
            tolerance=export_lib.TOLERANCE[config.precision],
            # Trained on a folder's images: serve images of any size and colour, converted and
            # resized the same way (the images sent to a server vary).
            any_size=source.get("kind") == "folder" or bool(source.get("resized")),
            class_names=info["class_names"],
        )


def load_model(run: Run) -> keras.Model:
    """Load model.keras in safe mode under the run's dtype policy, after importing the plugin so
    its custom layers exist."""
    path = run.model_path()
    try:
        registry.get(run.config.model)  # imports the plugin module: registers its custom layers
    except registry.UnknownModelError:
        if run.record["model"]["origin"] == "entry point":
            raise
        # Registered in the process that trained it: plain Keras layers load without it.
    
    try:
        return devices.load_model(path, run_precision(run))
    except Exception as exc:  # Keras raises many types for a damaged zip
        raise ZooError(f"cannot load {path}: {type(exc).__name__}: {exc}") from None


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
