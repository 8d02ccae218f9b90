"""A study's search space: which recipe fields and hyperparameters a trial samples, and from what.

Each dimension is written as text: ``log(1e-4,1e-2)`` (float, log-uniform), ``uniform(0,0.5)``,
``int(1,4)`` or ``choice(a,b,...)`` (a tuple-valued choice in parentheses: ``choice((8,8),(16,16))``).
The default space comes from the builder: its ``search_space`` attribute (same text, beside its
``recipe``) when it declares one, else one derived from its recipe and typed hyperparameters
(:func:`default_space`). ``--space KEY=TEXT`` replaces or adds a dimension. Every key and range
is checked before anything trains: a recipe field's ends by RunConfig, a hyperparameter's by
building the model at them (:func:`check_ranges`). Standard library only, apart from that build.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import registry

from ..config import DEFAULTS, OPTIMIZERS, SCHEDULES, RunConfig
from ..errors import ZooUsageError

KINDS = ("log", "uniform", "int", "choice")
FORMS = "log(a,b), uniform(a,b), int(a,b) or choice(a,b,...)"
# Recipe fields a study may search (epochs is the trial's budget, set with --epochs, not searched).
RECIPE_FIELDS = ("learning_rate", "batch_size", "optimizer", "schedule", "label_smoothing", "augment")
# A hyperparameter named like one of these is searched as hp.NAME: the bare name is the training option's.
HP = "hp."
_CLASHING = (*RECIPE_FIELDS, "epochs")


def key_of(hparam: str) -> str:
    """The space key of a builder's hyperparameter."""
    return HP + hparam if hparam in _CLASHING else hparam


def hparam_of(key: str, builder: registry.Builder) -> str | None:
    """The hyperparameter a space key names, or None for a training option."""
    if key.startswith(HP):
        return key[len(HP):]
    return key if key in builder.hyperparameters and key not in _CLASHING else None
_TEXT = re.compile(r"^\s*(\w+)\s*\((.*)\)\s*$", re.S)


@dataclass(frozen=True)
class Dimension:
    key: str
    kind: str  # one of KINDS
    values: tuple[Any, ...]  # (low, high) or the choices, typed

    @property
    def text(self) -> str:
        return f"{self.kind}({','.join(_show(v) for v in self.values)})"

    def ends(self) -> tuple[Any, ...]:
        """The values the range is checked at: both ends, or every choice."""
        return self.values

    def suggest(self, trial) -> Any:
        """This dimension's value for an Optuna trial (a tuple choice comes back as a tuple)."""
        if self.kind == "choice":
            shown = [_show(v) for v in self.values]
            return self.values[shown.index(trial.suggest_categorical(self.key, shown))]
        if self.kind == "int":
            return trial.suggest_int(self.key, *self.values)
        return trial.suggest_float(self.key, *self.values, log=self.kind == "log")


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "(" + ",".join(_show(v) for v in value) + ")"
    return repr(value) if isinstance(value, float) else str(value)


def _items(text: str) -> list[str]:
    """Top-level comma-separated items, keeping commas inside parentheses or brackets."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch in "([" and 1 or ch in ")]" and -1 or 0
        if ch == "," and depth == 0:
            items.append(text[start:i].strip())
            start = i + 1
    items.append(text[start:].strip())
    return [item for item in items if item]


def _value(key: str, text: str, tp: Any) -> Any:
    """One value of ``key``, of type ``tp``, from its text (a tuple as ``(a,b)``)."""
    inner = text.strip()
    if inner[:1] in "([" and inner[-1:] in ")]":
        inner = inner[1:-1]
    return registry.parse_value(key, inner, tp)


def parse(key: str, text: str, tp: Any) -> Dimension:
    """``text`` for ``key`` (of type ``tp``), checked for form and type; a one-line usage error."""
    where = f"--space {key}={text}"
    match = _TEXT.match(text)
    if not match or match.group(1) not in KINDS:
        raise ZooUsageError(f"{where}: write {FORMS}")
    kind, items = match.group(1), _items(match.group(2))
    scalar = tp if tp in (int, float, bool, str) else None
    if kind in ("log", "uniform") and scalar is not float:
        raise ZooUsageError(f"{where}: {key} is {_type_name(tp)}, not a float; use int(a,b) or choice(...)")
    if kind == "int" and scalar is not int:
        raise ZooUsageError(f"{where}: {key} is {_type_name(tp)}, not an integer; use choice(...)")
    try:
        values = tuple(_value(key, item, float if kind in ("log", "uniform") else tp) for item in items)
    except (ValueError, TypeError, registry.HyperparameterError) as exc:
        raise ZooUsageError(f"{where}: every value must be {_type_name(tp)} ({exc})") from None
    if kind != "choice":
        if len(values) != 2 or not values[0] < values[1]:
            raise ZooUsageError(f"{where}: give two ends, the lower first")
        if kind == "log" and values[0] <= 0:
            raise ZooUsageError(f"{where}: a log range must be above 0")
    elif not values or len(set(values)) != len(values):
        raise ZooUsageError(f"{where}: give one or more different choices")
    return Dimension(key, kind, values)


def _type_name(tp: Any) -> str:
    return registry.Hyperparameter("", tp, None).type_name


def field_types(builder: registry.Builder) -> dict[str, Any]:
    """Every key a space may name, and its type: the searchable recipe fields, then the builder's
    settable hyperparameters (``hp.NAME`` for one named like a training option)."""
    hints = typing.get_type_hints(RunConfig)
    types: dict[str, Any] = {key: _scalar(hints[key]) for key in RECIPE_FIELDS}
    types.update({key_of(h.name): h.type for h in builder.hyperparameters.values() if h.type is not None})
    return types


def _scalar(hint: Any) -> Any:
    return next((tp for tp in (bool, int, float, str) if tp == hint or tp in typing.get_args(hint)), str)


def default_space(builder: registry.Builder) -> dict[str, str]:
    """The builder's own ``search_space`` if it declares one, else: the learning rate log-uniform
    from a tenth to ten times the recipe's, the batch size halved, as is and doubled, every
    optimizer and schedule, label smoothing up to 0.2; integer and tuple hyperparameters halved,
    as they are and doubled; booleans both ways; dropout-like floats (named dropout, drop, rate or
    prob, in [0, 1)) from 0 to 0.5."""
    declared = getattr(builder.fn, "search_space", None)
    if declared is not None:
        if not isinstance(declared, Mapping) or not all(isinstance(v, str) for v in declared.values()):
            raise ZooUsageError(f"model '{builder.name}': search_space must map keys to text such as 'log(1e-4,1e-2)'")
        return dict(declared)
    recipe = {**DEFAULTS, **builder.recipe}
    rate, batch = recipe["learning_rate"], recipe["batch_size"]
    space = {
        "learning_rate": f"log({rate / 10:g},{rate * 10:g})",
        "batch_size": f"choice({','.join(str(b) for b in dict.fromkeys((max(1, batch // 2), batch, batch * 2)))})",
        "optimizer": f"choice({','.join(OPTIMIZERS)})",
        "schedule": f"choice({','.join(SCHEDULES)})",
        "label_smoothing": "uniform(0.0,0.2)",
    }
    for h in builder.hyperparameters.values():
        text = _around(h.name, h.type, h.default)
        if text is not None:
            space[key_of(h.name)] = text
    return space


DROPOUT_LIKE = ("dropout", "drop", "rate", "prob")  # a float named so is a fraction in [0, 1)


def _around(name: str, tp: Any, default: Any) -> str | None:
    """A default dimension for a hyperparameter, or None (not searched by default: a float that is
    not named like a dropout rate, such as an L2 penalty, has no range the zoo could guess)."""
    if tp is bool:
        return "choice(False,True)"
    if tp is int and isinstance(default, int) and default >= 2:
        return f"choice({default // 2},{default},{default * 2})"
    if tp is float and isinstance(default, float) and 0.0 <= default < 1.0 and any(w in name.lower() for w in DROPOUT_LIKE):
        return f"uniform(0.0,{max(0.5, default):g})"
    if typing.get_origin(tp) is tuple and default and all(isinstance(v, int) and not isinstance(v, bool) and v >= 2 for v in default):
        options = [tuple(v // 2 for v in default), tuple(default), tuple(v * 2 for v in default)]
        return "choice(" + ",".join("(" + ",".join(map(str, o)) + ")" for o in options) + ")"
    return None


def resolve(builder: registry.Builder, given: Mapping[str, str]) -> tuple[Dimension, ...]:
    """The space a study searches: the default with ``given`` (``--space``) laid over it, every
    key known and every value of its type. Ranges are checked by :func:`check_ranges`."""
    types = field_types(builder)
    for key in given:
        if key == "epochs":
            raise ZooUsageError("--space epochs=...: epochs is every trial's budget, not searched; set it with --epochs")
        if key not in types:
            known = ", ".join(types)
            raise ZooUsageError(f"--space {key}=...: '{key}' is neither a recipe field nor a hyperparameter of "
                                f"'{builder.name}'; choose from {known}")
    texts = {**default_space(builder), **given}
    unknown = [key for key in texts if key not in types]
    if unknown:
        raise ZooUsageError(f"model '{builder.name}': its search_space names '{unknown[0]}', which it does not take")
    return tuple(parse(key, text, types[key]) for key, text in texts.items())


def check_ranges(space: tuple[Dimension, ...], builder: registry.Builder, model: str,
                 input_shape: tuple[int, ...], num_classes: int) -> None:
    """Refuse a range a trial could not train with, before any trial: recipe fields at their ends
    through RunConfig's checks; each hyperparameter at its ends (or every choice) by building the
    model with it (the builder's own ValueError or TypeError names what it rejects)."""
    for dim in space:
        hparam = hparam_of(dim.key, builder)
        for value in dim.ends():
            try:
                if hparam is None:
                    RunConfig(model=model, **{dim.key: value})
                else:
                    builder.build(input_shape=input_shape, num_classes=num_classes, **{hparam: value})
            except (ZooUsageError, registry.HyperparameterError) as exc:
                raise ZooUsageError(f"--space {dim.key}={dim.text}: {dim.key}={_show(value)} is refused: {exc}") from None


def split(values: Mapping[str, Any], builder: registry.Builder) -> tuple[dict[str, Any], dict[str, Any]]:
    """A trial's sampled values as (RunConfig options, hyperparameters)."""
    options, hparams = {}, {}
    for key, value in values.items():
        hparam = hparam_of(key, builder)
        if hparam is None:
            options[key] = value
        else:
            hparams[hparam] = value
    return options, hparams
