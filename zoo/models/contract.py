"""What ``zoo train`` asks of a built model before it trains it, beyond the registry's shapes: its
outputs are probabilities, and it reloads from its own config as a fresh process will reload the
run's ``model.keras`` (``zoo evaluate``, ``zoo export``). Either failure found after an epoch
would leave a finished run that serves wrong numbers or cannot be opened. Also the shapes a model
takes and gives, read alike from a functional model and a subclassed one."""

from __future__ import annotations

import re
import warnings

import keras
import numpy as np

from registry import PluginError

_UNLOCATED = re.compile(r"Could not locate (class|function) '([^']+)'")
_NO_CONFIG = re.compile(r"Object (\S+) was created by passing")
_LAMBDA = "`Lambda` layer whose `function` is a Python lambda"


def probabilities_problem(probs: np.ndarray) -> str | None:
    """Why ``probs`` (a batch of outputs) are not class probabilities; None if they are (the
    softmax computes in float32 in every precision: devices.float32_outputs)."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.min() < 0 or probs.max() > 1 or not np.allclose(probs.sum(-1), 1.0, atol=1e-4):
        return (f"outputs are not probabilities (min {probs.min():.3g}, max {probs.max():.3g}, "
                f"row sums {probs.sum(-1).min():.3g}..{probs.sum(-1).max():.3g}); end with a softmax")
    return None


def check_before_training(name: str, model: keras.Model, input_shape: tuple[int, ...], *, call: bool) -> None:
    """A one-line PluginError if ``model`` cannot be trained into a run that is usable afterwards.
    ``call``: also run it on two images (where one batch of two can run as it is: one device).
    Under the dtype policy the run's model.keras will be loaded in (sub-layers that a custom layer
    makes in ``build()`` take the global policy)."""
    if call:
        images = np.random.default_rng(0).random((2, *input_shape), dtype=np.float32)
        problem = probabilities_problem(keras.ops.convert_to_numpy(model(images, training=False)))
        if problem:
            raise PluginError(f"model '{name}': {problem}")
    try:
        with warnings.catch_warnings():  # Keras' build() advice is for the reload a user makes, not this trial
            warnings.simplefilter("ignore")
            keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model), safe_mode=True)
    except Exception as exc:  # any failure here is the reload's that would come after training
        raise PluginError(f"model '{name}' cannot be reloaded from its saved config, so its run could not be "
                          f"evaluated or exported: {reload_problem(exc)}") from exc


def reload_problem(exc: Exception) -> str:
    """Why Keras could not save or reload a model, in one line, with what to change: a class it
    cannot locate, a class without get_config(), a Python lambda."""
    text = str(exc)
    found = _NO_CONFIG.search(text)
    if found:
        return (f"its class '{found.group(1)}' takes arguments in __init__() but has no get_config(): implement "
                "get_config() returning them, and register the class with @keras.saving.register_keras_serializable()")
    if _LAMBDA in text:
        return ("a Lambda layer's Python lambda is not saved with the model: write it as a custom layer, registered "
                "with @keras.saving.register_keras_serializable()")
    found = _UNLOCATED.search(text)
    if found:
        kind, name = found.groups()
        return (f"Keras cannot locate its {kind} '{name}': register it with "
                "@keras.saving.register_keras_serializable() where the plugin defines it")
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def input_shape(model: keras.Model) -> tuple[int | None, ...]:
    """The shape of one image ``model`` takes: its Input's, or for a subclassed model (no symbolic
    inputs) the shape it was built for, which Keras keeps in its build config and model.keras."""
    try:
        return tuple(model.input_shape[1:])
    except (AttributeError, ValueError):
        return tuple(model.get_build_config()["input_shape"][1:])


def with_input_shape(model: keras.Model, shape: tuple[int, ...]) -> keras.Model:
    """``model`` taking images of ``shape`` (height, width, channels), for serving: ``model`` itself
    when its input is fixed already, else a functional model around it with that Input. A model
    whose input has a ``None`` size takes any; what serves it takes the shape it trained on."""
    if None not in input_shape(model):
        return model
    given = getattr(model, "inputs", None)
    inputs = keras.Input(shape=tuple(int(n) for n in shape), dtype=given[0].dtype if given else "float32")
    return keras.Model(inputs, model(inputs, training=False))


def num_classes(model: keras.Model) -> int:
    """The number of probabilities ``model`` outputs for an image."""
    try:
        return int(model.output_shape[-1])
    except (AttributeError, ValueError):
        return int(model.compute_output_spec(keras.KerasTensor((None, *input_shape(model)))).shape[-1])
