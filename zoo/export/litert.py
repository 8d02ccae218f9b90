"""The LiteRT file of an export (``model.tflite``, extra ``keras-zoo[litert]``): the uint8-in,
probabilities-and-class-out contract, checked in the LiteRT interpreter in a fresh process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ZooError


def write(model, folder: Path, *, any_size: bool, class_names, metadata: dict[str, Any], request, data) -> Path:
    """Write ``folder/model.tflite``; return its path."""
    raise ZooError("--format litert is not built yet")


def check(path: Path, model, images, *, any_size: bool, class_names, request, data) -> dict[str, Any]:
    """Reload ``path`` in its own runtime in a fresh process and compare it with ``model``; a
    ZooError naming the check that failed and by how much, or what zoo.json records of it."""
    raise ZooError("--format litert is not built yet")
