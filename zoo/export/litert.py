"""The LiteRT file of an export (``model.tflite``, extra ``keras-zoo[litert]``): the uint8-in,
probabilities-and-class-out contract, checked in the LiteRT interpreter in a fresh process.

Signature ``serving_default``: ``image`` uint8 ``[N, H, W, C]`` (N resizable with
``resize_tensor_input``; H, W, C are the model's, even for a model trained on image folders: see
:data:`FIXED_SIZE_BECAUSE`) -> ``probabilities``
float32 ``[N, num_classes]`` and ``class_id`` int64 ``[N]``: the SavedModel's computation
(:func:`.saved_model.predictions`) converted by TensorFlow's TFLiteConverter, in float32 (a
mixed-precision model is converted from a float32 copy with its weights). LiteRT has no string
output worth serving, so the class names are in the file's metadata: a custom metadata entry
``zoo`` (a JSON object: class_names, zoo_version, the run's or preset's identity, quantization)
that any flatbuffer reader of the LiteRT schema reads back, as :data:`CHECK` does.

``quantize``: ``float16`` stores the weights in float16 (computed in float32); ``int8`` is
post-training integer quantization calibrated on :data:`CALIBRATION_IMAGES` training images of
the run's dataset (uint8 input and float32 outputs kept; an op without an int8 kernel stays float).
A quantized file's accuracy on the whole test split, measured in LiteRT, must be within
``request.max_accuracy_drop`` points of the Keras model's on the same images.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from .. import files
from ..compute import backend, devices
from ..data import pipeline
from ..data.images import to_model_input
from ..errors import ZooError
from ..models import contract
from . import runtime
from .saved_model import (
    SIGNATURE,
    TOLERANCE,
    fixed_size_warning,
    image_spec,
    names_or_ids,
    predictions,
)

FILE = "model.tflite"
# A model trained on image folders serves any size in the SavedModel; its LiteRT file does not, and
# says so in its metadata (``fixed_size_because``) and in its check's warning.
FIXED_SIZE_BECAUSE = "TFLite has no kernel for the antialiased resize the SavedModel does in its graph"
METADATA = "zoo"  # the name of the file's custom metadata entry
CALIBRATION_IMAGES = 300
# LiteRT's float kernels (XNNPACK) sum in another order than TensorFlow's: a float32 file agrees
# with Keras to about 1e-6 on probabilities, so 1e-4 is round-off and a wrong weight is not.
# float16 weights keep 11 significant bits (relative error 5e-4 each); summed over a layer and
# through the softmax that stays well under 1e-2.
FLOAT_TOLERANCE = {None: 1e-4, "float16": 1e-2}


def write(model: keras.Model, folder: Path, *, any_size: bool, class_names, metadata: dict[str, Any], request,
          data) -> Path:
    """Convert the serving computation to ``folder/model.tflite`` (quantized as ``request`` asks),
    with the class names and the export's metadata inside it; return its path."""
    if keras.backend.backend() != "tensorflow":  # request.resolve said so first, for the command
        raise ZooError(f"--format litert converts TensorFlow graphs and Keras runs on {keras.backend.backend()} "
                       f"here: export with KERAS_BACKEND=tensorflow (a model trained on JAX loads there)")
    shape = contract.input_shape(model)
    notes = []
    computed = _float32(model)
    if computed is not model:
        what = (f"converted from a float32 copy, then quantized to {request.quantize}" if request.quantize
                else "computes in float32")
        notes.append(f"{what}: LiteRT has no {model.dtype_policy.compute_dtype} kernels "
                     f"(the model trained in {model.dtype_policy.name})")

    def serve(image):
        # Inference mode, always (BatchNormalization's moving statistics, no dropout).
        probabilities, class_id = predictions(lambda x: computed(x, training=False), image, shape, any_size=False)
        return {"probabilities": probabilities, "class_id": class_id}

    # Through a SavedModel of its own, as TFLiteConverter.from_keras_model does: converted from
    # concrete functions directly, a Keras 3 model's variables are not frozen (probabilities NaN).
    archive = keras.export.ExportArchive()
    archive.track(computed)
    archive.add_endpoint(SIGNATURE, serve, input_signature=[image_spec(model, any_size=False)])
    with tempfile.TemporaryDirectory(prefix="zoo-litert-") as graph:
        archive.write_out(graph, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(graph, signature_keys=[SIGNATURE])
        flat, calibration = _convert(converter, request, data, shape)
    record = {
        **metadata,
        "class_names": names_or_ids(class_names, contract.num_classes(model)),
        "input_shape": list(shape),
        "any_size": False,
        "fixed_size_because": FIXED_SIZE_BECAUSE if any_size else None,
        "quantization": request.quantize,
        "calibration": calibration,
        "notes": notes,
    }
    path = Path(folder) / FILE
    files.write_bytes(path, with_metadata(flat, METADATA, json.dumps(record).encode()))  # never half by its name
    return path


def _convert(converter, request, data, shape) -> tuple[bytes, dict[str, Any] | None]:
    """The converted flatbuffer, quantized as ``request`` asks, and how int8 was calibrated."""
    calibration = None
    if request.quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif request.quantize == "int8":
        images, split = calibration_images(data, shape)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([images[i : i + 1]] for i in range(len(images)))
        calibration = {"images": len(images), "split": split, "dataset": data.config.dataset}
    try:
        with backend.quiet_cpp():  # the quantizer prints its settings ("fully_quantize: 0, ...")
            flat = converter.convert()
    except Exception as exc:  # noqa: BLE001 (the converter's own error types vary by stage)
        lines = [line for line in str(exc).splitlines() if line.strip()]
        raise ZooError(f"--format litert: TensorFlow's converter refused the model: {lines[-1] if lines else exc}") from None
    return flat, calibration


def _float32(model: keras.Model) -> keras.Model:
    """``model`` itself if it computes in float32, else a float32 copy with its weights (its
    variables are float32 under a mixed policy already): TFLite converts no bfloat16 convolution."""
    if model.dtype_policy.name == "float32":
        return model

    def float32(value):
        if isinstance(value, dict):
            if value.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
                return {**value, "config": {**value["config"], "name": "float32"}}
            return {k: ("float32" if k == "dtype" and v in ("float16", "bfloat16") else float32(v)) for k, v in value.items()}
        return [float32(v) for v in value] if isinstance(value, list) else value

    with devices.dtype_policy("float32"):
        copy = keras.saving.deserialize_keras_object(float32(keras.saving.serialize_keras_object(model)))
    copy.set_weights(model.get_weights())
    return copy


def calibration_images(data, shape: tuple[int, ...]) -> tuple[np.ndarray, str]:
    """The first CALIBRATION_IMAGES raw images of the run's training split, read by the run's
    pipeline (as the model saw them: a folder's resized to its size), and the split's name."""
    if data is None:
        raise ZooError("--quantize int8 calibrates on the run's training images: none were given")
    split = data.info.get("train_split") or "train"
    images, _ = pipeline.split_arrays(data.config.dataset, split, CALIBRATION_IMAGES, **data.config.dataset_options())
    if images.shape[1:] != shape:
        raise ZooError(f"--quantize int8: the training images are {list(images.shape[1:])}, the model takes {list(shape)}")
    return images, split


def with_metadata(flat: bytes, name: str, value: bytes) -> bytes:
    """The LiteRT flatbuffer ``flat`` with a custom metadata entry ``name`` -> ``value`` (a buffer
    of its own, as the schema's Model.metadata allows)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(flat), 0)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(value, np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = name, len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    builder = flatbuffers.Builder(len(flat) + len(value) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


# The check, run by runtime.run in a process that has LiteRT and NumPy only.
CHECK = """
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter

interpreter = Interpreter(model_path=ARGS["path"])
signatures = interpreter.get_signature_list()
if ARGS["signature"] not in signatures:
    raise SystemExit(f"signature: no {ARGS['signature']} in the file (it has {sorted(signatures)})")
io = signatures[ARGS["signature"]]
if io["inputs"] != ["image"] or sorted(io["outputs"]) != ["class_id", "probabilities"]:
    raise SystemExit(f"names: inputs {io['inputs']} and outputs {io['outputs']}, expected image -> probabilities, class_id")
runner = interpreter.get_signature_runner(ARGS["signature"])
image = runner.get_input_details()["image"]
outputs = runner.get_output_details()
dtypes = {"image": image["dtype"].__name__, **{k: v["dtype"].__name__ for k, v in outputs.items()}}
if dtypes != {"image": "uint8", "probabilities": "float32", "class_id": "int64"}:
    raise SystemExit(f"dtypes: {dtypes}, expected image uint8, probabilities float32, class_id int64")
if image["shape_signature"][0] != -1:
    raise SystemExit(f"batch: the image input's batch is fixed at {image['shape_signature'][0]}, not resizable")

flat = open(ARGS["path"], "rb").read()
model = schema.Model.GetRootAs(flat, 0)
entries = {model.Metadata(i).Name().decode(): model.Metadata(i).Buffer() for i in range(model.MetadataLength())}
if ARGS["metadata"] not in entries:
    raise SystemExit(f"metadata: no {ARGS['metadata']} entry (it has {sorted(entries)})")
record = json.loads(model.Buffers(entries[ARGS["metadata"]]).DataAsNumpy().tobytes())

def run(images):
    # The signature runner resizes its input to this batch (resize_tensor_input) and runs by name.
    out = runner(image=images)
    return out["probabilities"].copy(), out["class_id"].copy()  # views of the interpreter's memory

images = INPUTS["images"]
# The plain interpreter's way: resize the batch (strict: only a dimension the file leaves free).
plain = Interpreter(model_path=ARGS["path"])
index = plain.get_input_details()[0]["index"]
plain.resize_tensor_input(index, [len(images), *image["shape"][1:]], strict=True)
plain.allocate_tensors()
plain.set_tensor(index, images)
plain.invoke()
plain_probabilities = next(plain.get_tensor(d["index"]) for d in plain.get_output_details() if d["dtype"] == np.float32)
one, one_id = run(images[:1])
probabilities, class_id = run(images)
if probabilities.shape != INPUTS["expected"].shape or class_id.shape != images.shape[:1]:
    raise SystemExit(f"batch: a batch of {len(images)} gave probabilities {list(probabilities.shape)}, class_id {list(class_id.shape)}")
result = {
    "metadata": record,
    "batch_1_diff": float(abs(one[0] - probabilities[0]).max()),
    "max_abs_diff": float(abs(probabilities - INPUTS["expected"]).max()),
    "argmax_ok": bool((class_id == probabilities.argmax(-1)).all() and one_id[0] == one[0].argmax()),
    "agreement": float((class_id == INPUTS["expected"].argmax(-1)).mean()),
    "batch_sizes": [1, len(images)],
    "plain_diff": float(abs(plain_probabilities - probabilities).max()),
}
if "test_images" in INPUTS:
    correct, step = 0, ARGS["batch"]
    for start in range(0, len(INPUTS["test_images"]), step):
        _, ids = run(INPUTS["test_images"][start : start + step])
        correct += int((ids == INPUTS["test_labels"][start : start + step]).sum())
    result["test_correct"] = correct
done(result)
"""


def check(path: Path, model: keras.Model, images, *, any_size: bool, class_names, request, data) -> dict[str, Any]:
    """Run ``path`` in the LiteRT interpreter in a fresh process (batches of 1 and of all
    ``images``, resizing the input) and compare it with ``model``; for a quantized file measure its
    test accuracy beside the Keras model's. A ZooError names the check that failed and by how much;
    otherwise what zoo.json records."""
    names = names_or_ids(class_names, contract.num_classes(model))
    expected = model.predict(to_model_input(images), batch_size=256, verbose=0).astype(np.float32)
    inputs = {"images": np.asarray(images, np.uint8), "expected": expected}
    if request.quantize:
        test_images, test_labels, split = _test_split(data)
        inputs.update(test_images=test_images, test_labels=test_labels)
        float_correct = int((_keras_classes(model, test_images) == test_labels).sum())
    args = {"path": str(path), "signature": SIGNATURE, "metadata": METADATA, "batch": 500}
    out = runtime.run("--format litert", CHECK, inputs, args)
    what = f"{FILE} in LiteRT"
    if out["metadata"].get("class_names") != names:
        raise ZooError(f"{what}: the class names in its metadata are {out['metadata'].get('class_names')}, not {names}")
    if not out["argmax_ok"]:
        raise ZooError(f"{what}: class_id is not the argmax of its probabilities")
    # The same file on the same image: only a kernel's batch-dependent summation order differs.
    for key, how in (("batch_1_diff", "a batch of 1 differs from the same image in a batch of"),
                     ("plain_diff", "resize_tensor_input's interpreter differs from the signature runner on")):
        if out[key] > FLOAT_TOLERANCE[None]:
            raise ZooError(f"{what}: {how} {len(images)} images (max abs diff {out[key]:.3g})")
    size = path.stat().st_size
    result: dict[str, Any] = {
        "file": FILE, "bytes": size, "signature": SIGNATURE, "quantization": request.quantize,
        "calibration": out["metadata"].get("calibration"), "metadata": METADATA,
        "examples_compared": len(images), "batch_sizes": out["batch_sizes"], "max_abs_diff": out["max_abs_diff"],
        "class_agreement": out["agreement"], "any_size": False, "notes": out["metadata"].get("notes", []),
    }
    if any_size:  # trained on a folder: the SavedModel takes any size, this file its training size
        result["warning"] = fixed_size_warning(contract.input_shape(model), FIXED_SIZE_BECAUSE)
    if request.quantize:
        n = len(test_labels)
        accuracy = {"split": split, "examples": n, "float": float_correct / n, "quantized": out["test_correct"] / n,
                    "runtime_float": "keras", "runtime_quantized": "litert"}
        if data is not None and data.test_accuracy is not None:
            accuracy["run_test_accuracy"] = data.test_accuracy
        result["accuracy"] = accuracy
        drop = 100 * (accuracy["float"] - accuracy["quantized"])
        if drop > request.max_accuracy_drop:
            raise ZooError(f"{what}: {request.quantize} test accuracy {100 * accuracy['quantized']:.2f}% against the float model's "
                           f"{100 * accuracy['float']:.2f}% on {n} {split} images loses {drop:.2f} points, more than "
                           f"--max-accuracy-drop {request.max_accuracy_drop:g}: not published")
    if request.quantize != "int8":  # for int8, the accuracy above and the class agreement are its check
        tolerance = max(FLOAT_TOLERANCE[request.quantize], TOLERANCE.get(model.dtype_policy.name, TOLERANCE["float32"]))
        result["tolerance"] = tolerance
        if out["max_abs_diff"] > tolerance:
            raise ZooError(f"{what}: probabilities differ from the trained model's (max abs diff "
                           f"{out['max_abs_diff']:.3g}, tolerance {tolerance:g})")
    result["check"] = _summary(result)
    return result


def _summary(checked: dict[str, Any]) -> str:
    """The check in words, for the command's output: its runtime, and what it compared."""
    parts = [f"LiteRT ({checked['quantization'] or 'float'})"]
    if "tolerance" in checked:
        parts.append(f"max abs diff {checked['max_abs_diff']:.3g} on {checked['examples_compared']} images "
                     f"(tolerance {checked['tolerance']:g})")
    accuracy = checked.get("accuracy")
    if accuracy:
        parts.append(f"test accuracy {100 * accuracy['quantized']:.2f}% quantized vs {100 * accuracy['float']:.2f}% "
                     f"float on {accuracy['examples']} {accuracy['split']} images")
    if "tolerance" not in checked:
        parts.append(f"same class as the float model on {100 * checked['class_agreement']:.1f}% of "
                     f"{checked['examples_compared']} images")
    return "; ".join(parts)


def _test_split(data) -> tuple[np.ndarray, np.ndarray, str]:
    """All of the run's test split (its validation split when it has none) as uint8 arrays."""
    split = data and (data.info.get("test_split") or data.info.get("validation_split"))
    if not split:
        raise ZooError("--quantize measures the file's accuracy on the run's test split: it has none")
    images, labels = pipeline.split_arrays(data.config.dataset, split, **data.config.dataset_options())
    return images, labels, split


def _keras_classes(model: keras.Model, images: np.ndarray) -> np.ndarray:
    return np.argmax(model.predict(to_model_input(images), batch_size=256, verbose=0), axis=-1)
