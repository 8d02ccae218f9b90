"""The Python API's arguments checked against their annotations where a call enters the zoo: an
argument of the wrong kind is a one-line :class:`ZooUsageError` naming the function, the argument
and what it takes, as a bad command-line option is, not a TypeError from deep inside.

Only kinds are checked here (a number where a path goes, a string where a list goes); values
(ranges, names, files) are checked by the code that knows them, with messages of its own. NumPy's
numbers, booleans and arrays arrive as Python's (:func:`plain`), so every check after this one
sees plain values. A
function lists in ``own`` the arguments whose kind it already checks with a message of its own.
"""

from __future__ import annotations

import functools
import inspect
import numbers
import os
import types
import typing
from collections import abc
from pathlib import Path

from .errors import ZooUsageError

# What the annotations name, for the ones written under TYPE_CHECKING only.
_NAMES = {"os": os, "Path": Path, "Any": typing.Any, "Callable": abc.Callable, "Iterable": abc.Iterable,
          "Mapping": abc.Mapping, "Sequence": abc.Sequence}


def checked(fn=None, *, own: tuple[str, ...] = ()):
    """Decorate a public function (or method) so its arguments' kinds are checked first."""
    if fn is None:
        return functools.partial(checked, own=own)
    signature = inspect.signature(fn)
    hints: dict[str, typing.Any] = {}

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if not hints:
            hints.update(typing.get_type_hints(fn, globalns={**_NAMES, **fn.__globals__}))
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:  # a missing or unknown argument: Python's own message says it best
            return fn(*args, **kwargs)
        for name, value in list(bound.arguments.items()):
            value = bound.arguments[name] = plain(value)
            kind = hints.get(name)
            variadic = signature.parameters[name].kind in (inspect.Parameter.VAR_POSITIONAL,
                                                           inspect.Parameter.VAR_KEYWORD)
            if kind is None or variadic or name in own or name == "self":
                continue
            if fits(value, kind):
                bound.arguments[name] = _flag(value, kind)
                continue
            where = fn.__qualname__.replace("<locals>.", "")
            shown = repr(value)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise ZooUsageError(f"zoo.{where}(): `{name}` takes {describe(kind)}, received {type(value).__name__} {shown}")
        return fn(*bound.args, **bound.kwargs)

    return call


def plain(value: typing.Any) -> typing.Any:
    """NumPy's numbers, booleans and arrays as Python's (``np.int64(3)``: 3, an array: a list),
    the values of ``**options`` too; anything else as it is."""
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict) and any(type(v).__module__ == "numpy" for v in value.values()):
        return {k: plain(v) for k, v in value.items()}
    return value


def _flag(value: typing.Any, kind: typing.Any) -> typing.Any:
    """0 or 1 for a flag (a ``bool`` that takes no integer) as False or True."""
    kinds = typing.get_args(kind) if typing.get_origin(kind) in (typing.Union, types.UnionType) else (kind,)
    if bool in kinds and int not in kinds and type(value) is int:
        return bool(value)
    return value


def fits(value: typing.Any, kind: typing.Any) -> bool:
    """Whether ``value`` is of the annotated ``kind`` (elements of lists and tuples included)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is typing.Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, k) for k in args)
    if kind is type(None):
        return value is None
    if kind is bool:  # 0 and 1 too, as Python's own flags take them
        return isinstance(value, bool) or (isinstance(value, numbers.Integral) and value in (0, 1))
    if kind is int:  # numpy's integers too; True is not a number here
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if origin is typing.Literal:
        return value in args
    if origin is None:
        return isinstance(value, kind)
    if origin is abc.Callable:
        return callable(value)
    if origin in (abc.Mapping, dict):
        return isinstance(value, abc.Mapping)
    if origin is tuple and args and args[-1] is not Ellipsis:  # tuple[int, int]: that many
        return isinstance(value, (tuple, list)) and len(value) == len(args) and all(map(fits, value, args))
    if origin in (tuple, list, abc.Iterable, abc.Sequence):  # any iterable but a string
        if isinstance(value, (str, bytes)) or not isinstance(value, abc.Iterable):
            return False
        element = args[0] if args else typing.Any
        return not isinstance(value, (list, tuple)) or all(fits(v, element) for v in value)
    return isinstance(value, origin)


_NOUNS = {str: ("a string", "strings"), int: ("an integer", "integers"), float: ("a number", "numbers"),
          bool: ("True or False", "True or False values"), os.PathLike: ("a path", "paths"), Path: ("a path", "paths")}


def describe(kind: typing.Any) -> str:
    """``kind`` as a reader would say it: 'a string or a path', 'a list of integers', ..."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(dict.fromkeys(describe(k) for k in args))
    if kind is type(None):
        return "None"
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, args))
    if kind in _NOUNS:
        return _NOUNS[kind][0]
    if origin is abc.Callable:
        return "a function"
    if origin in (abc.Mapping, dict):
        return "a mapping (dict)"
    if origin is tuple and args and args[-1] is not Ellipsis:
        same = len(set(args)) == 1 and args[0] in _NOUNS
        return f"{len(args)} {_NOUNS[args[0]][1]}" if same else f"{len(args)} values ({', '.join(map(describe, args))})"
    if origin in (tuple, list, abc.Iterable, abc.Sequence):
        element = args[0] if args else typing.Any
        return f"a list of {_NOUNS[element][1]}" if element in _NOUNS else f"a list ({describe(element)} each)"
    return getattr(kind, "__name__", str(kind))
