"""Image files as Pillow reads them: which formats count, their headers (size, EXIF orientation,
colour mode, the decompression-bomb limit) and ``decode`` into the uint8 pixels a dataset holds.
Nothing here imports TensorFlow."""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import ZooUsageError, first_line

# The formats the zoo reads, by Pillow's names: what a user would call an image (not documents,
# vector drawings, scientific or game formats). AVIF and JPEG 2000 where Pillow was built with them.
FORMATS = ("PNG", "JPEG", "MPO", "GIF", "BMP", "DIB", "TIFF", "WEBP", "AVIF", "JPEG2000", "PPM", "QOI", "TGA",
           "ICO")


# Images in formats Pillow does not read here: refused by name, not skipped as if they were notes.
OTHER_IMAGE_SUFFIXES = (".heic", ".heif", ".jxl", ".svg", ".psd", ".dng", ".cr2", ".cr3", ".nef", ".arw",
                        ".orf", ".rw2", ".raw", ".avif", ".jp2")


GRAYSCALE_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


_DEEP_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N"}  # 16 bits (I: Pillow's 32-bit ints, read as 16)


@functools.cache
def readable_suffixes() -> frozenset[str]:
    """The extensions of ``FORMATS`` that this Pillow reads (AVIF and JPEG 2000 depend on its build)."""
    from PIL import Image

    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in FORMATS)


@functools.cache
def openers(sniffing: bool = False) -> tuple[str, ...]:
    """``FORMATS`` as Pillow's ``Image.open`` takes them (it opens MPO as JPEG); a file without an
    image extension is not tried as TGA, which has no signature to check."""
    from PIL import Image

    Image.init()
    return tuple(f for f in FORMATS if f in Image.OPEN and not (sniffing and f == "TGA"))


@functools.cache
def image_suffixes() -> frozenset[str]:
    """Extensions that say "image": a file with one is an image, or refused by name."""
    return readable_suffixes() | frozenset(OTHER_IMAGE_SUFFIXES)


# Left by operating systems, file managers and tools; with every name starting with "." (.DS_Store,
# ._photo.jpg, .ipynb_checkpoints), skipped without a word wherever they are.
SYSTEM_NAMES = {"thumbs.db", "ehthumbs.db", "ehthumbs_vista.db", "desktop.ini", "icon\r", "__macosx",
                "@eadir", "$recycle.bin", "system volume information", "lost+found"}


def hidden(name: str) -> bool:
    """A hidden or system file or folder, skipped wherever it is."""
    return name.startswith(".") or name.lower() in SYSTEM_NAMES


def looks_like_image(path: Path) -> bool:
    """A file with an image's extension (its pixels are checked when read), or without one but with
    an image's header: what a folder of images counts as one, for training and for predict."""
    if not path.is_file():
        return False
    return path.suffix.lower() in image_suffixes() or read_header(path, openers(sniffing=True)) is not None


def image_paths(paths: list[str | os.PathLike]) -> list[Path]:
    """The image files ``paths`` name: a file as it is, a folder as the images beneath it, told as
    a training folder's are (:func:`looks_like_image`; hidden and system files left out, linked
    folders followed), sorted. A path that is neither, or a folder without images, is a one-line
    usage error."""
    if not paths:
        raise ZooUsageError("no image given: name image files or folders of them")
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            inside = sorted(f for f in files_beneath(path) if not hidden(f.name) and image_or_refused(f))
            if not inside:
                raise ZooUsageError(f"no image file in the folder {path}")
            found += inside
        elif path.is_file():
            found.append(path)
        elif path.is_symlink() and not path.exists():
            raise ZooUsageError(f"{path} is a broken link")
        elif path.exists():
            raise ZooUsageError(f"{path} is not a regular file")
        else:
            raise ZooUsageError(f"{path} does not exist")
    return found


def image_or_refused(path: Path) -> bool:
    """Whether a file found in a folder is an image; a broken link is a one-line usage error
    (training and predict tell a folder's files alike)."""
    if not path.exists():
        raise ZooUsageError(f"{path} is a broken link")
    return looks_like_image(path)


def files_beneath(folder: Path, hidden_folder: Callable[[Path], None] = lambda path: None) -> Iterator[Path]:
    """Every file beneath ``folder``, sorted folder by folder: a linked folder is followed once (a
    link to a folder walked already, such as an ancestor, is not); a hidden or system folder is
    left out, and ``hidden_folder`` told of it."""
    seen = {folder.resolve()}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        kept = []
        for name in sorted(dirnames):
            path = Path(dirpath) / name
            if hidden(name):
                hidden_folder(path)
            elif path.resolve() not in seen:
                seen.add(path.resolve())
                kept.append(name)
        dirnames[:] = kept
        yield from (Path(dirpath) / name for name in sorted(filenames))


def read_header(path: Path, formats: tuple[str, ...]) -> tuple[tuple[int, int], str] | None:
    """((height, width) as shown, colour mode) from ``path``'s header; None if Pillow does not
    recognise it as one of ``formats``. A decompression bomb is a one-line error, here."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=formats) as image:
                width, height = image.size
                _check_pixels(path, width, height)
                if _orientation(image) in (5, 6, 7, 8):  # shown turned a quarter
                    width, height = height, width
                return (height, width), image.mode
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        width, height = _unchecked_size(path, formats)
        _check_pixels(path, width, height)
        raise  # not reached: Pillow's limit and ours are the same
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        return None


def _orientation(image: Any) -> int:
    """The EXIF orientation, without decoding: Pillow reads a PNG's whole file for EXIF that
    comes after the pixels, so a PNG's counts only when it came before them."""
    if image.format == "PNG" and "exif" not in image.info:
        return 1
    try:
        return int(image.getexif().get(0x0112, 1))
    except Exception:  # a malformed EXIF block: decoding will ignore it too
        return 1


def _check_pixels(path: Path, width: int, height: int) -> None:
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        raise ZooUsageError(
            f"{path} is {width}x{height} pixels ({width * height:,}), more than Pillow's limit of "
            f"{limit:,} (PIL.Image.MAX_IMAGE_PIXELS): a decompression bomb, or an image too large "
            f"to read safely; remove it, or shrink it"
        )


def _unchecked_size(path: Path, formats: tuple[str, ...]) -> tuple[int, int]:
    """The size a header claims, past Pillow's decompression-bomb check (header only: no pixels)."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path, formats=formats) as image:
            return image.size
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def why_unreadable(path: Path) -> str:
    """Pillow's reason, in a few words."""
    from PIL import Image, UnidentifiedImageError

    suffix = path.suffix.lower()
    if suffix and suffix not in readable_suffixes():
        return f"the zoo reads {', '.join(_shown_formats())} images; not {suffix[1:]}"
    if path.stat().st_size == 0:
        return "the file is empty"
    try:
        with Image.open(path, formats=openers()) as image:
            image.load()
    except UnidentifiedImageError:
        return f"Pillow does not recognise it as any of {', '.join(_shown_formats())}"
    except Exception as exc:  # the reason, whatever it is
        return first_line(exc)
    return "unrecognised"


def _shown_formats() -> list[str]:
    return sorted({f.lower() for f in openers()} - {"dib"})


def decode(path: str | os.PathLike, channels: int) -> Any:
    """The uint8 pixels (height, width, ``channels``) of an image file, as a dataset holds them.

    The first frame of an animated image; EXIF orientation applied; 16-bit values scaled to 8
    bits (v / 257, rounded), 32-bit floats clipped to 0..255; palette, CMYK and the rest
    converted by Pillow to L (ITU-R 601-2 luma) or RGB. Alpha is dropped (the colours under it
    are kept), as tf.io.decode_image does. Anything that goes wrong is one line naming the file.
    """
    import numpy as np
    from PIL import Image

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=openers()) as image:
                _check_pixels(path, *image.size)
                image.seek(0)
                turn = _turn(_orientation(image))  # the orientation the header pass read
                image = _converted(image.transpose(turn) if turn is not None else image, channels)
                pixels = np.asarray(image, dtype=np.uint8)
    except ZooUsageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        _check_pixels(path, *_unchecked_size(path, openers()))
        raise
    except Exception as exc:  # a decoder's errors have many types; each means this file is bad
        raise ZooUsageError(f"{path} is not a readable image ({first_line(exc)})") from None
    return pixels[..., None] if channels == 1 else pixels


def _turn(orientation: int) -> Any:
    """The transpose that shows an image as its EXIF orientation says (ImageOps.exif_transpose's)."""
    from PIL import Image

    t = Image.Transpose
    return {2: t.FLIP_LEFT_RIGHT, 3: t.ROTATE_180, 4: t.FLIP_TOP_BOTTOM, 5: t.TRANSPOSE, 6: t.ROTATE_270,
            7: t.TRANSVERSE, 8: t.ROTATE_90}.get(orientation)


def _converted(image: Any, channels: int) -> Any:
    import numpy as np
    from PIL import Image

    if image.mode in _DEEP_MODES:
        values = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.rint(np.asarray(image)), 0, 255).astype(np.uint8), "L")
    elif image.mode in ("P", "PA"):  # the palette's colours (and its transparency, then dropped)
        image = image.convert("RGBA")
    target = "L" if channels == 1 else "RGB"
    if image.mode != target:
        try:
            image = image.convert(target)
        except ValueError:  # no direct conversion (e.g. CMYK to L): through RGB
            image = image.convert("RGB").convert(target)
    return image
