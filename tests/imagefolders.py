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


# -- every format and oddity of #24: what people's folders hold ----------------------------------

# How ``save`` writes a grey image, one kind per format or oddity; each decodes back to the same
# grey pixels (exactly, but for the lossy JPEG and its CMYK and EXIF variants).
KINDS = ("png", "JPG", "jpeg", "bmp", "gif", "webp", "tif", "tiff16", "palette", "rgba", "la",
         "cmyk", "exif", "pgm", "noext")
LOSSY = {"JPG", "jpeg", "cmyk", "exif"}
SUFFIX = {"tiff16": ".tif", "palette": ".png", "rgba": ".png", "la": ".png", "cmyk": ".jpg",
          "exif": ".jpeg", "noext": "", "JPG": ".JPG", "jpeg": ".JPEG", "tif": ".TIF"}
ORIENTATION = 0x0112


def save(pixels: np.ndarray, stem: Path, kind: str) -> Path:
    """Write the 2-D uint8 ``pixels`` as ``kind`` at ``stem`` plus the kind's suffix."""
    path = stem.with_name(stem.name + SUFFIX.get(kind, f".{kind}"))
    grey = Image.fromarray(pixels, "L")
    rgb = grey.convert("RGB")
    if kind in ("png", "noext"):
        grey.save(path, format="PNG")
    elif kind in ("JPG", "jpeg"):
        rgb.save(path, format="JPEG", quality=95)
    elif kind in ("bmp", "tif"):
        rgb.save(path, format="BMP" if kind == "bmp" else "TIFF")
    elif kind == "gif":  # animated: the first frame is the image, the second its negative
        frames = [grey.convert("P"), Image.fromarray(255 - pixels, "L").convert("P")]
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    elif kind == "webp":
        rgb.save(path, lossless=True)
    elif kind == "tiff16":  # 16 bits: 8-bit value v is 257 * v
        Image.fromarray(pixels.astype(np.uint16) * 257).save(path, format="TIFF")
    elif kind == "palette":
        grey.convert("P").save(path)
    elif kind == "rgba":  # alpha that varies; the colours under it are the image
        alpha = np.arange(pixels.size, dtype=np.uint8).reshape(pixels.shape)
        Image.fromarray(np.dstack([pixels] * 3 + [alpha]), "RGBA").save(path)
    elif kind == "la":
        Image.merge("LA", [grey, Image.new("L", grey.size, 128)]).save(path)
    elif kind == "cmyk":  # black ink only: K = 255 - v
        black = Image.fromarray(255 - pixels, "L")
        empty = Image.new("L", grey.size, 0)
        Image.merge("CMYK", [empty, empty, empty, black]).save(path, format="JPEG", quality=95)
    elif kind == "exif":  # stored turned a quarter anticlockwise, with "rotate 90 cw to show"
        exif = Image.Exif()
        exif[ORIENTATION] = 6
        Image.fromarray(np.ascontiguousarray(np.rot90(pixels))).convert("RGB").save(
            path, format="JPEG", quality=95, exif=exif
        )
    elif kind == "pgm":
        grey.save(path, format="PPM")
    else:
        raise ValueError(kind)
    return path


# What operating systems and tools leave in folders: skipped without a word.
LITTER = (".DS_Store", "Thumbs.db", "desktop.ini", "._photo.png", ".hidden.png", "Icon\r")
# Files that are not images: skipped and counted (refused with --strict-files).
NOT_IMAGES = {"README.txt": b"These are my digits.\n", "notes.pdf": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n",
              "labels.csv": b"file,label\n0.png,0\n"}


def litter(folder: Path, *, not_images: bool = True) -> dict[str, int]:
    """Drop system litter (and files that are not images) into ``folder`` and its class folders;
    returns how many of each the zoo should skip."""
    counts = {"hidden or system": 0, "not an image": 0}
    places = [folder, *(p for p in folder.rglob("*") if p.is_dir())]
    for place in places:
        for name in LITTER:
            (place / name).write_bytes(b"\x00\x05\x16\x07" + name.encode())
            counts["hidden or system"] += 1
    macosx = folder / "__MACOSX"  # a zip made on a Mac: a folder of ._ files beside the classes
    (macosx / places[-1].name).mkdir(parents=True)
    (macosx / places[-1].name / "._0.png").write_bytes(b"\x00\x05\x16\x07")
    thumbs = places[-1] / "@eaDir"  # a Synology NAS's thumbnails inside a class folder
    thumbs.mkdir()
    Image.new("RGB", (4, 4)).save(thumbs / "SYNOPHOTO_THUMB_S.jpg")
    counts["hidden or system"] += 2  # each folder counts once
    if not_images:
        for place in places[:2]:
            for name, content in NOT_IMAGES.items():
                (place / name).write_bytes(content)
                counts["not an image"] += 1
    return counts


def mnist(files: Path, count: int, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` images and labels of the official MNIST files (idx format, gzip)."""
    import gzip

    prefix = "train" if split == "train" else "t10k"
    with gzip.open(files / f"{prefix}-images-idx3-ubyte.gz") as f:
        f.read(16)
        images = np.frombuffer(f.read(count * 28 * 28), np.uint8).reshape(count, 28, 28)
    with gzip.open(files / f"{prefix}-labels-idx1-ubyte.gz") as f:
        f.read(8)
        labels = np.frombuffer(f.read(count), np.uint8)
    return images, labels


def mnist_folder(folder: Path, files: Path, counts: dict[str, int]) -> dict[Path, np.ndarray]:
    """MNIST digits as class folders 0..9 (``counts``: split -> images, "" for no split folders),
    each image in the next of ``KINDS``; returns each written file's original pixels."""
    written = {}
    for split, count in counts.items():
        images, labels = mnist(files, count, "test" if split == "test" else "train")
        for i, (pixels, label) in enumerate(zip(images, labels)):
            target = folder / split / str(label) if split else folder / str(label)
            target.mkdir(parents=True, exist_ok=True)
            written[save(pixels, target / f"{i:05d}", KINDS[i % len(KINDS)])] = pixels
    return written
