"""Conformance checks for builders: what ``zoo check`` runs, callable from a plugin's own tests.

    from zoo.check import run_checks
    def test_conforms():
        assert all(r.passed for r in run_checks(my_builder))

The checks run in the precision ``zoo train`` would pick on this machine (``precision="auto"``:
mixed_bfloat16 on a CPU with bfloat16 arithmetic, mixed_float16 on a recent GPU), so a model that
only fails in mixed precision fails here first; pass ``precision="float32"`` for the other case.
"""

from __future__ import annotations

import tempfile
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

import registry

from . import optimizers
from .compute import backend, devices
from .config import RunConfig
from .data.images import to_model_input
from .export.bundle import TOLERANCE, export_model
from .models import contract

# (input_shape, num_classes): MNIST-like and CIFAR-100-like.
SHAPES = (((28, 28, 1), 10), ((32, 32, 3), 100))
# The short fit: up to FIT_EPOCHS passes over FIT_EXAMPLES images in batches of FIT_BATCH_SIZE
# (4 steps each), with the recipe's optimizer and learning rate, until an epoch's training loss
# is FIT_MIN_DROP below the first's. A model that learns gets there in a few epochs (a small
# BatchNorm conv net or LeNet with dropout 0.5 in 2 to 4; a squeeze-and-excitation net whose
# recipe asks for 3e-3 needs it); one that cannot learn repeats its loss to round-off for all of
# them: enough steps to overfit the slice, so only a model that cannot learn fails.
FIT_EXAMPLES, FIT_BATCH_SIZE, FIT_EPOCHS = 64, 16, 40
FIT_MIN_DROP = 0.1


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str


def run_checks(
    builder: registry.Builder | Callable[..., Any], *, precision: str = "auto", **hparams: Any
) -> list[CheckResult]:
    """Run every check on ``builder`` (a validated Builder or a plain builder function), built,
    trained, reloaded and exported under ``precision`` (``auto``: as ``zoo train`` picks here).

    A failed check does not stop the others unless they depend on its result.
    """
    return list(iter_checks(builder, precision=precision, **hparams))


def iter_checks(
    builder: registry.Builder | Callable[..., Any], *, precision: str = "auto", **hparams: Any
) -> Iterator[CheckResult]:
    """Like :func:`run_checks`, yielding each result as soon as it is known."""
    policy, _ = devices.resolve_precision(precision, backend.current())
    if not isinstance(builder, registry.Builder):
        try:
            builder = registry.validate(getattr(builder, "__name__", "builder"), builder)
        except registry.PluginError as exc:
            yield CheckResult("contract", False, str(exc))
            return
    yield CheckResult("contract", True, "keyword-only input_shape and num_classes; hyperparameters have defaults")
    keras.utils.set_random_seed(0)
    models = {}
    for shape, classes in SHAPES:
        result, model = _check(
            f"build {'x'.join(map(str, shape))} / {classes} classes", _build, builder, shape, classes, hparams, policy
        )
        yield result
        if model is not None:
            models[(shape, classes)] = model
    if not models:
        return
    (shape, classes), model = next(iter(models.items()))
    images, labels = _images(shape, classes)
    yield _check("probabilities", _probabilities, model, images)[0]
    yield _check("short fit moves the loss", _short_fit, model, images, labels, builder.recipe)[0]
    with tempfile.TemporaryDirectory(prefix="zoo-check-") as tmp:
        yield _check("save and reload .keras", _keras_roundtrip, model, images, Path(tmp), policy)[0]
        yield _check("export SavedModel and compare", _saved_model, model, images, Path(tmp) / "export", policy)[0]
    yield CheckResult("parameters", True, f"{model.count_params():,} for {shape} with {classes} classes")


def _check(name: str, fn: Callable[..., Any], *args: Any) -> tuple[CheckResult, Any]:
    try:
        detail, value = fn(*args)
        return CheckResult(name, True, detail), value
    except registry.HyperparameterError:  # the --hp given, not the plugin: a usage error
        raise
    except (AssertionError, registry.PluginError) as exc:  # already says what is wrong
        return CheckResult(name, False, str(exc)), None
    except Exception as exc:  # a plugin bug: report it as a failure, keep checking the rest
        last = traceback.extract_tb(exc.__traceback__)[-1]
        where = f" ({Path(last.filename).name}:{last.lineno})" if last else ""
        return CheckResult(name, False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}{where}"), None


def _build(builder: registry.Builder, shape, classes, hparams, policy: str) -> tuple[str, keras.Model]:
    with devices.dtype_policy(policy):  # as zoo train builds it
        model = builder.build(input_shape=shape, num_classes=classes, **hparams)  # checks the output shape
    devices.float32_outputs(model)
    return f"output (None, {classes})", model


def _images(shape: tuple[int, ...], classes: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 noise images with labels a model can see: a bright band of rows at the label's height.

    Noise alone makes the short fit a memorisation test, which a conv net with pooling and dropout
    barely starts in a few steps; a visible label makes any model that learns show it.
    """
    labels = np.arange(FIT_EXAMPLES) % classes
    images = np.random.default_rng(0).integers(0, 128, (FIT_EXAMPLES, *shape), dtype=np.uint8)
    height = shape[0]
    for image, label in zip(images, labels):
        top = label * height // classes
        image[top:max(top + 1, (label + 1) * height // classes)] = 255
    return images, labels


def _scaled(images: np.ndarray) -> np.ndarray:
    # The contract's inputs: float32 in [0, 1] (`images / 255.0` alone would be float64).
    return to_model_input(images).numpy()


def _probabilities(model: keras.Model, images: np.ndarray) -> tuple[str, None]:
    problem = contract.probabilities_problem(model.predict(_scaled(images), verbose=0))
    if problem:
        raise AssertionError(problem)
    return "in [0, 1], rows sum to 1", None


def _short_fit(model: keras.Model, images: np.ndarray, labels: np.ndarray, recipe: dict[str, Any]) -> tuple[str, None]:
    optimizer, rate = recipe.get("optimizer", RunConfig.optimizer), recipe.get("learning_rate", RunConfig.learning_rate)
    model.compile(optimizer=optimizers.make(optimizer, rate), loss="sparse_categorical_crossentropy")
    # Judged by the loss `fit` reports, i.e. in training mode, against the first epoch's.
    # `evaluate` runs in inference mode, where BatchNormalization normalises with moving
    # statistics that momentum 0.999 (keras.applications, KerasHub) has barely moved after a few
    # steps: a model that learns looked as if it did not. Each epoch's figure is the mean over
    # its batches, which averages out dropout's random masks, and shuffle=False gives every epoch
    # the same batches, so only the weights differ between the figures.
    stop = _LossDropped(FIT_MIN_DROP)
    history = model.fit(
        _scaled(images), labels, batch_size=FIT_BATCH_SIZE, epochs=FIT_EPOCHS, shuffle=False,
        verbose=0, callbacks=[stop],
    )
    losses = history.history["loss"]
    first, last = losses[0], losses[-1]
    how = f"{optimizer} at {rate:g}, " + ("the recipe's" if "learning_rate" in recipe else "zoo train's default")
    if not stop.dropped:
        raise AssertionError(
            f"training loss did not go down on a tiny slice in {len(losses)} epochs ({how}): {first:.4f} "
            f"in the first, {last:.4f} in the last"
        )
    return f"training loss {first:.4f} -> {last:.4f} in {len(losses)} epochs ({how})", None


class _LossDropped(keras.callbacks.Callback):
    """Stops training once an epoch's loss is ``drop`` below the first epoch's (a finite one)."""

    def __init__(self, drop: float) -> None:
        super().__init__()
        self.drop, self.first, self.dropped = drop, None, False

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        loss = float((logs or {}).get("loss", np.nan))
        if not np.isfinite(loss):
            self.model.stop_training = True
        elif self.first is None:
            self.first = loss
        elif loss <= self.first * (1 - self.drop):
            self.dropped = self.model.stop_training = True


def _keras_roundtrip(model: keras.Model, images: np.ndarray, tmp: Path, policy: str) -> tuple[str, None]:
    path = tmp / "model.keras"
    try:
        model.save(path)
    except Exception as exc:  # worded as zoo train words it
        raise AssertionError(f"cannot save model.keras: {contract.reload_problem(exc)}") from exc
    # As `zoo evaluate` and `zoo export` load a run's model: the same policy and weights give
    # the same numbers, whatever the precision, so the bound stays float32's.
    try:
        reloaded = devices.load_model(path, policy)
    except Exception as exc:  # worded as zoo train words it
        raise AssertionError(f"cannot reload model.keras: {contract.reload_problem(exc)}") from exc
    x = _scaled(images)
    diff = float(np.max(np.abs(model.predict(x, verbose=0) - reloaded.predict(x, verbose=0))))
    if diff > 1e-5:
        raise AssertionError(f"reloaded model differs: max abs diff {diff:.3g}")
    return f"max abs diff {diff:.3g}", None


def _saved_model(model: keras.Model, images: np.ndarray, base: Path, policy: str) -> tuple[str, None]:
    result = export_model(model, base, check_images=images, tolerance=TOLERANCE[policy])
    return f"max abs diff {result.max_abs_diff:.3g}", None
