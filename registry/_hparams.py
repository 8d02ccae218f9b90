"""Typed hyperparameters: parse ``--hp key=value`` text and JSON values by the builder's annotations."""

from __future__ import annotations

import difflib
import math
import numbers
import types
import typing
from typing import Any

from ._errors import HyperparameterError

SCALARS: tuple[type, ...] = (bool, int, float, str)
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def normalise_type(tp: Any) -> Any | None:
    """Return ``tp`` if hyperparameters of that type can be set from text, else None.

    Settable: bool, int, float, str and homogeneous tuples of those, of any length
    (``tuple[int, ...]``) or of a fixed one (``tuple[int, int]``, which keeps its length), and
    any of these or None (``int | None``, ``Optional[int]``; ``none`` on the command line).
    """
    if tp in SCALARS:
        return tp
    inner = optional_of(tp)
    if inner is not None:
        return tp if normalise_type(inner) is not None else None
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis and args[0] in SCALARS:
            return tp
        if args and all(a is args[0] for a in args) and args[0] in SCALARS:
            return tp
    return None


def optional_of(tp: Any) -> Any | None:
    """``int`` for ``int | None`` (or ``Optional[int]``); None for any other type."""
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return None
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if len(args) == 1 and len(typing.get_args(tp)) == 2 else None


def _tuple_of(tp: Any) -> tuple[type, int | None]:
    """Element type and fixed length (None for ``tuple[x, ...]``) of a settable tuple type."""
    args = typing.get_args(tp)
    return args[0], (None if args[-1] is Ellipsis else len(args))


def infer_type(default: Any) -> Any | None:
    """The type of an unannotated hyperparameter, from its default value."""
    if isinstance(default, SCALARS):
        return type(default)
    if isinstance(default, tuple) and default and all(type(v) is type(default[0]) for v in default):
        return normalise_type(tuple[type(default[0]), ...])
    return None


def type_name(tp: Any) -> str:
    if tp is None:
        return "(not settable)"
    if optional_of(tp) is not None:
        return f"{type_name(optional_of(tp))} | None"
    if typing.get_origin(tp) is tuple:
        elem, length = _tuple_of(tp)
        return f"tuple[{', '.join([elem.__name__] * length) if length else elem.__name__ + ', ...'}]"
    return tp.__name__


def show(value: Any) -> str:
    """A hyperparameter value as it is written in ``key=value`` form (tuples comma-separated)."""
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return str(value)


def _scalar_from_text(key: str, text: str, tp: type) -> Any:
    try:
        if tp is bool:
            low = text.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError
        if tp is int:
            return int(text)
        if tp is not float:
            return text
        value = float(text)
    except ValueError:
        raise HyperparameterError(f"hyperparameter '{key}' expects {tp.__name__}, received {text!r}") from None
    if not math.isfinite(value):  # inf and nan parse, but train nothing
        raise HyperparameterError(f"hyperparameter '{key}' expects a finite float, received {text!r}")
    return value


def from_text(key: str, text: str, tp: Any) -> Any:
    """Parse one ``--hp`` value; tuples are comma-separated (``filters=32,64``), in parentheses
    or not, as Python and ``zoo tune --space`` write them (``(32,64)``, ``32,``). An optional
    one takes ``none`` (any case) for None."""
    inner = optional_of(tp)
    if inner is not None:
        if text.strip().lower() == "none":
            return None
        try:
            return from_text(key, text, inner)
        except HyperparameterError:
            raise HyperparameterError(f"hyperparameter '{key}' expects {type_name(tp)}, received {text!r}") from None
    if typing.get_origin(tp) is tuple:
        elem, length = _tuple_of(tp)
        inner = text.strip()
        if inner.startswith("(") and inner.endswith(")"):
            inner = inner[1:-1]
        parts = [p.strip() for p in inner.split(",")] if inner.strip() else []
        if len(parts) > 1 and not parts[-1]:  # one trailing comma: (8,) is a tuple of one
            parts.pop()
        if not any(parts):
            parts = []
        elif not all(parts):
            raise HyperparameterError(
                f"hyperparameter '{key}' expects {type_name(tp)} (comma-separated), received {text!r}: "
                "an empty value between commas"
            )
        if length is not None and len(parts) != length:
            raise HyperparameterError(
                f"hyperparameter '{key}' expects {length} comma-separated values "
                f"({type_name(tp)}), received {text!r}"
            )
        if not parts:
            raise HyperparameterError(
                f"hyperparameter '{key}' expects {type_name(tp)} (comma-separated), received {text!r}"
            )
        try:
            return tuple(_scalar_from_text(key, p, elem) for p in parts)
        except HyperparameterError:
            raise HyperparameterError(
                f"hyperparameter '{key}' expects {type_name(tp)} (comma-separated), "
                f"received {text!r}"
            ) from None
    return _scalar_from_text(key, text, tp)


def from_json(key: str, value: Any, tp: Any) -> Any:
    """Check and convert a Python value or one read back from config.json (lists become tuples)."""
    inner = optional_of(tp)
    if inner is not None:
        if value is None:
            return None
        try:
            return from_json(key, value, inner)
        except HyperparameterError:
            raise HyperparameterError(f"hyperparameter '{key}' expects {type_name(tp)}, received {value!r}") from None
    if typing.get_origin(tp) is tuple and isinstance(value, (list, tuple)):
        elem, length = _tuple_of(tp)
        if length is not None and len(value) != length:
            raise HyperparameterError(
                f"hyperparameter '{key}' expects {length} values ({type_name(tp)}), received {value!r}"
            )
        return tuple(from_json(key, v, elem) for v in value)
    ok = (  # NumPy's numbers too (a value from an array), stored as Python's
        (tp is bool and isinstance(value, bool))
        or (tp is int and isinstance(value, numbers.Integral) and not isinstance(value, bool))
        or (tp is float and isinstance(value, numbers.Real) and not isinstance(value, bool))
        or (tp is str and isinstance(value, str))
    )
    if not ok:
        raise HyperparameterError(
            f"hyperparameter '{key}' expects {type_name(tp)}, received {value!r}"
        )
    return float(value) if tp is float else int(value) if tp is int else value


def unknown_key(key: str, accepted: list[str], model: str) -> HyperparameterError:
    close = difflib.get_close_matches(key, accepted, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    keys = ", ".join(accepted) if accepted else "none"
    return HyperparameterError(
        f"model '{model}' has no hyperparameter '{key}'.{hint} Accepted: {keys}"
    )
