"""What can be known about a plugin from its source text alone, without importing it.

``zoo list`` must stay fast and must not run plugin code, yet should flag a plugin that cannot
work. Reading the module with ``ast`` finds most real breakage: a missing module or dependency, a
syntax error, a missing attribute, a non-callable object, a builder without keyword-only
``input_shape`` / ``num_classes``. What only running can show (an exception at import time, a
builder that returns the wrong thing) is caught when the plugin is loaded (``zoo info``,
``zoo check``, ``zoo list --check``).
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ._builder import REQUIRED, a_kind


@dataclass(frozen=True)
class StaticInfo:
    summary: str = ""
    problem: str = ""  # empty: nothing wrong that the source shows


def inspect_entry(value: str) -> StaticInfo:
    """Summary and problem of the object an entry point value (``module:attr``) names."""
    module, _, attr = value.partition(":")
    module, attr = module.strip(), attr.strip()
    try:
        path = module_file(module)
    except ModuleNotFoundError as exc:
        return StaticInfo(problem=f"module '{exc.name}' is not installed")
    if path is None:
        return StaticInfo()  # not a .py file (extension module, zip): nothing to read
    try:
        stat = path.stat()
        return _inspect(str(path), stat.st_mtime_ns, attr)
    except OSError as exc:
        return StaticInfo(problem=f"cannot read {path}: {exc.strerror}")


def module_file(module: str) -> Path | None:
    """The source file of ``a.b.c``, found from the top-level package's spec, executing nothing.

    ``importlib.util.find_spec('a.b.c')`` would import ``a`` and ``a.b``; the top-level spec alone
    runs no plugin code. Raises ModuleNotFoundError (with ``.name``) when a part is missing.
    """
    top, *rest = module.split(".")
    spec = _find_top(top)
    if spec is None:
        raise ModuleNotFoundError(module, name=top)
    if not rest:
        return Path(spec.origin) if spec.origin and spec.origin.endswith(".py") else None
    for location in spec.submodule_search_locations or []:
        base = Path(location).joinpath(*rest)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
        if any(base.parent.glob(base.name + ".*")):
            return None  # compiled extension: exists, cannot be read
    raise ModuleNotFoundError(module, name=module)


def _find_top(name: str):
    if name in sys.modules and getattr(sys.modules[name], "__spec__", None) is not None:
        return sys.modules[name].__spec__
    try:  # find_spec raises ValueError for a loaded module whose __spec__ is None (__main__)
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


@functools.lru_cache(maxsize=256)
def _inspect(path: str, mtime_ns: int, attr: str) -> StaticInfo:
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=path)
    except SyntaxError as exc:
        return StaticInfo(problem=f"syntax error in {os.path.basename(path)} line {exc.lineno}: {exc.msg}")
    except (UnicodeDecodeError, ValueError) as exc:
        return StaticInfo(problem=f"cannot parse {os.path.basename(path)}: {exc}")
    missing = _missing_imports(tree)
    target = attr.split(".")[0]
    node = _top_level_binding(tree, target)
    summary = ""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        doc = ast.get_docstring(node) or ""
        summary = doc.strip().splitlines()[0] if doc.strip() else ""
    if missing:
        return StaticInfo(summary, f"imports '{missing}', which is not installed")
    if node is None and not _has_star_import_or_getattr(tree):
        return StaticInfo(summary, f"'{target}' is not defined in {os.path.basename(path)}")
    if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
        return StaticInfo(summary, f"'{target}' is {a_kind(node.value.value)}, not a callable builder")
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and "." not in attr:
        args = node.args
        kwonly = {a.arg for a in args.kwonlyargs}
        if not set(REQUIRED) <= kwonly:
            return StaticInfo(
                summary, f"'{target}' must take keyword-only arguments input_shape and num_classes"
            )
        positional = args.posonlyargs + args.args  # the last len(defaults) of them have one
        bare = [a.arg for a in positional[:len(positional) - len(args.defaults)]]
        bare += [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is None and a.arg not in REQUIRED]
        if bare:
            return StaticInfo(summary, f"'{target}': hyperparameter '{bare[0]}' has no default; every argument "
                                       f"besides input_shape and num_classes needs one")
    return StaticInfo(summary)


def _top_level_binding(tree: ast.Module, name: str) -> ast.AST | None:
    """The last top-level statement that binds ``name`` (def, class, assignment or import)."""
    found = None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            found = node
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            found = node
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and isinstance(node.target, ast.Name):
            if node.target.id == name:
                found = node
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            if any((a.asname or a.name.split(".")[0]) == name for a in node.names):
                found = node
        elif isinstance(node, (ast.If, ast.Try)):
            # Conditional definitions: trust them rather than guess which branch runs.
            for sub in ast.walk(node):
                if getattr(sub, "name", None) == name or (
                    isinstance(sub, ast.Name) and sub.id == name and isinstance(sub.ctx, ast.Store)
                ):
                    found = found or sub
    return found


def _has_star_import_or_getattr(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
            return True
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            return True
    return False


def _missing_imports(tree: ast.Module) -> str:
    """The first unconditional top-level absolute import whose top package is not installed."""
    for node in tree.body:  # only unconditional statements: `try: import x` is a deliberate fallback
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            if top not in sys.builtin_module_names and _find_top(top) is None:
                return name
    return ""
