"""Conformance checks for builders: what ``zoo check`` runs, callable from a plugin's own tests.

    from zoo.check import run_checks
    def test_conforms():
        assert all(r.passed for r in run_checks(my_builder))
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

from .export import export_model

# (input_shape, num_classes): MNIST-like and CIFAR-100-like.
SHAPES = (((28, 28, 1), 10), ((32, 32, 3), 100))
FIT_EXAMPLES, FIT_STEPS = 64, 16


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str


def run_checks(builder: registry.Builder | Callable[..., Any], **hparams: Any) -> list[CheckResult]:
    """Run every check on ``builder`` (a validated Builder or a plain builder function).

    A failed check does not stop the others unless they depend on its result.
    """
    return list(iter_checks(builder, **hparams))


def iter_checks(builder: registry.Builder | Callable[..., Any], **hparams: Any) -> Iterator[CheckResult]:
    """Like :func:`run_checks`, yielding each result as soon as it is known."""
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
        result, model = _check(f"build {'x'.join(map(str, shape))} / {classes} classes", _build, builder, shape, classes, hparams)
        yield result
        if model is not None:
            models[(shape, classes)] = model
    if not models:
        return
    (shape, classes), model = next(iter(models.items()))
    images = np.random.default_rng(0).integers(0, 256, (FIT_EXAMPLES, *shape), dtype=np.uint8)
    yield _check("probabilities", _probabilities, model, images)[0]
    yield _check("short fit moves the loss", _short_fit, model, images, classes)[0]
    with tempfile.TemporaryDirectory(prefix="zoo-check-") as tmp:
        yield _check("save and reload .keras", _keras_roundtrip, model, images, Path(tmp))[0]
        yield _check("export SavedModel and compare", _saved_model, model, images, Path(tmp) / "export")[0]
    yield CheckResult("parameters", True, f"{model.count_params():,} for {shape} with {classes} classes")


def _check(name: str, fn: Callable[..., Any], *args: Any) -> tuple[CheckResult, Any]:
    try:
        detail, value = fn(*args)
        return CheckResult(name, True, detail), value
    except (AssertionError, registry.PluginError) as exc:  # already says what is wrong
        return CheckResult(name, False, str(exc)), None
    except Exception as exc:  # a plugin bug: report it as a failure, keep checking the rest
        last = traceback.extract_tb(exc.__traceback__)[-1]
        where = f" ({Path(last.filename).name}:{last.lineno})" if last else ""
        return CheckResult(name, False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}{where}"), None


def _build(builder: registry.Builder, shape, classes, hparams) -> tuple[str, keras.Model]:
    model = builder.build(input_shape=shape, num_classes=classes, **hparams)
    out = tuple(model.output_shape) if not isinstance(model.output_shape, list) else None
    if out is None or out[1:] != (classes,):
        raise AssertionError(f"output shape {model.output_shape}, expected (None, {classes})")
    return f"output (None, {classes})", model


def _probabilities(model: keras.Model, images: np.ndarray) -> tuple[str, None]:
    probs = np.asarray(model.predict(images / 255.0, verbose=0))
    if probs.min() < 0 or probs.max() > 1 or not np.allclose(probs.sum(-1), 1.0, atol=1e-4):
        raise AssertionError(
            f"outputs are not probabilities (min {probs.min():.3g}, max {probs.max():.3g}, "
            f"row sums {probs.sum(-1).min():.3g}..{probs.sum(-1).max():.3g}); end with a softmax"
        )
    return "in [0, 1], rows sum to 1", None


def _short_fit(model: keras.Model, images: np.ndarray, classes: int) -> tuple[str, None]:
    labels = np.arange(len(images)) % classes
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    x = images.astype("float32") / 255.0
    before = float(model.evaluate(x, labels, verbose=0))
    model.fit(x, labels, batch_size=16, epochs=FIT_STEPS * 16 // len(x), verbose=0)
    after = float(model.evaluate(x, labels, verbose=0))
    if not np.isfinite(after) or after >= before:
        raise AssertionError(f"loss did not go down on a tiny slice: {before:.4f} -> {after:.4f}")
    return f"loss {before:.4f} -> {after:.4f}", None


def _keras_roundtrip(model: keras.Model, images: np.ndarray, tmp: Path) -> tuple[str, None]:
    path = tmp / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, compile=False, safe_mode=True)
    x = images.astype("float32") / 255.0
    diff = float(np.max(np.abs(model.predict(x, verbose=0) - reloaded.predict(x, verbose=0))))
    if diff > 1e-5:
        raise AssertionError(f"reloaded model differs: max abs diff {diff:.3g}")
    return f"max abs diff {diff:.3g}", None


def _saved_model(model: keras.Model, images: np.ndarray, base: Path) -> tuple[str, None]:
    result = export_model(model, base, check_images=images)
    return f"max abs diff {result.max_abs_diff:.3g}", None
