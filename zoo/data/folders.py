"""Your own images: a folder of class folders, read and checked before anything is prepared.

Two layouts, as Keras and TFDS read them::

    PATH/<split>/<class>/*.png|jpg|...    TFDS ImageFolder: splits from the folder names
    PATH/<class>/*.png|jpg|...            Keras image_dataset_from_directory: all of it is "train"

Which files are images: those with the extension of a format the zoo reads (``FORMATS``, through
Pillow, in any case: ``.JPG``, ``.Tif``), and those without one whose header Pillow recognises.
Hidden and system files and folders (``.DS_Store``, ``Thumbs.db``, ``desktop.ini``, ``__MACOSX``,
``@eaDir``) are skipped without a word; other files (a README, notes.pdf, labels.csv) are skipped
and counted (refused with ``strict``). Neither enters the fingerprint, which covers the images'
names, sizes and modification times. Then each image's header is read (its size, EXIF orientation
and colour mode), so a file that claims to be an image and is not, or a decompression bomb, is
refused by name before anything is prepared. Nothing here imports TensorFlow. Every problem is one
line that names the file or folder.

``decode`` turns any of them into the uint8 pixels a dataset holds: the first frame of an animated
image, EXIF orientation applied, 16 bits scaled to 8, CMYK, palette and alpha converted to the
channels asked for (alpha is dropped, as tf.io.decode_image and Keras' image_dataset_from_directory
do, not composited on a background).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FolderNotHereError, ZooUsageError
from .imagefiles import (
    GRAYSCALE_MODES,
    files_beneath,
    hidden,
    image_or_refused,
    openers,
    read_header,
    why_unreadable,
)

HIDDEN, NOT_AN_IMAGE = "hidden or system", "not an image"
EXAMPLES = 5  # skipped files named in a run's record, per reason
# Folder names that mean a split, not a class, when they stand beside class folders.
_SPLIT_NAMES = {"test", "validation", "val", "valid", "eval", "dev"}


def folder_text(path: os.PathLike) -> str:
    """A ``pathlib.Path`` given as a dataset, as an absolute path: always a folder, though
    ``Path("./mnist")`` prints as ``mnist``, a catalog name."""
    return str(Path(os.fspath(path)).expanduser().resolve())


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
    # (file or folder relative to path, reason): what is not an image, and not in the fingerprint.
    skipped: tuple[tuple[str, str], ...] = ()
    # Colour images fewer than the grayscale ones made every image RGB (channels not given): the
    # first of them, and how many there are.
    colour_file: str | None = field(default=None, compare=False)
    colour_images: int = field(default=0, compare=False)

    def counts(self) -> dict[str, dict[str, int]]:
        return {s: {c: len(f) for c, f in classes.items()} for s, classes in self.files.items()}

    def record(self) -> dict[str, Any]:
        """Provenance for config.json and bench records: which images exactly, and what was skipped."""
        return {
            "kind": "folder",
            "path": str(self.path),
            "layout": self.layout,
            "files": self.counts(),
            "fingerprint": self.fingerprint,
            "resized": self.resized,
            "skipped": skipped_record(self.skipped),
            **({"colour_file": self.colour_file, "colour_images": self.colour_images} if self.colour_file else {}),
        }


def skipped_record(skipped: Iterable[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """``{reason: {"count": N, "examples": [the first few]}}``; a skipped folder counts once."""
    record: dict[str, dict[str, Any]] = {}
    for name, reason in sorted(skipped, key=lambda item: (item[1], item[0])):
        entry = record.setdefault(reason, {"count": 0, "examples": []})
        entry["count"] += 1
        if len(entry["examples"]) < EXAMPLES:
            entry["examples"].append(name)
    return record


def skipped_summary(record: dict[str, Any]) -> str:
    """What a run says about the files of its folder it skipped ("" when none)."""
    skipped = record.get("skipped") or {}
    parts = []
    if NOT_AN_IMAGE in skipped:
        entry = skipped[NOT_AN_IMAGE]
        more = ", ..." if entry["count"] > len(entry["examples"]) else ""
        files = _plural(entry["count"], "file that is not an image", "files that are not images")
        parts.append(f"{files} ({', '.join(entry['examples'])}{more})")
    if HIDDEN in skipped:
        parts.append(_plural(skipped[HIDDEN]["count"], "hidden or system file", "hidden or system files"))
    return f"skipped {' and '.join(parts)} in {record['path']}" if parts else ""


def colour_summary(record: dict[str, Any]) -> str:
    """Why a folder of mostly grayscale images trains in RGB ("" when it does not)."""
    if not record.get("colour_file"):
        return ""
    count = record.get("colour_images", 1)
    which = (f"{record['colour_file']} is in colour" if count == 1 else
             f"{count} images are in colour ({record['colour_file']} the first)")
    return (f"3 channels (RGB): {which}, the other images of {record['path']} are grayscale "
            f"(--channels 1 trains on grayscale)")


def _plural(count: int, one: str, many: str) -> str:
    return f"{count:,} {one if count == 1 else many}"


def scan(
    path: str | os.PathLike,
    *,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
    progress: bool | None = None,
    strict: bool = False,
) -> Folder:
    """Check a folder of class folders and decide the shape its images are prepared at."""
    return with_shape(walk(path, strict=strict), image_size, channels, progress)


def walk(path: str | os.PathLike, *, strict: bool = False) -> Folder:
    """The layout, classes and files of a folder and their fingerprint (names, sizes and
    modification times of the images; only files without an image extension are opened, to
    tell an image from the rest). ``strict``: a file that is not an image is refused, not skipped."""
    root = Path(path).expanduser().resolve()
    if not root.exists():
        raise FolderNotHereError(f"dataset folder {root} does not exist")
    if not root.is_dir():
        raise ZooUsageError(f"dataset {root} is not a folder (expected class folders of images)")
    sorter = _Sorter(root, strict)
    children = sorter.folders(root)
    if not children:
        raise ZooUsageError(
            f"dataset folder {root} has no class folders (expected {root}/<class>/*.png or "
            f"{root}/<split>/<class>/*.png)"
        )
    sorter.loose_files(root)
    layout, splits = _splits(root, children, sorter)
    files: dict[str, dict[str, tuple[str, ...]]] = {}
    stamp = []
    for split, folder in sorted(splits.items()):
        classes = sorter.folders(folder)
        if not classes:
            raise ZooUsageError(f"split folder {folder} has no class folders")
        files[split] = {}
        for cls in classes:
            found = sorter.class_files(cls)
            if not found:
                raise ZooUsageError(f"class folder {cls} holds no images{sorter.others_in(cls)}")
            files[split][cls.name] = tuple(str(p.relative_to(root)) for p in found)
            stamp += [(str(p.relative_to(root)), *_stat(p)) for p in found]
    classes = _classes(root, files)
    # Skipped files stay out: a .DS_Store or a README added later prepares nothing again.
    fingerprint = hashlib.sha256(repr((layout, sorted(stamp))).encode()).hexdigest()[:16]
    return Folder(root, layout, classes, files, fingerprint, skipped=tuple(sorted(sorter.skipped.items())))


def _splits(root: Path, children: list[Path], sorter: _Sorter) -> tuple[str, dict[str, Path]]:
    """The layout and the folder of each split. A train/ folder means the split layout (TFDS
    ImageFolder); without one, the children are the classes (Keras), which may hold sub-folders
    of their own."""
    if not any(c.name.lower() == "train" for c in children):
        named_like_splits = [c.name for c in children if c.name.lower() in _SPLIT_NAMES]
        if named_like_splits:
            raise ZooUsageError(
                f"dataset folder {root} has {named_like_splits[0]}/ but no train/: the split "
                f"layout needs train/ (or, without split folders, class folders only)"
            )
        return "classes", {"train": root}
    splits = {(c.name.lower() if c.name.lower() in ("train", "test") else c.name): c for c in children}
    if len(splits) < len(children):
        raise ZooUsageError(f"dataset folder {root} has two train/ or test/ folders (case differs)")
    odd = sorted(name for name in splits if not re.fullmatch(r"[A-Za-z0-9_]+", name))
    if odd:
        raise ZooUsageError(f"split folder {root / odd[0]} needs a name of letters, digits and _ (TFDS's rule)")
    for folder in splits.values():
        sorter.loose_files(folder)
    return "splits", splits


def _classes(root: Path, files: dict[str, dict[str, tuple[str, ...]]]) -> tuple[str, ...]:
    """The classes of the train split: at least two, and every other split's among them."""
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
    return classes


class _Sorter:
    """Tells images from what is skipped (remembered, relative to ``root``) or refused."""

    def __init__(self, root: Path, strict: bool) -> None:
        self.root, self.strict = root, strict
        self.skipped: dict[str, str] = {}

    def folders(self, path: Path) -> list[Path]:
        found = []
        for p in sorted(path.iterdir()):
            if p.is_dir():
                if hidden(p.name):
                    self.skipped[str(p.relative_to(self.root))] = HIDDEN
                else:
                    found.append(p)
        return found

    def loose_files(self, folder: Path) -> None:
        """Files beside the class (or split) folders: an image there belongs to no class."""
        for p in sorted(folder.iterdir()):
            if not p.is_dir() and self.is_image(p):
                raise ZooUsageError(f"{p} lies outside any class folder of {folder}")

    def class_files(self, folder: Path) -> list[Path]:
        """The images of a class folder, sub-folders included."""
        def skip(path: Path) -> None:
            self.skipped[str(path.relative_to(self.root))] = HIDDEN

        return [p for p in files_beneath(folder, skip) if self.is_image(p)]

    def others_in(self, folder: Path) -> str:
        """" (N files that are not images)" for the files of ``folder`` skipped as not images."""
        others = sum(1 for name, reason in self.skipped.items()
                     if reason == NOT_AN_IMAGE and (self.root / name).is_relative_to(folder))
        return f" ({_plural(others, 'file that is not an image', 'files that are not images')})" if others else ""

    def is_image(self, p: Path) -> bool:
        """Whether ``p`` is an image; if not, it is remembered as skipped (or refused)."""
        if hidden(p.name):
            self.skipped[str(p.relative_to(self.root))] = HIDDEN
            return False
        if image_or_refused(p):
            return True
        if self.strict:
            raise ZooUsageError(
                f"{p} is not an image (`strict_files` refuses every file that is not; without it, "
                f"such files are skipped and counted)"
            )
        self.skipped[str(p.relative_to(self.root))] = NOT_AN_IMAGE
        return False


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
    size all images share (or a one-line error naming two that differ). Every image's header is
    read: one that is not an image, or a decompression bomb, is refused by name."""
    sizes: dict[tuple[int, int], str] = {}
    greys, colours, colour = 0, 0, None
    paths = [f for classes in folder.files.values() for names in classes.values() for f in names]
    for rel in _progress(paths, f"reading the sizes of {len(paths):,} images in {folder.path}", progress):
        header = read_header(folder.path / rel, openers())
        if header is None:
            path = folder.path / rel
            raise ZooUsageError(f"{path} is not a readable image ({why_unreadable(path)})")
        size, mode = header
        if mode in GRAYSCALE_MODES:
            greys += 1
        else:
            colours += 1
            colour = colour or rel
        sizes.setdefault(size, rel)
    if image_size is None and len(sizes) > 1:
        (a, file_a), (b, file_b) = list(sizes.items())[:2]
        raise ZooUsageError(
            f"the images in {folder.path} differ in size ({file_a} is {a[0]}x{a[1]}, {file_b} "
            f"is {b[0]}x{b[1]}); pass `image_size` HEIGHT,WIDTH (e.g. 64,64) to resize them"
        )
    height, width = image_size or next(iter(sizes))
    shape = (height, width, channels or (3 if colour else 1))
    resized = any(size != (height, width) for size in sizes)
    return dataclasses.replace(
        folder, shape=shape, resized=resized, sizes={f"{h}x{w}": rel for (h, w), rel in sizes.items()},
        **({"colour_file": colour, "colour_images": colours} if 0 < colours < greys and channels is None else {}),
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
