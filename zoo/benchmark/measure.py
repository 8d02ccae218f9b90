"""One benchmark record for a finished run and its export: accuracy, throughput, latency, size,
FLOPs, peak memory, and the environment it ran in; the SavedModel measured here, every other
format of the export in its own runtime (``formats``)."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import registry

from .. import evaluation, formats
from ..compute import devices
from ..config import DEFAULTS, RunConfig
from ..data import catalog, pipeline
from ..data.images import to_model_input
from ..errors import ZooError
from ..export import serving
from ..export.request import FILES, SAVED_MODEL_ONLY, ExportRequest
from ..models import contract
from ..presets import use
from ..presets.store import Preset
from ..runs import Run
from ..training import runner
from .reports import dataset_label

LATENCY_CALLS, THROUGHPUT_BATCH, THROUGHPUT_CALLS = 200, 256, 20


def peak_path(job_path: Path) -> Path:
    return job_path.with_name(f"{job_path.stem}.peak.json")


def peak_rss_mb() -> float | None:
    """This process's own peak resident memory (VmHWM, Linux), in MiB; None where unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)  # kB
    except OSError:
        pass
    return None


def measure(run_dir: Path, export_dir: Path, request: ExportRequest = SAVED_MODEL_ONLY,
            threads: int | None = None) -> dict[str, Any]:
    """One benchmark record for a finished run and its export (the formats ``request`` asked for;
    ``threads`` for each format's runtime, default every core)."""
    run = Run.open(run_dir)
    record_json, metrics, history = run.record, run.metrics, run.history
    config, info = record_json["config"], record_json["dataset"]
    # Epoch 1 includes tracing and filling the cache; later epochs are the steady state.
    steady = [r["examples_per_second"] for r in history[1:]] or [
        r["examples_per_second"] for r in history
    ]
    images = pipeline.sample_images(
        config["dataset"],
        info["test_split"] or info["validation_split"],
        THROUGHPUT_BATCH,
        **run.config.dataset_options(),
    )
    model = evaluation.load_model(run)
    return {
        "model": config["model"],
        "distribution": record_json["model"]["distribution"],
        "version": record_json["model"]["version"],
        "hparams": record_json["model"]["hparams_resolved"],
        "hparams_set": config["hparams"],  # what the command line changed from the defaults
        "recipe_changed": _recipe_changed(config, record_json["model"]),
        # The recipe file the run followed (a study's best trial: its tuning provenance), or None.
        "recipe_file": record_json.get("recipe_file"),
        # Fine-tuned: the preset its weights started from (None: random weights).
        "init": record_json.get("init"),
        "dataset": dataset_label(info),
        "dataset_version": info["version"],
        # Which images exactly, for a folder (path, files per split and class, fingerprint).
        "dataset_source": info["source"],
        "splits": {"train": info["train_split"], "validation": info["validation_split"], "test": info["test_split"]},
        "seed": config["seed"],
        "hardware": metrics["hardware"],
        "input": metrics["input"],
        "epochs": len(history),
        "batch_size": config["batch_size"],
        "params": metrics["params"],
        "flops_per_example": forward_flops(model),
        "train_seconds": metrics["train_seconds"],  # training only; validation apart
        "val_seconds": metrics.get("val_seconds"),
        "train_examples_per_second": round(statistics.mean(steady), 1),
        "test_accuracy": metrics.get("test_accuracy"),
        "test_loss": metrics.get("test_loss"),
        **_serving(model, export_dir, images),
        "formats": _formats(export_dir, request, images, config["dataset"], info["test_split"],
                            run.config.dataset_options(), threads),
        "run_dir": str(run_dir),
        "export_dir": str(export_dir),
        "env": environment(),
    }


def _serving(model, export_dir: Path, images) -> dict[str, Any]:
    """The exported SavedModel's size, latency and throughput, beside Keras' predict, on ``images``."""
    serve = tf.saved_model.load(str(export_dir)).signatures["serving_default"]
    p50, p99 = _latency_ms(serve, images[:1])
    saved_model_eps = _saved_model_throughput(serve, images)
    keras_eps = _keras_predict_throughput(model, images)
    return {
        # The version folder less the other formats' files beside the SavedModel.
        "saved_model_bytes": sum(p.stat().st_size for p in export_dir.rglob("*")
                                 if p.is_file() and p.relative_to(export_dir).as_posix() not in FILES.values()),
        "latency_ms_p50": round(p50, 3),
        "latency_ms_p99": round(p99, 3),
        "saved_model_examples_per_second": round(saved_model_eps, 1),
        "keras_predict_examples_per_second": round(keras_eps, 1),
        "saved_model_vs_keras": round(saved_model_eps / keras_eps, 3),
    }


def _formats(export_dir: Path, request: ExportRequest, images: np.ndarray, dataset: str, split: str | None,
             options: dict[str, Any], threads: int | None) -> dict[str, dict[str, Any]]:
    """Each format of the export but the SavedModel in its own runtime, its accuracy on ``split``
    (None: no test split, no accuracy): :func:`zoo.export.serving.measure_export`."""
    if len(request.formats) < 2:
        return {}
    test = pipeline.split_arrays(dataset, split, **options) if split else None
    return serving.measure_export(export_dir, request.formats, images, test, threads=threads, quantize=request.quantize)


def measure_preset(preset: Preset, config: RunConfig, export_dir: Path, request: ExportRequest = SAVED_MODEL_ONLY,
                   threads: int | None = None) -> dict[str, Any]:
    """One benchmark record for a preset and its exported SavedModel: the measurements of
    :func:`measure` on the test split of ``config.dataset``, without training figures (None), and
    ``preset``: its name, digest, license and where it was found."""
    record = preset.record
    own = record.get("dataset") or {}
    options = config.dataset_options()
    builder = catalog.prepared_builder(config.dataset, **options)
    split = own.get("test_split") if config.dataset == (record.get("recipe") or {}).get("dataset") else "test"
    if not split or not catalog.has_split(builder, split):
        raise ZooError(f"preset {preset.name}: dataset {config.dataset} has no test split to measure it on")
    features = catalog.features_of(builder)
    model = use.model(preset)
    loss, accuracy = evaluation.test_metrics(
        evaluation.plain_compiled(model), pipeline.load_split(config.dataset, split, **options))
    images = pipeline.sample_images(config.dataset, split, THROUGHPUT_BATCH, **options)
    trained = record.get("environment") or {}
    published = (record.get("metrics") or {}).get("test_accuracy")
    source = getattr(builder, "zoo_source", None)
    return {
        "model": preset.model,
        "distribution": record["model"].get("distribution"),
        "version": record["model"].get("version"),
        "hparams": preset.hparams,
        "hparams_set": dict((record.get("recipe") or {}).get("hparams") or {}),
        "recipe_changed": {},
        "dataset": dataset_label({"name": features.name, "source": source, "input_shape": features.input_shape}),
        "dataset_version": str(builder.info.version),
        "dataset_source": source,
        "splits": {"train": None, "validation": None, "test": split},
        "seed": config.seed,
        # How the preset was trained (the precision it is measured in too): as a run's record says.
        "hardware": trained.get("hardware") or dict(formats.LEGACY_HARDWARE, backend="tensorflow"),
        "input": trained.get("input") or dict(formats.LEGACY_INPUT),
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "params": int(model.count_params()),
        "flops_per_example": forward_flops(model),
        "train_seconds": None,  # not trained here
        "val_seconds": None,
        "train_examples_per_second": None,
        "test_accuracy": accuracy,
        "test_loss": loss,
        **_serving(model, export_dir, images),
        "formats": _formats(export_dir, request, images, config.dataset, split, options, threads),
        "run_dir": None,
        "export_dir": str(export_dir),
        "preset": {
            "name": preset.name, "digest": preset.digest, "license": record["license"],
            "path": str(preset.path), "published_test_accuracy": published,
            "published_dataset": own.get("name"),
        },
        "env": environment(),
    }


def _recipe_changed(config: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    """Training settings that differ from the model's recipe (epochs has a column of its own).

    The recipe recorded with the run, not the plugin's current one, which may have changed since.
    """
    recipe = model["recipe"]
    if recipe is None:  # not recorded (zoo.formats): the plugin's recipe now is the best guess
        recipe = registry.get(config["model"]).recipe
    return {
        key: config[key]
        for key, default in DEFAULTS.items()
        if key != "epochs" and config[key] != recipe.get(key, default)
    }


def _latency_ms(serve, image: np.ndarray) -> tuple[float, float]:
    x = tf.constant(image)
    for _ in range(10):  # warm-up: the first calls trace and allocate
        serve(image=x)
    times = []
    for _ in range(LATENCY_CALLS):
        start = time.perf_counter()
        serve(image=x)["class_id"].numpy()
        times.append((time.perf_counter() - start) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def _saved_model_throughput(serve, images: np.ndarray) -> float:
    x = tf.constant(images)
    serve(image=x)
    start = time.perf_counter()
    for _ in range(THROUGHPUT_CALLS):
        serve(image=x)["probabilities"].numpy()
    return THROUGHPUT_CALLS * len(images) / (time.perf_counter() - start)


def _keras_predict_throughput(model: keras.Model, images: np.ndarray) -> float:
    """``model.predict`` on in-memory float32 arrays, the usual way to run a Keras model."""
    x = np.concatenate([to_model_input(images).numpy()] * THROUGHPUT_CALLS)
    model.predict(x[: len(images)], batch_size=THROUGHPUT_BATCH, verbose=0)
    start = time.perf_counter()
    model.predict(x, batch_size=THROUGHPUT_BATCH, verbose=0)
    return len(x) / (time.perf_counter() - start)


def forward_flops(model: keras.Model) -> int | None:
    """Floating-point operations of one forward pass for one example (TF's graph profiler)."""
    try:
        from tensorflow.python.framework.convert_to_constants import (
            convert_variables_to_constants_v2,
        )

        spec = tf.TensorSpec([1, *contract.input_shape(model)], tf.float32)
        # A plain trace: AutoGraph has nothing to convert here and warns that it cannot.
        forward = tf.function(lambda x: model(x, training=False), autograph=False)
        concrete = forward.get_concrete_function(spec)
        graph = convert_variables_to_constants_v2(concrete).graph
        options = (
            tf.compat.v1.profiler.ProfileOptionBuilder(
                tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
            )
            .with_empty_output()
            .build()
        )
        level = tf.get_logger().level
        tf.get_logger().setLevel("ERROR")  # the v1 profiler warns about its own deprecation
        try:
            profile = tf.compat.v1.profiler.profile(graph=graph, cmd="op", options=options)
        finally:
            tf.get_logger().setLevel(level)
        return int(profile.total_float_ops)
    except Exception:  # a profiler limitation must not lose the rest of the record
        return None


def environment() -> dict[str, Any]:
    """Library versions (as runs record them) and the machine."""
    return {**runner.versions(), "cpu": devices.cpu_model(), "cores": os.cpu_count()}
