"""Folders of real image files for the image-folder tests: PNG and JPEG, a few classes, sizes
that differ. Each class has a visible sign (a bright horizontal band at a class-specific row), so
a small model learns it in an epoch or two."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("circle", "square", "triangle")


def image(label: int, size: tuple[int, int], rng: np.random.Generator, channels: int = 3) -> np.ndarray:
    height, width = size
    pixels = rng.integers(0, 60, (height, width, channels), dtype=np.uint8)
    band = slice(int(height * (0.2 + 0.3 * label)), int(height * (0.2 + 0.3 * label)) + max(1, height // 6))
    pixels[band, :, :] = 250
    return pixels


def write(folder: Path, counts: dict[str, int], *, sizes=((24, 24),), formats=("png", "jpg"),
          channels: int = 3, seed: int = 0) -> Path:
    """``counts``: split -> images per class; a split of "" is the Keras layout (no split folders)."""
    rng = np.random.default_rng(seed)
    for split, per_class in counts.items():
        for label, name in enumerate(CLASSES):
            target = folder / split / name if split else folder / name
            target.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                size = sizes[i % len(sizes)]
                fmt = formats[i % len(formats)]
                pixels = image(label, size, rng, channels)
                mode = "L" if channels == 1 else "RGB"
                Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode).save(
                    target / f"{name}-{i:04d}.{fmt}", quality=95
                )
    return folder
