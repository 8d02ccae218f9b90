"""How an exported file serves, measured in its own runtime in a fresh process (:mod:`.runtime`):
its size, batch-1 latency, batch-N throughput and, given a test split, its accuracy there.

One process per file: ONNX Runtime for ``model.onnx``, LiteRT's interpreter for ``model.tflite``
(neither process can import the zoo, Keras or TensorFlow), TensorFlow for a SavedModel folder
(the zoo and plugins still blocked). Every runtime runs the same timing code (:data:`TIMING`)
with ``threads`` threads.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from . import runtime
from .request import FILES, QUANTIZATIONS

LATENCY_CALLS, WARMUP_CALLS, THROUGHPUT_ROUNDS, ACCURACY_BATCH = 200, 10, 20, 500

# Each defines ``classify(images) -> class ids`` and ``RUNTIME`` (its name and version) for TIMING.
CLASSIFY = {
    "onnx": """
import onnxruntime as ort
options = ort.SessionOptions()
options.intra_op_num_threads = ARGS["threads"]
session = ort.InferenceSession(ARGS["path"], options, providers=["CPUExecutionProvider"])
RUNTIME = "onnxruntime " + ort.__version__
def classify(x):
    return session.run(["class_id"], {"image": x})[0]
""",
    "litert": """
from importlib.metadata import version
from ai_edge_litert.interpreter import Interpreter
runner = Interpreter(model_path=ARGS["path"], num_threads=ARGS["threads"]).get_signature_runner("serving_default")
RUNTIME = "ai-edge-litert " + version("ai-edge-litert")
def classify(x):
    return runner(image=x)["class_id"].copy()
""",
    "saved_model": """
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(ARGS["threads"])
serve = tf.saved_model.load(ARGS["path"]).signatures["serving_default"]
RUNTIME = "tensorflow " + tf.__version__
def classify(x):
    return serve(image=tf.constant(x))["class_id"].numpy()
""",
}
# What a SavedModel needs in its process (the zoo and plugins stay blocked).
TF_STACK = ("keras", "tensorflow", "tf_keras")

# Latency: one image, called again and again after a warm-up (tracing, allocation, resizing to
# batch 1). Throughput: the whole batch. Accuracy: the test split in batches, after both.
TIMING = """
import statistics, time
image, batch = INPUTS["images"][:1], INPUTS["images"]
for _ in range(ARGS["warmup"]):
    classify(image)
times = []
for _ in range(ARGS["calls"]):
    start = time.perf_counter()
    classify(image)
    times.append(1000 * (time.perf_counter() - start))
classify(batch)
start = time.perf_counter()
for _ in range(ARGS["rounds"]):
    classify(batch)
result = {"latency_ms": statistics.median(times), "latency_ms_p99": float(np.percentile(times, 99)),
          "throughput": ARGS["rounds"] * len(batch) / (time.perf_counter() - start), "batch": len(batch),
          "runtime": RUNTIME, "threads": ARGS["threads"]}
if "test_images" in INPUTS:
    x, y, step = INPUTS["test_images"], INPUTS["test_labels"], ARGS["accuracy_batch"]
    result["test_correct"] = sum(int((classify(x[i:i + step]) == y[i:i + step]).sum()) for i in range(0, len(x), step))
    result["test_examples"] = len(y)
done(result)
"""


def size(path: Path) -> int:
    """A file's bytes; a SavedModel folder's: saved_model.pb and variables/, not the files beside them."""
    if path.is_file():
        return path.stat().st_size
    parts = [path / "saved_model.pb", path / "variables"]
    return sum(p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
               for p in parts if p.exists())


def measure(fmt: str, path: str | os.PathLike, images: np.ndarray, test: tuple[np.ndarray, np.ndarray] | None = None,
            *, threads: int | None = None, calls: int = LATENCY_CALLS, rounds: int = THROUGHPUT_ROUNDS) -> dict[str, Any]:
    """``fmt``'s file (or SavedModel folder) at ``path`` in its runtime, in a fresh process: bytes,
    median and 99th-percentile batch-1 latency (ms) over ``calls`` calls, throughput (images/s) on
    the batch ``images`` over ``rounds`` calls, and with ``test`` (uint8 images, labels) its test
    accuracy in that runtime. A failure is a one-line ZooError naming the format."""
    path = Path(path)
    inputs = {"images": np.asarray(images, np.uint8)}
    if test is not None:
        inputs.update(test_images=np.asarray(test[0], np.uint8), test_labels=np.asarray(test[1]))
    args = {"path": str(path), "threads": threads or os.cpu_count() or 1, "calls": calls, "rounds": rounds,
            "warmup": WARMUP_CALLS, "accuracy_batch": ACCURACY_BATCH}
    got = runtime.run(f"measuring {fmt}", CLASSIFY[fmt] + TIMING, inputs, args,
                      allow=TF_STACK if fmt == "saved_model" else ())
    figures = {"file": path.name, "bytes": size(path), **got}
    if test is not None:
        figures["test_accuracy"] = got["test_correct"] / got["test_examples"] if got["test_examples"] else None
    return figures


def measure_export(version: str | os.PathLike, formats: Iterable[str], images: np.ndarray,
                   test: tuple[np.ndarray, np.ndarray] | None = None, *, threads: int | None = None,
                   quantize: str | None = None) -> dict[str, dict[str, Any]]:
    """Each of ``formats`` but the SavedModel, as a version folder ``version`` holds them
    (:func:`measure`), each with the ``quantization`` it was exported with (None: float)."""
    figures = {}
    for fmt in formats:
        if fmt == "saved_model":
            continue
        figures[fmt] = measure(fmt, Path(version) / FILES[fmt], images, test, threads=threads)
        figures[fmt]["quantization"] = quantize if quantize in QUANTIZATIONS.get(fmt, ()) else None
    return figures
