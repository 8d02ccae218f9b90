"""A preset's weights in a model: build the preset's model and load it, or start a new model from
it (fine-tuning), with a one-line error where the shapes do not fit, never a traceback."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras

import registry

from ..compute import devices
from ..errors import ZooError, ZooUsageError
from .store import WEIGHTS, Preset


def shapes(model: keras.Model) -> list[list[Any]]:
    """``[variable path, shape]`` of every weight of ``model``, in its order (preset.json's
    ``weights``): what a model must have to take the preset's weights."""
    return [[v.path, list(v.shape)] for v in model.weights]


def build(preset: Preset, *, input_shape: Sequence[int] | None = None, num_classes: int | None = None,
          hparams: Mapping[str, Any] | None = None) -> keras.Model:
    """The preset's model with its weights, after verifying its files. ``input_shape``,
    ``num_classes`` and ``hparams`` may be given; they must be the preset's."""
    preset.verify()
    shape = tuple(preset.input_shape)
    classes = len(preset.class_names)
    if input_shape is not None and tuple(input_shape) != shape:
        raise ZooUsageError(f"preset {preset.name} takes images of shape {shape}, not {tuple(input_shape)}")
    if num_classes is not None and num_classes != classes:
        raise ZooUsageError(
            f"preset {preset.name} has {classes} classes, not {num_classes}: to train it for other "
            f"classes, fine-tune it (zoo train {preset.model} --init {preset.name} --dataset ...)"
        )
    builder = _builder(preset)
    settings = {**builder.coerce_hparams(preset.hparams), **builder.coerce_hparams(dict(hparams or {}))}
    model = builder.build(input_shape=shape, num_classes=classes, **settings)
    load(preset, model)
    return model


def _builder(preset: Preset) -> registry.Builder:
    """The builder of the preset's model: where two plugins name it, the one the preset was trained
    with (its record names the distribution); not installed: which plugin to install."""
    model = preset.record["model"]
    dist = model.get("distribution")
    try:
        try:
            return registry.get(preset.model)
        except registry.AmbiguousModelError:
            if not dist:
                raise
            return registry.get(f"{dist}:{preset.model}")
    except registry.UnknownModelError:
        if not dist:  # trained on a builder registered in a notebook or script (zoo.register)
            raise ZooError(f"preset {preset.name} is a preset of model '{preset.model}', which was registered with "
                           f"zoo.register in the process that trained it and is not registered here: register "
                           f"the same builder (zoo.register) before loading it, or make it a plugin") from None
        version = f"=={model['version']}" if model.get("version") else ""
        raise ZooError(f"preset {preset.name} is a preset of model '{preset.model}' of the plugin "
                       f"{dist}, which is not installed here: pip install \"{dist}{version}\"") from None


def load(preset: Preset, model: keras.Model) -> None:
    """Load the preset's weights into ``model``, whose weights must have the preset's shapes."""
    check_shapes(preset, model)
    try:
        model.load_weights(preset.path / WEIGHTS)
    except Exception as exc:  # h5py and Keras raise many kinds for a damaged file
        raise ZooError(f"preset {preset.name}: cannot load {preset.path / WEIGHTS}: {type(exc).__name__}: {exc}") from None


def check_shapes(preset: Preset, model: keras.Model, skip: set[int] = frozenset()) -> None:
    """A one-line error unless ``model``'s weights (but the positions in ``skip``) have the
    shapes of the preset's, in order."""
    expected = preset.record.get("weights") or []
    found = shapes(model)
    if len(found) != len(expected):
        raise ZooUsageError(
            f"preset {preset.name} has {len(expected)} weights, this {preset.model} model has "
            f"{len(found)}: its hyperparameters differ from the preset's ({_settings(preset)})"
        )
    for i, ((path, shape), (theirs, their_shape)) in enumerate(zip(found, expected)):
        if i not in skip and list(shape) != list(their_shape):
            raise ZooUsageError(
                f"preset {preset.name}: weight {i} ({theirs}) has shape {tuple(their_shape)}, this model's "
                f"({path}) {tuple(shape)}: its hyperparameters or input differ from the preset's ({_settings(preset)})"
            )


def _settings(preset: Preset) -> str:
    hparams = ", ".join(f"{k}={v}" for k, v in preset.hparams.items()) or "defaults"
    return f"{hparams}; input {tuple(preset.input_shape)}"


def head(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers with weights nearest the model's outputs, found in its graph: the classifier
    that a new set of classes replaces (a weightless softmax after it is looked through). A
    model without a graph of layers (subclassed) has its last layer with weights."""
    try:
        todo = [t._keras_history.operation for t in model.outputs]
    except (AttributeError, ValueError):
        return [layer for layer in model.layers if layer.weights][-1:]
    found, seen = [], set()
    while todo:
        layer = todo.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if layer.weights:
            found.append(layer)
            continue
        for node in getattr(layer, "_inbound_nodes", []):
            todo += [t._keras_history.operation for t in node.input_tensors]
    return found


def check_input(preset: Preset, input_shape: Sequence[int], dataset: str, folder: bool) -> None:
    """A one-line usage error unless ``dataset``'s images (``input_shape``) are of the preset's
    shape: its weights were learnt on images of that size and channel count. Called as soon as
    the dataset is described, before anything is built or written."""
    theirs, mine = tuple(preset.input_shape), tuple(input_shape)
    if theirs == mine:
        return
    hint = (f"prepare the folder's images at the preset's shape (--image-size {theirs[0]},{theirs[1]} "
            f"--channels {theirs[2]})" if folder else "fine-tune it on a dataset of that shape")
    raise ZooUsageError(
        f"preset {preset.name} takes images of shape {_shape(theirs)}, the dataset {dataset} has "
        f"{_shape(mine)}: {hint}"
    )


def _shape(shape: Sequence[int]) -> str:
    return "x".join(str(n) for n in shape)


def start_from(preset: Preset, model: keras.Model, class_names: Sequence[str], precision: str) -> bool:
    """Fine-tuning: put the preset's weights into ``model`` (built for ``class_names``). When the
    classes are the preset's (names, in order), every weight is loaded; otherwise the head
    (:func:`head`) keeps its fresh weights and the rest is loaded. True when the head is new."""
    preset.verify()
    if list(class_names) == preset.class_names:
        load(preset, model)
        return False
    new = {id(v) for layer in head(model) for v in layer.weights}
    skip = {i for i, v in enumerate(model.weights) if id(v) in new}
    check_shapes(preset, model, skip)
    with devices.dtype_policy(precision):  # the preset's model, to read its weights from
        source = build(preset)
    for i, (mine, theirs) in enumerate(zip(model.weights, source.weights)):
        if i not in skip:
            mine.assign(theirs)
    return True
