"""An export: ``EXPORT_BASE/<version>/``, a TF-Serving version (:mod:`.saved_model`), written
aside, verified, then renamed in, so a crash never leaves a half version visible."""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from .. import files, formats
from ..errors import ZooUsageError
from ..models import contract
from . import litert, onnx, saved_model
from . import base as base_lib
from .request import ExportRequest

# The formats beside the SavedModel, each a module with ``write`` and ``check`` (see onnx.py).
OTHER_FORMATS = {"onnx": onnx, "litert": litert}

TMP_PREFIX = ".tmp-"
TOLERANCE = saved_model.TOLERANCE  # by precision; callers pass TOLERANCE[config.precision]


@dataclass(frozen=True)
class RunData:
    """Where a format finds a run's images (int8 calibration, a quantized model's test accuracy):
    its RunConfig (dataset and where it lives), its dataset record, its float test accuracy."""

    config: Any
    info: dict[str, Any]
    test_accuracy: float | None


@dataclass(frozen=True)
class ExportResult:
    path: Path
    version: int
    max_abs_diff: float
    examples_compared: int
    tolerance: float
    accepts: str = ""  # what the signature takes, in words (see :func:`accepted_input`)
    formats: dict[str, dict[str, Any]] | None = None  # each other format's file and its check
    any_size: bool = False  # the SavedModel takes images of any size (each other format says if it does)
    random_because: str = ""  # why the images compared were random, not the run's test images


def export_model(
    model: keras.Model,
    export_base: str | os.PathLike,
    *,
    check_images: np.ndarray,
    metadata: dict[str, Any] | None = None,
    tolerance: float = TOLERANCE["float32"],
    any_size: bool = False,
    class_names: Sequence[str] | None = None,
    request: ExportRequest | None = None,
    data: RunData | None = None,
) -> ExportResult:
    """Write, reload and compare a SavedModel and the other formats ``request`` asks for, then
    publish them together as the next integer version (none of them if one fails its check).

    ``any_size``: the signature takes images of any height, width and channel count and converts
    and resizes them to the model's input inside the graph, as a folder's images were for
    training. ``class_names``: what ``class_name`` returns for each class id (default the ids).
    ``data``: the run's images where a format needs them (int8 calibration, a quantized model's
    test accuracy), given by the caller.
    """
    request = request or ExportRequest()
    model = contract.with_input_shape(model, check_images.shape[1:])  # served at the size it trained on
    base = _export_base(export_base)
    if metadata and "class_names" in metadata:
        check_same_contract(base, metadata["class_names"], metadata["input_shape"])
    _remove_stale_temporaries(base)
    tmp = base / f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        names = [str(n) for n in class_names] if class_names is not None else None
        saved_model.write(model, tmp, any_size, names)
        diff = saved_model.verify(tmp, model, check_images, tolerance, names)
        checked = {}
        for name in request.formats[1:]:
            module = OTHER_FORMATS[name]
            path = module.write(model, tmp, any_size=any_size, class_names=names, metadata=metadata or {},
                                request=request, data=data)
            checked[name] = module.check(path, model, check_images, any_size=any_size, class_names=names,
                                         request=request, data=data)
        if metadata is not None:
            # assets.extra/ is where TF Serving expects files it should ignore.
            (tmp / "assets.extra").mkdir()
            record = {**metadata, "verified_tolerance": tolerance, "formats": ["saved_model", *checked]}
            record.update({name: result for name, result in checked.items()})
            (tmp / "assets.extra" / "zoo.json").write_text(json.dumps(formats.stamp(formats.EXPORT, record), indent=2) + "\n")
        version = _publish(tmp, base)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    accepts = accepted_input(contract.input_shape(model), any_size)
    return ExportResult(base / str(version), version, diff, len(check_images), tolerance, accepts, checked, any_size)


def accepted_input(shape: Sequence[int], any_size: bool) -> str:
    """What ``serving_default`` takes, in words, e.g. ``uint8 images [N, 28, 28, 1]``."""
    height, width, channels = shape
    if any_size:
        colour = "grayscale" if channels == 1 else "RGB"
        return (f"uint8 images [N, H, W, C] of any size and 1 to 4 channels (made {colour} and resized "
                f"to {height}x{width} in the graph)")
    return f"uint8 images [N, {height}, {width}, {channels}]"


def _export_base(export_base: str | os.PathLike) -> Path:
    base = Path(export_base).expanduser().resolve()
    if base.exists() and not base.is_dir():
        raise ZooUsageError(f"export base {base} exists and is not a directory")
    base_lib.check(base)
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ZooUsageError(f"cannot create export base {base}: {exc.strerror}") from None
    return base


def check_same_contract(base: Path, class_names: Sequence[Any], input_shape: Sequence[int]) -> None:
    """A one-line usage error if the newest version under ``base`` answers requests another way:
    other classes or another input. TF Serving serves the newest version under one
    name, so a client of the old one would get the new one's answers to questions it never asked.
    A new model of the same task (same classes and input) is a new version as usual."""
    version = latest_version(base)
    newest = base / str(version)
    if not version or not ((newest / formats.EXPORT).exists() or (newest / base_lib.SAVED_MODEL).is_file()):
        return  # nothing published there (an empty folder): nothing to compare with
    try:
        old = formats.load(formats.EXPORT, newest / formats.EXPORT)
    except (OSError, ValueError):
        old = None
    if not isinstance(old, dict):  # published, but what it answers cannot be read
        raise ZooUsageError(
            f"export base {base}: its newest version ({version}) has no readable {formats.EXPORT}, so whether "
            f"this model answers the same requests cannot be checked: "
            f"export to a base of its own, or move version {version} away"
        )
    mine = ([str(n) for n in class_names], list(input_shape))
    theirs = ([str(n) for n in old.get("class_names") or []], list(old.get("input_shape") or []))
    if mine != theirs:
        def show(names, shape):
            listed = ", ".join(map(str, names[:5])) + (", …" if len(names) > 5 else "")
            return f"{len(names)} classes ({listed}) of {'x'.join(map(str, shape))} images"

        raise ZooUsageError(
            f"export base {base} serves {show(*theirs)} (version {version}, {old.get('dataset')}); this model answers "
            f"{show(*mine)}: export it to a base of its own"
        )


def latest_version(base: Path) -> int:
    """The highest published version under ``base`` (0 when there is none)."""
    return max((int(p.name) for p in base.iterdir() if p.name.isdigit()), default=0) if base.is_dir() else 0


def next_version(base: Path) -> int:
    return 1 + latest_version(base)


def _publish(tmp: Path, base: Path) -> int:
    """Rename ``tmp`` to the next free version; a concurrent export simply takes the next one.
    Its files are on disk first: the rename is never durable before the bytes it publishes."""
    files.sync_tree(tmp)
    while True:
        version = next_version(base)
        try:
            os.rename(tmp, base / str(version))  # atomic; fails if the target has content
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            continue
        files.sync_folder(base)  # published already: an error here must not say otherwise
        return version


def _remove_stale_temporaries(base: Path) -> None:
    """Remove what a killed export left behind (its process is gone); never a live one's."""
    for path in base.glob(f"{TMP_PREFIX}*"):
        pid = path.name[len(TMP_PREFIX) :].split("-")[0]
        if pid.isdigit() and not files.process_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
