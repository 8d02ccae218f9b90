"""Your own images: a folder of class folders, read and checked before anything is prepared.

Two layouts, as Keras and TFDS read them::

    PATH/<split>/<class>/*.png|jpg    TFDS ImageFolder: splits from the folder names
    PATH/<class>/*.png|jpg            Keras image_dataset_from_directory: all of it is "train"

Scanning reads names, sizes and modification times only (the fingerprint), then each image's
header (its size and colour mode); it decodes nothing and imports no TensorFlow. Every problem is
one line that names the file or folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ZooUsageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Folder names that mean a split, not a class, when they stand beside class folders.
_SPLIT_NAMES = {"test", "validation", "val", "valid", "eval", "dev"}
GRAYSCALE_MODES = {"1", "L", "LA", "I", "I;16", "F"}


def written_as_path(name: str) -> bool:
    """``./pets``, ``../pets``, ``/data/pets``, ``~/pets``: a folder, whatever else has that name.

    A bare name (``pets``) is a folder only when no dataset has that name (see
    ``zoo.data.is_folder``): a ``./mnist`` folder must not replace the catalog's MNIST.
    """
    return name in (".", "..") or name.startswith(("/", "./", "../", "~"))


@dataclass(frozen=True)
class Folder:
    path: Path
    layout: str  # "splits" or "classes"
    classes: tuple[str, ...]
    files: dict[str, dict[str, tuple[str, ...]]]  # split -> class -> files relative to path
    fingerprint: str
    shape: tuple[int, int, int] = (0, 0, 0)  # (height, width, channels) the images become
    resized: bool = False  # whether some images are resized to ``shape``
    sizes: dict[str, Any] = field(default_factory=dict, compare=False)

    def counts(self) -> dict[str, dict[str, int]]:
        return {s: {c: len(f) for c, f in classes.items()} for s, classes in self.files.items()}

    def record(self) -> dict[str, Any]:
        """Provenance for config.json and bench records: which images exactly."""
        return {
            "kind": "folder",
            "path": str(self.path),
            "layout": self.layout,
            "files": self.counts(),
            "fingerprint": self.fingerprint,
            "resized": self.resized,
        }


def scan(
    path: str | os.PathLike,
    *,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
    progress: bool | None = None,
) -> Folder:
    """Check a folder of class folders and decide the shape its images are prepared at."""
    return with_shape(walk(path), image_size, channels, progress)


def walk(path: str | os.PathLike) -> Folder:
    """The layout, classes and files of a folder and their fingerprint (names, sizes and
    modification times: nothing is opened)."""
    root = Path(path).expanduser().resolve()
    if not root.exists():
        raise ZooUsageError(f"dataset folder {root} does not exist")
    if not root.is_dir():
        raise ZooUsageError(f"dataset {root} is not a folder (expected class folders of images)")
    children = _folders(root)
    if not children:
        raise ZooUsageError(
            f"dataset folder {root} has no class folders (expected {root}/<class>/*.png or "
            f"{root}/<split>/<class>/*.png)"
        )
    loose = _images(root)
    if loose:
        raise ZooUsageError(f"{loose[0]} lies outside any class folder of {root}")
    # A train/ folder means the split layout (TFDS ImageFolder); without one, the children are
    # the classes (Keras), which may hold sub-folders of their own.
    if any(c.name.lower() == "train" for c in children):
        layout = "splits"
        splits = {(c.name.lower() if c.name.lower() in ("train", "test") else c.name): c for c in children}
        if len(splits) < len(children):
            raise ZooUsageError(f"dataset folder {root} has two train/ or test/ folders (case differs)")
        odd = sorted(name for name in splits if not re.fullmatch(r"[A-Za-z0-9_]+", name))
        if odd:
            raise ZooUsageError(
                f"split folder {root / odd[0]} needs a name of letters, digits and _ (TFDS's rule)"
            )
        for folder in splits.values():
            loose = _images(folder)
            if loose:
                raise ZooUsageError(f"{loose[0]} lies outside any class folder of {folder}")
    else:
        named_like_splits = [c.name for c in children if c.name.lower() in _SPLIT_NAMES]
        if named_like_splits:
            raise ZooUsageError(
                f"dataset folder {root} has {named_like_splits[0]}/ but no train/: the split "
                f"layout needs train/ (or, without split folders, class folders only)"
            )
        layout, splits = "classes", {"train": root}
    files: dict[str, dict[str, tuple[str, ...]]] = {}
    stamp = []
    for split, folder in sorted(splits.items()):
        classes = _folders(folder)
        if not classes:
            raise ZooUsageError(f"split folder {folder} has no class folders")
        files[split] = {}
        for cls in classes:
            found = _class_files(cls)
            if not found:
                raise ZooUsageError(f"class folder {cls} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            files[split][cls.name] = tuple(str(p.relative_to(root)) for p in found)
            stamp += [(str(p.relative_to(root)), *_stat(p)) for p in found]
    classes = tuple(sorted(files["train"]))
    if len(classes) < 2:
        raise ZooUsageError(
            f"dataset folder {root} has one class ({classes[0]}/); a classifier needs at least two"
        )
    for split, found in files.items():
        extra = sorted(set(found) - set(classes))
        if extra:
            raise ZooUsageError(
                f"class '{extra[0]}' appears in the {split} split of {root} but not in train: "
                f"a model cannot learn a class it never sees"
            )
    fingerprint = hashlib.sha256(repr((layout, sorted(stamp))).encode()).hexdigest()[:16]
    return Folder(root, layout, classes, files, fingerprint)


def _folders(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _class_files(folder: Path) -> list[Path]:
    """The images of a class folder, sub-folders included; anything else there is an error."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):  # .DS_Store and the like
                continue
            p = Path(dirpath) / name
            if not p.exists():
                raise ZooUsageError(f"{p} is a broken link")
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                raise ZooUsageError(f"{p} is not an image (expected {', '.join(IMAGE_SUFFIXES)})")
            found.append(p)
    return found


def _stat(p: Path) -> tuple[int, int]:
    st = p.stat()
    return st.st_size, st.st_mtime_ns


def with_shape(
    folder: Folder,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
    progress: bool | None = None,
) -> Folder:
    """The size and channels every image is prepared at: ``image_size`` if given, else the one
    size all images share (or a one-line error naming two that differ)."""
    from PIL import Image, UnidentifiedImageError

    sizes: dict[tuple[int, int], str] = {}
    grey = True
    paths = [f for classes in folder.files.values() for names in classes.values() for f in names]
    for rel in _progress(paths, f"reading the sizes of {len(paths):,} images in {folder.path}", progress):
        try:
            with Image.open(folder.path / rel) as image:
                width, height = image.size
                grey = grey and image.mode in GRAYSCALE_MODES
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise ZooUsageError(f"{folder.path / rel} is not a readable image ({exc})") from None
        sizes.setdefault((height, width), rel)
    if image_size is None and len(sizes) > 1:
        (a, file_a), (b, file_b) = list(sizes.items())[:2]
        raise ZooUsageError(
            f"the images in {folder.path} differ in size ({file_a} is {a[0]}x{a[1]}, {file_b} "
            f"is {b[0]}x{b[1]}); pass `image_size` HEIGHT,WIDTH (e.g. 64,64) to resize them"
        )
    height, width = image_size or next(iter(sizes))
    shape = (height, width, channels or (1 if grey else 3))
    resized = any(size != (height, width) for size in sizes)
    return Folder(
        folder.path, folder.layout, folder.classes, folder.files, folder.fingerprint, shape,
        resized, {f"{h}x{w}": rel for (h, w), rel in sizes.items()},
    )


def _progress(items: list[str], what: str, show: bool | None) -> Iterable[str]:
    """A progress bar on a terminal; one line in a log, for a folder worth mentioning."""
    show = sys.stderr.isatty() if show is None else show
    if show:
        from tqdm import tqdm

        return tqdm(items, desc=what, unit=" images", file=sys.stderr, leave=False)
    if len(items) >= 10_000:
        print(f"zoo: {what}", file=sys.stderr, flush=True)
    return items


def parse_image_size(value: Any) -> tuple[int, int] | None:
    """``"64,64"``, ``"64x48"``, ``64`` or ``(64, 48)`` -> (height, width); None if unreadable."""
    if isinstance(value, str):
        parts = value.replace("x", ",").split(",")
        if len(parts) == 1:
            parts = parts * 2
        try:
            value = tuple(int(p) for p in parts)
        except ValueError:
            return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 16384 for v in value)
    ):
        return (int(value[0]), int(value[1]))
    return None
