"""The ONNX file of an export (``model.onnx``, extra ``keras-zoo[onnx]``): the uint8-in,
probabilities-and-class-out contract, checked in ONNX Runtime in a fresh process.

Input ``image`` uint8 ``[batch, H, W, C]`` (the batch dynamic; H, W and C too for a model trained on
image folders, converted and resized in the graph as the SavedModel does) -> ``probabilities``
float32 ``[batch, num_classes]`` and ``class_id`` int64 ``[batch]``. Class names are not an output
(a string tensor many ONNX runtimes lack) but the model's ``metadata_props``, with the zoo's
version and the run or preset it came from. The graph is the SavedModel's own serving function
(:func:`.saved_model.serving_function`) converted by tf2onnx, so both formats compute alike.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import files
from ..errors import ZooError
from ..models import contract
from ..version import __version__
from . import runtime, saved_model
from .request import FILES

FILE = FILES["onnx"]
# ONNX opset the graph is converted to, chosen rather than tf2onnx's default (which moves with its
# version): 17 is tf2onnx 1.17's best-tested recent opset and every ONNX Runtime since 1.13 runs it.
OPSET = 17
# metadata_props keys this module writes besides the export's metadata (model, dataset, run_dir or
# preset and preset_digest, zoo_version): the class names as a JSON list, what ``image`` takes,
# and why a folder-trained model's file takes fixed-size images only (absent when it does not).
CLASS_NAMES, ACCEPTS, FIXED_SIZE = "class_names", "accepts", "fixed_size_because"
IDENTITY = ("model", "dataset", "run_dir", "preset", "preset_digest", "precision")
# The largest difference between ONNX Runtime's probabilities and Keras' that is still round-off,
# by the precision the model computes in. float32: ONNX Runtime's kernels (MLAS) sum and fuse in
# another order than TensorFlow's (oneDNN/Eigen), a few float32 ulps per layer, 1e-4 after the
# softmax is about 100x what the built-in models show and 100x below a change of class that
# matters. A mixed-precision model's file computes in float32 (see _float32): the difference is the
# trained model's own 16-bit rounding, held to the SavedModel's tolerance for it (11 or 8
# significant bits: 5e-3 for float16, 3e-2 for bfloat16).
TOLERANCE = {"float32": 1e-4, "mixed_float16": 5e-3, "mixed_bfloat16": 3e-2}


def write(model, folder: Path, *, any_size: bool, class_names, metadata: dict[str, Any], request, data) -> Path:
    """Write ``folder/model.onnx``; return its path.

    A folder-trained model (``any_size``) whose in-graph conversion and resizing tf2onnx cannot
    convert is written for fixed-size images instead, and says so in its metadata (``check``
    reports it, the command prints it and zoo.json records it)."""
    shape = contract.input_shape(model)
    names = saved_model.names_or_ids(class_names, contract.num_classes(model))
    fixed_because = ""
    try:
        proto = _convert(model, shape, any_size)
    except _Unconvertible as exc:
        if not any_size:
            raise ZooError(f"--format onnx: tf2onnx cannot convert {model.name}: {exc}") from None
        fixed_because = f"tf2onnx {_tf2onnx_version()} cannot convert the in-graph resizing ({exc})"
        proto = _convert(model, shape, any_size=False)
    props = {key: str(metadata[key]) for key in IDENTITY if metadata.get(key) is not None}
    props.update({"zoo_version": __version__, CLASS_NAMES: json.dumps(names),
                  ACCEPTS: _accepts(shape, any_size and not fixed_because)})
    if fixed_because:
        props[FIXED_SIZE] = fixed_because
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    path = folder / FILE
    files.write_bytes(path, proto.SerializeToString())  # a half file never has the format's name
    return path


class _Unconvertible(Exception):
    """tf2onnx left ops it has no ONNX conversion for (it keeps them, as TensorFlow ops)."""


def _tf2onnx_version() -> str:
    import tf2onnx

    return tf2onnx.__version__


def _accepts(shape: Sequence[int], any_size: bool) -> str:
    height, width, channels = shape
    if any_size:
        return f"uint8 [N, H, W, C] of any size and 1 to 4 channels (resized to {height}x{width} in the graph)"
    return f"uint8 [N, {height}, {width}, {channels}]"


def _convert(model, shape: tuple[int, ...], any_size: bool):
    """The SavedModel's serving function (without class_name and its run-time shape assert: ONNX
    Runtime checks the declared dimensions itself) as an ONNX ModelProto at OPSET."""
    import logging

    import onnx
    import tensorflow as tf
    import tf2onnx
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    serve = saved_model.serving_function(saved_model.inference(_float32(model)), shape, any_size, None, checked=False)
    spec = tf.TensorSpec([None, None, None, None] if any_size else [None, *shape], tf.uint8, name="image")
    quiet = logging.getLogger("tf2onnx")
    level, _ = quiet.level, quiet.setLevel(logging.CRITICAL)  # it logs each op it cannot convert
    try:
        # Frozen first: tf2onnx's from_function makes every captured tensor that is not a variable
        # (a Normalization layer's mean and variance, any layer's tf.constant) an input of the file;
        # frozen, the function captures nothing and its one input is the image.
        traced = serve.get_concrete_function()
        frozen = convert_variables_to_constants_v2(traced, lower_control_flow=False, aggressive_inlining=True)
        serve = tf.function(lambda image: tf.nest.pack_sequence_as(traced.structured_outputs, frozen(image)),
                            input_signature=[spec], autograph=False)  # the outputs' names, which freezing drops
        proto, _ = tf2onnx.convert.from_function(serve, input_signature=[spec], opset=OPSET)
    except Exception as exc:  # tf2onnx raises many types for a graph it cannot handle
        raise _Unconvertible(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from None
    finally:
        quiet.setLevel(level)
    unknown = sorted({n.op_type for n in _nodes(proto.graph) if not _known(onnx, n)})
    if unknown:
        raise _Unconvertible(f"no ONNX conversion for {', '.join(unknown)}")
    return proto


def _float32(model):
    """``model``, or for a mixed-precision model a copy computing in float32 with its weights
    (float32 variables already): ONNX has no bfloat16 convolution and ONNX Runtime's CPU kernels
    are float32, so the file computes in float32 and its check holds it to the run's precision's
    tolerance, as the trained model's own 16-bit rounding is the larger difference."""
    import keras

    from ..compute.devices import dtype_policy

    if model.dtype_policy.name == "float32":
        return model
    with dtype_policy("float32"):  # sub-layers a custom layer makes in build() take the global one
        copy = model.__class__.from_config(_as_float32(model.get_config()))
        if not copy.built:  # a subclassed model: built as Keras builds it on loading
            copy.build_from_config(model.get_build_config())
    copy.set_weights(model.get_weights())
    if not isinstance(copy, keras.Model):
        raise ZooError(f"--format onnx: cannot copy {model.name} to compute in float32")
    return copy


def _as_float32(config):
    """A Keras config with every dtype policy float32."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy":
            return {**config, "config": {**config["config"], "name": "float32"}}
        return {k: _as_float32(v) for k, v in config.items()}
    if isinstance(config, list):
        return [_as_float32(v) for v in config]
    return config


def _nodes(graph):
    """Every node of ``graph`` and of the subgraphs (If, Loop branches) inside it."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.g.node:
                yield from _nodes(attr.g)
            for sub in attr.graphs:
                yield from _nodes(sub)


def _known(onnx, node) -> bool:
    return onnx.defs.has(node.op_type, node.domain or "") if node.domain in ("", "ai.onnx") else False


# Runs in a fresh interpreter with onnxruntime and numpy only (see runtime.py): the file's
# declared input and outputs, batches of 1 and of all the images, and its metadata_props.
CHECK = """
import onnxruntime as ort
session = ort.InferenceSession(ARGS["path"], providers=["CPUExecutionProvider"])
def described(args):
    return [{"name": a.name, "type": a.type, "shape": [d if isinstance(d, int) else None for d in a.shape]}
            for a in args]
images = INPUTS["images"]
single = session.run(["probabilities", "class_id"], {"image": images[:1]})
batch = session.run(["probabilities", "class_id"], {"image": images})
done({"inputs": described(session.get_inputs()), "outputs": described(session.get_outputs()),
      "metadata": dict(session.get_modelmeta().custom_metadata_map),
      "single": [single[0].tolist(), single[1].tolist(), str(single[0].dtype), str(single[1].dtype)],
      "batch": [batch[0].tolist(), batch[1].tolist(), str(batch[0].dtype), str(batch[1].dtype)],
      "onnxruntime": ort.__version__})
"""


def check(path: Path, model, images, *, any_size: bool, class_names, request, data) -> dict[str, Any]:
    """Reload ``path`` in its own runtime in a fresh process and compare it with ``model``; a
    ZooError naming the check that failed and by how much, or what zoo.json records of it."""
    from ..data.images import to_model_input

    images = np.asarray(images, dtype=np.uint8)
    got = runtime.run("--format onnx", CHECK, {"images": images}, {"path": str(path)})
    num_classes = contract.num_classes(model)
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    meta, shape = got["metadata"], contract.input_shape(model)
    dynamic = _check_signature(got["inputs"], got["outputs"], shape, num_classes)
    fixed_because = _check_metadata(meta, names, shape, any_size, dynamic)
    for run in ("single", "batch"):
        if got[run][2:] != ["float32", "int64"]:
            raise ZooError(f"--format onnx: outputs are {got[run][2]} and {got[run][3]}, expected float32 and int64")
    policy = getattr(getattr(model, "dtype_policy", None), "name", "float32")
    tolerance = TOLERANCE.get(policy, TOLERANCE["float32"])
    expected = np.asarray(model.predict(to_model_input(images), batch_size=256, verbose=0), dtype=np.float32)
    probabilities, class_id = np.asarray(got["batch"][0], np.float32), np.asarray(got["batch"][1])
    single = np.asarray(got["single"][0], np.float32)
    diff = float(np.max(np.abs(probabilities - expected)))
    if diff > tolerance:
        raise ZooError(f"--format onnx: probabilities differ from Keras' by up to {diff:.3g} (tolerance {tolerance:g}) "
                       f"on {len(images)} images")
    single_diff = float(np.max(np.abs(single[0] - probabilities[0])))
    if single_diff > tolerance:
        raise ZooError(f"--format onnx: a batch of 1 differs from the same image in a batch of {len(images)} "
                       f"by {single_diff:.3g} (tolerance {tolerance:g})")
    if not np.array_equal(class_id, np.argmax(probabilities, axis=-1)) or got["single"][1] != class_id[:1].tolist():
        raise ZooError("--format onnx: class_id is not the argmax of the file's own probabilities")
    # Keras' class, but where its two most likely classes are closer than the tolerance (a tie
    # that round-off may break either way, not a difference of the file's).
    top2 = np.sort(expected, axis=-1)[:, -2:] if num_classes > 1 else np.ones((len(images), 2))
    clear = (top2[:, 1] - top2[:, 0]) > 2 * tolerance
    other = int(np.sum((class_id != np.argmax(expected, axis=-1)) & clear))
    if other:
        raise ZooError(f"--format onnx: class_id differs from Keras' on {other} of {len(images)} images")
    record = {
        "file": FILE, "bytes": path.stat().st_size, "opset": OPSET, "onnxruntime": got["onnxruntime"], "precision": policy,
        "tolerance": tolerance, "max_abs_diff": diff, "images_compared": len(images),
        "batch_sizes": [1, len(images)], "dynamic_dims": dynamic, "any_size": len(dynamic) == 4,
        "accepts": meta.get(ACCEPTS, ""),
        "check": (f"ONNX Runtime {got['onnxruntime']} (opset {OPSET}) on {len(images)} images: max abs diff "
                  f"{diff:.3g} (tolerance {tolerance:g}), same class as Keras"),
    }
    if fixed_because:
        record["warning"] = saved_model.fixed_size_warning(shape, fixed_because)
    return record


def _check_metadata(meta: dict[str, str], names: list[str], shape: tuple[int, ...], any_size: bool,
                    dynamic: list[str]) -> str:
    """The file's metadata_props as ``write`` wrote them; why it takes fixed-size images ("" if
    it takes what the SavedModel takes). Entries are read back in the order they were written, so
    a file cut short between two of them still parses: the last ones written must be there."""
    fixed_because = meta.get(FIXED_SIZE, "")
    if any_size and not fixed_because and dynamic != ["batch", "height", "width", "channels"]:
        raise ZooError(f"--format onnx: image's dynamic dimensions are {dynamic}, expected batch, height, width, channels")
    if json.loads(meta.get(CLASS_NAMES, "null")) != names:
        raise ZooError(f"--format onnx: metadata_props {CLASS_NAMES} is {meta.get(CLASS_NAMES)!r}, expected {names}")
    accepts = _accepts(shape, any_size and not fixed_because)
    if meta.get("zoo_version") != __version__ or meta.get(ACCEPTS) != accepts:
        raise ZooError(f"--format onnx: metadata_props zoo_version, {ACCEPTS} are {meta.get('zoo_version')!r}, "
                       f"{meta.get(ACCEPTS)!r}, expected {__version__!r}, {accepts!r} (is the file cut short?)")
    return fixed_because


def _check_signature(inputs, outputs, shape: tuple[int, ...], num_classes: int) -> list[str]:
    """The file's one input and two outputs as the contract has them; the input's dynamic
    dimensions by name (batch, and height, width, channels where they are)."""
    if [i["name"] for i in inputs] != ["image"] or inputs[0]["type"] != "tensor(uint8)":
        raise ZooError(f"--format onnx: inputs are {[(i['name'], i['type']) for i in inputs]}, expected image uint8")
    got = {o["name"]: o for o in outputs}
    wanted = {"probabilities": ("tensor(float)", [None, num_classes]), "class_id": ("tensor(int64)", [None])}
    for name, (kind, dims) in wanted.items():
        if name not in got or got[name]["type"] != kind or got[name]["shape"] != dims:
            raise ZooError(f"--format onnx: output {name} is {got.get(name)}, expected {kind} {dims}")
    dims = inputs[0]["shape"]
    if len(dims) != 4 or dims[0] is not None:
        raise ZooError(f"--format onnx: image's shape is {dims}, expected a dynamic batch dimension first")
    if any(d is not None and d != s for d, s in zip(dims[1:], shape)):
        raise ZooError(f"--format onnx: image's shape is {dims}, expected [batch, {', '.join(map(str, shape))}]")
    return [n for n, d in zip(("batch", "height", "width", "channels"), dims) if d is None]
