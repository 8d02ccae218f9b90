"""A loaded, validated model builder: signature, typed hyperparameters, recipe."""

from __future__ import annotations

import functools
import inspect
import typing
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import _hparams
from ._errors import HyperparameterError, PluginError

REQUIRED = ("input_shape", "num_classes")

# What a builder may recommend for training, and the type of each value.
RECIPE_KEYS: dict[str, tuple[type, ...]] = {
    "epochs": (int,),
    "batch_size": (int,),
    "optimizer": (str,),
    "learning_rate": (int, float),
    "schedule": (str,),
    "label_smoothing": (int, float),
    "augment": (bool,),
}


@dataclass(frozen=True)
class Hyperparameter:
    name: str
    type: Any  # a settable type (see _hparams.normalise_type) or None
    default: Any

    @property
    def type_name(self) -> str:
        return _hparams.type_name(self.type)


@dataclass(frozen=True)
class Builder:
    """A builder that passed validation. Call :meth:`build` to make a ``keras.Model``."""

    name: str  # the name the user asked for (``cnn`` or ``dist:cnn``)
    fn: Callable[..., Any]
    hyperparameters: dict[str, Hyperparameter]
    recipe: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        doc = self.doc.strip()
        return doc.splitlines()[0] if doc else ""

    @property
    def doc(self) -> str:
        """The builder's docstring: of the function a ``functools.partial`` wraps (not partial's own)."""
        fn = self.fn
        while isinstance(fn, functools.partial):
            fn = fn.func
        return inspect.getdoc(fn) or ""

    def defaults(self) -> dict[str, Any]:
        return {h.name: h.default for h in self.hyperparameters.values() if h.type is not None}

    def parse_hparams(self, pairs: Mapping[str, str]) -> dict[str, Any]:
        """Parse ``{key: text}`` from the command line into typed values."""
        return self._typed(pairs, _hparams.from_text)

    def check_hparams(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Check typed values (e.g. read back from config.json); lists become tuples."""
        return self._typed(values, _hparams.from_json)

    def coerce_hparams(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Python values or ``--hp`` text alike: text is parsed by the annotation, values checked."""

        def convert(key: str, value: Any, tp: Any) -> Any:
            if isinstance(value, str) and tp is not str:
                return _hparams.from_text(key, value, tp)
            return _hparams.from_json(key, value, tp)

        return self._typed(values, convert)

    def _typed(
        self, values: Mapping[str, Any], convert: Callable[[str, Any, Any], Any]
    ) -> dict[str, Any]:
        settable = [k for k, h in self.hyperparameters.items() if h.type is not None]
        out = {}
        for key, value in values.items():
            if key in self.hyperparameters and key not in settable:  # its default is all it takes
                raise HyperparameterError(
                    f"model '{self.name}': hyperparameter '{key}' cannot be set, only its default used: its type "
                    f"is not bool, int, float, str, a tuple of one of them, or one of these or None")
            if key not in settable:
                raise _hparams.unknown_key(key, settable, self.name)
            out[key] = convert(key, value, self.hyperparameters[key].type)
        return out

    def build(self, *, input_shape: tuple[int, ...], num_classes: int, **hparams: Any):
        """Build the model and check its output is ``(None, num_classes)``.

        A builder that raises ``ValueError`` or ``TypeError`` for hyperparameters the caller set,
        while it builds with its defaults, rejects those values: a HyperparameterError. Any other
        failure, or a result that is not such a model, is the plugin's: a PluginError.
        """
        input_shape, num_classes = tuple(input_shape), int(num_classes)
        try:
            model = self.fn(input_shape=input_shape, num_classes=num_classes, **hparams)
        except HyperparameterError:
            raise
        except Exception as exc:  # the plugin's own words; whose fault it is comes next
            reason = _reason(exc)
            if isinstance(exc, (ValueError, TypeError)) and hparams and self._builds(input_shape, num_classes):
                settings = ", ".join(f"{k}={_hparams.show(v)}" for k, v in hparams.items())
                raise HyperparameterError(f"model '{self.name}' rejects {settings}: {reason}") from exc
            raise PluginError(
                f"model '{self.name}' failed to build for input_shape={input_shape}, "
                f"num_classes={num_classes}: {reason}"
            ) from exc
        _check_model(self.name, model, input_shape, num_classes)
        return model

    def _builds(self, input_shape: tuple[int, ...], num_classes: int) -> bool:
        try:
            self.fn(input_shape=input_shape, num_classes=num_classes)
        except Exception:
            return False
        return True


def _check_model(name: str, model: Any, input_shape: tuple[int, ...], num_classes: int) -> None:
    """A keras.Model that takes one batch of ``input_shape`` images and outputs ``num_classes``
    scores. A model that knows its shapes only once called (a Sequential without an Input) is
    built for ``input_shape``, as its first batch would build it; a subclassed model, which has no
    symbolic inputs, is called on a symbolic batch of them (which builds it, as Keras does when it
    reloads one)."""
    import keras  # only here: listing and validation never import TensorFlow

    if not isinstance(model, keras.Model):
        raise PluginError(f"model '{name}' returned {type(model).__name__}, expected a keras.Model")
    try:
        takes, shape = model.input_shape, model.output_shape
    except (AttributeError, ValueError) as exc:
        if not isinstance(model, keras.Sequential):  # subclassed: it takes what it was called on
            takes, shape = (None, *input_shape), _called_shape(name, model, input_shape)
        elif model.built:
            raise PluginError(f"model '{name}' has no defined input or output shape ({_first_line(exc)}); "
                              "start it with keras.Input(shape=input_shape)") from exc
        else:
            try:
                model.build((None, *input_shape))
                takes, shape = model.input_shape, model.output_shape
            except Exception as exc:  # noqa: BLE001  (the plugin's layers refuse the shape)
                raise PluginError(
                    f"model '{name}' cannot be built for inputs of shape {(None, *input_shape)}: "
                    f"{_reason(exc)}; start it with keras.Input(shape=input_shape)"
                ) from exc
    if not isinstance(takes, tuple) or len(takes) != len(input_shape) + 1 or any(
        have is not None and have != want for have, want in zip(takes[1:], input_shape)
    ):
        raise PluginError(f"model '{name}' takes inputs of shape {takes}, expected (None, "
                          f"{', '.join(map(str, input_shape))}): build it from the input_shape it is given")
    if not isinstance(shape, tuple) or len(shape) != 2 or shape[-1] != num_classes:
        raise PluginError(f"model '{name}' outputs shape {shape}, expected (None, {num_classes})")


_KERAS_WRAPPERS = ("Exception encountered when calling", "Could not automatically infer the output shape")


def _called_shape(name: str, model: Any, input_shape: tuple[int, ...]) -> Any:
    """The output shape of a subclassed model called on a symbolic batch of ``input_shape`` images
    (a list of shapes for several outputs)."""
    import keras

    batch = (None, *input_shape)
    try:
        with warnings.catch_warnings():  # Keras' advice on building a layer whose call failed
            warnings.simplefilter("ignore")
            outputs = model(keras.KerasTensor(batch), training=False)
    except Exception as exc:  # the plugin's call refuses the shape
        raise PluginError(f"model '{name}' cannot be called on a batch of inputs of shape {batch}: "
                          f"{_reason(exc)}") from exc
    shapes = [tuple(t.shape) for t in keras.tree.flatten(outputs)]
    return shapes[0] if len(shapes) == 1 and not isinstance(outputs, (list, tuple, dict)) else shapes


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""


def _reason(exc: BaseException) -> str:
    """``Type: first line`` of what went wrong: for Keras' wrapper around a layer's call
    ("Exception encountered when calling MaxPooling2D.call()."), of what the call raised in it."""
    while str(exc).startswith(_KERAS_WRAPPERS) and exc.__context__ is not None:
        exc = exc.__context__
    return f"{type(exc).__name__}: {_first_line(exc)}"


def validate(name: str, obj: Any) -> Builder:
    """Check that ``obj`` fulfils the builder contract (pluggy-style: name what is wrong)."""
    if not callable(obj):
        raise PluginError(f"model '{name}' is {a_kind(obj)}, not a callable builder")
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError) as exc:
        raise PluginError(f"model '{name}': cannot read its signature ({exc})") from exc
    params = sig.parameters
    for required in REQUIRED:
        p = params.get(required)
        if p is None or p.kind is not inspect.Parameter.KEYWORD_ONLY:
            raise PluginError(
                f"model '{name}' must take keyword-only arguments input_shape and num_classes; "
                f"its signature is {name}{sig}"
            )
    try:
        hints = typing.get_type_hints(obj)
    except Exception:  # unresolvable string annotations: fall back to the defaults' types
        hints = {}
    hps = {}
    for p in params.values():
        if p.name in REQUIRED or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        if p.default is p.empty:
            raise PluginError(
                f"model '{name}': hyperparameter '{p.name}' has no default; every argument "
                f"besides input_shape and num_classes needs one"
            )
        tp = hints.get(p.name)
        tp = _hparams.normalise_type(tp) if tp is not None else _hparams.infer_type(p.default)
        default = p.default
        if tp is not None:  # a default its own annotation refuses would be recorded as it is
            try:
                default = _hparams.from_json(p.name, p.default, tp)
            except HyperparameterError:
                raise PluginError(f"model '{name}': hyperparameter '{p.name}' defaults to {p.default!r}, "
                                  f"not {_hparams.type_name(tp)}") from None
        hps[p.name] = Hyperparameter(p.name, tp, default)
    return Builder(name=name, fn=obj, hyperparameters=hps, recipe=_validate_recipe(name, obj))


def a_kind(value: Any) -> str:
    """``an int``, ``a str``: the kind of ``value`` with its article."""
    kind = type(value).__name__
    return f"{'an' if kind[0] in 'aeiouAEIOU' else 'a'} {kind}"


def _validate_recipe(name: str, obj: Any) -> dict[str, Any]:
    recipe = getattr(obj, "recipe", None)
    if recipe is None:
        return {}
    if not isinstance(recipe, Mapping):
        raise PluginError(f"model '{name}': recipe must be a dict, received {type(recipe).__name__}")
    for key, value in recipe.items():
        if key not in RECIPE_KEYS:
            raise PluginError(
                f"model '{name}': unknown recipe key '{key}'; accepted: {', '.join(RECIPE_KEYS)}"
            )
        if isinstance(value, bool) and bool not in RECIPE_KEYS[key] or not isinstance(
            value, RECIPE_KEYS[key]
        ):
            raise PluginError(f"model '{name}': recipe '{key}' has a bad value {value!r}")
    return dict(recipe)
