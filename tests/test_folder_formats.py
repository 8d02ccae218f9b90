"""What people's image folders hold (#24, items 3 and 4): every format Pillow reads (decoded by
Pillow, first frame, EXIF orientation, 16 bits scaled to 8, CMYK, palette and alpha converted),
the litter of operating systems and tools (skipped without a word), files that are not images
(skipped and counted, or refused with --strict-files), files that claim to be images and are not,
and a decompression bomb, found while headers are read, before anything is prepared."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from imagefolders import (
    CLASSES,
    KINDS,
    LITTER,
    LOSSY,
    NOT_IMAGES,
    litter,
    mnist_folder,
    save,
    write,
)
from PIL import Image
from test_folders import _zoo

from zoo.data import catalog, folders, imagefiles, pipeline
from zoo.errors import ZooUsageError

MNIST_FILES = Path(
    os.environ.get("ZOO_MANUAL_DIR") or Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mnist"
)


def _digit(seed: int = 0, size: tuple[int, int] = (12, 10)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels, followed by almost no data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = chunk(b"IDAT", zlib.compress(b"\0" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + pixels + chunk(b"IEND", b"")


# -- decoding: one decoder (Pillow) for every format ---------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_decodes_to_its_grey_pixels(kind, tmp_path):
    pixels = _digit()
    path = save(pixels, tmp_path / "digit", kind)
    for channels in (1, 3):
        decoded = imagefiles.decode(path, channels)
        assert decoded.dtype == np.uint8 and decoded.shape == (12, 10, channels)
        for c in range(channels):
            error = np.abs(decoded[..., c].astype(int) - pixels)
            assert (error.mean() < 4) if kind in LOSSY else not error.any(), (kind, channels, error.max())


def test_alpha_is_dropped_not_composited(tmp_path):
    # Fully transparent red over nothing: the colour stays (as tf.io.decode_image and Keras do).
    Image.new("RGBA", (4, 4), (200, 10, 20, 0)).save(tmp_path / "clear.png")
    assert imagefiles.decode(tmp_path / "clear.png", 3)[0, 0].tolist() == [200, 10, 20]
    # A palette whose transparent entry is green: green, not a background.
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    image.save(tmp_path / "palette.png", transparency=1)
    assert imagefiles.decode(tmp_path / "palette.png", 3)[0, 0].tolist() == [0, 255, 0]


def test_exif_orientation_turns_the_image_and_its_size_in_the_header_pass(tmp_path):
    pixels = _digit(size=(12, 10))
    root = tmp_path / "f"
    for name in CLASSES[:2]:
        (root / name).mkdir(parents=True)
        save(pixels, root / name / "turned", "exif")
        Image.fromarray(pixels).save(root / name / "upright.png")
    # Stored 12 wide and 10 high, shown as drawn (12 high): the header pass says so too.
    assert Image.open(root / CLASSES[0] / "turned.jpeg").size == (12, 10)
    folder = folders.scan(root)
    assert folder.shape == (12, 10, 3) and not folder.resized
    assert imagefiles.decode(root / CLASSES[0] / "turned.jpeg", 1).shape == (12, 10, 1)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_pillows_and_the_header_pass_agrees(orientation, tmp_path):
    from PIL import ImageOps

    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "turned.png"  # lossless, and EXIF before the pixels as Pillow writes it
    Image.fromarray(_digit(size=(12, 10))).save(path, exif=exif)
    with Image.open(path) as image:
        expected = np.asarray(ImageOps.exif_transpose(image))
    decoded = imagefiles.decode(path, 1)[..., 0]
    np.testing.assert_array_equal(decoded, expected)
    assert imagefiles.read_header(path, imagefiles.openers())[0] == decoded.shape


def test_a_16_bit_png_is_scaled_not_clipped(tmp_path):
    Image.fromarray(np.full((3, 3), 65535 // 2, np.uint16)).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    assert imagefiles.decode(tmp_path / "deep.png", 1)[0, 0, 0] == 127


# -- which files are images, which are skipped, which are refused --------------------------------


def test_litter_is_skipped_not_images_are_counted_and_neither_enters_the_fingerprint(tmp_path):
    root = write(tmp_path / "f", {"train": 2, "test": 1})
    before = folders.walk(root)
    expected = litter(root)
    folder = folders.scan(root)
    assert folder.counts() == before.counts() and folder.fingerprint == before.fingerprint
    skipped = folder.record()["skipped"]
    assert {reason: s["count"] for reason, s in skipped.items()} == expected
    assert set(skipped["not an image"]["examples"]) <= {
        str(p.relative_to(root)) for p in root.rglob("*") if p.name in NOT_IMAGES
    }
    assert before.record()["skipped"] == {}
    # Adding more of either changes nothing that is prepared; another image does.
    (root / "train" / "circle" / "more notes.txt").write_text("x")
    (root / "train" / "circle" / ".DS_Store").write_text("y")
    assert folders.walk(root).fingerprint == before.fingerprint
    save(_digit(), root / "train" / "circle" / "new", "bmp")
    assert folders.walk(root).fingerprint != before.fingerprint


def test_a_class_folder_of_litter_only_holds_no_images(tmp_path):
    root = write(tmp_path / "f", {"": 2})
    (root / "hexagon").mkdir()
    (root / "hexagon" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (root / "hexagon" / "README.txt").write_text("soon")
    with pytest.raises(ZooUsageError, match=r"hexagon holds no images \(1 file that is not an image\)"):
        folders.scan(root)


def test_an_image_without_an_extension_is_found_by_its_header(tmp_path):
    root = write(tmp_path / "f", {"": 2})
    save(_digit(size=(24, 24)), root / "circle" / "scan-0001", "noext")
    assert folders.walk(root).counts()["train"]["circle"] == 3


def test_strict_files_refuses_what_is_not_an_image_but_still_skips_litter(tmp_path):
    root = write(tmp_path / "f", {"": 2})
    litter(root, not_images=False)
    assert folders.scan(root, strict=True).counts()["train"] == {c: 2 for c in CLASSES}
    (root / "square" / "notes.txt").write_text("not an image")
    with pytest.raises(ZooUsageError) as err:
        folders.scan(root, strict=True)
    assert "square/notes.txt is not an image" in str(err.value) and "`strict_files`" in str(err.value)


@pytest.mark.parametrize("name, content, words", [
    ("Broken.BMP", b"BM" + b"\0" * 20, "Broken.BMP is not a readable image"),
    ("empty.webp", b"", "empty.webp is not a readable image"),
    ("photo.heic", b"\0\0\0\x18ftypheic", "photo.heic is not a readable image"),
    ("truncated.gif", b"GIF89a\x10\x00", "truncated.gif is not a readable image"),
])
def test_a_file_that_claims_to_be_an_image_and_is_not_is_refused_by_name(name, content, words, tmp_path):
    root = write(tmp_path / "f", {"": 2})
    (root / "square" / name).write_bytes(content)
    with pytest.raises(ZooUsageError) as err:
        folders.scan(root)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_a_decompression_bomb_is_found_in_the_header_pass_with_its_name_and_size(tmp_path):
    root = write(tmp_path / "f", {"": 2})
    (root / "circle" / "huge.png").write_bytes(_png_header(60000, 60000))
    with pytest.raises(ZooUsageError) as err:
        folders.scan(root, image_size=(28, 28))
    message = str(err.value)
    assert "huge.png" in message and "60000x60000" in message and "\n" not in message
    # Between Pillow's warning and its error (1 to 2 times MAX_IMAGE_PIXELS): refused as well.
    side = int((Image.MAX_IMAGE_PIXELS * 1.5) ** 0.5)
    (root / "circle" / "huge.png").write_bytes(_png_header(side, side))
    with pytest.raises(ZooUsageError, match=f"huge.png is {side}x{side} pixels"):
        folders.scan(root, image_size=(28, 28))
    # Without an image extension, found while the files are sorted out.
    (root / "circle" / "huge.png").rename(root / "circle" / "huge")
    with pytest.raises(ZooUsageError, match=f"huge is {side}x{side} pixels"):
        folders.walk(root)


def test_prepared_images_come_from_pillow_in_every_format(tmp_path):
    root = tmp_path / "f"
    written = {}
    for label, name in enumerate(CLASSES[:2]):
        (root / name).mkdir(parents=True)
        for i, kind in enumerate(KINDS):
            pixels = np.full((8, 8), 40 + 100 * label, np.uint8)
            pixels[i % 8, :] = 250
            written[save(pixels, root / name / f"{i:02d}", kind)] = pixels
    images = pipeline.sample_images(str(root), "train", 100, data_dir=str(tmp_path / "tfds"), channels=1)
    assert images.shape == (len(written), 8, 8, 1) and images.dtype == np.uint8
    found = sorted(images[..., 0].astype(int).sum(axis=(1, 2)))
    expected = sorted(int(p.astype(int).sum()) for p in written.values())
    np.testing.assert_allclose(found, expected, atol=8 * 8 * 4)


def test_strict_files_through_the_python_api_and_only_for_folders(tmp_path):
    import zoo
    from zoo.config import RunConfig

    root = write(tmp_path / "f", {"": 2})
    (root / "circle" / "notes.txt").write_text("x")
    with pytest.raises(ZooUsageError, match="notes.txt is not an image"):
        zoo.train("softmax", dataset=str(root), strict_files=True, epochs=1, data_dir=str(tmp_path / "tfds"),
                  run_dir=str(tmp_path / "run"))
    assert not (tmp_path / "run").exists() and not (tmp_path / "tfds").exists()
    with pytest.raises(ZooUsageError, match="`strict_files` applies to folders of images"):
        catalog.describe("mnist", data_dir=str(tmp_path), strict_files=True)
    with pytest.raises(ZooUsageError, match="`strict_files` must be true or false, received 'yes'"):
        RunConfig(model="softmax", strict_files="yes")


# -- through the installed script ------------------------------------------------------------------


@pytest.mark.slow
def test_a_decompression_bomb_through_the_script_is_a_usage_error_naming_it(installed, tmp_path):
    root = write(tmp_path / "pets", {"": 3})
    (root / "square" / "bomb.png").write_bytes(_png_header(60000, 60000))
    result = _zoo("train", "softmax", "--dataset", str(root), "--image-size", "28,28", "--epochs", "1",
                  "--data-dir", str(tmp_path / "tfds"), "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "bomb.png" in lines[0] and "60000x60000" in lines[0], lines
    assert "traceback" not in lines[0]
    assert not (tmp_path / "run").exists() and not (tmp_path / "tfds").exists()


@pytest.mark.slow
@pytest.mark.parametrize("args, culprit", [
    (["--strict-files"], "notes.txt is not an image"),
    ([], "broken.gif is not a readable image"),
])
def test_refused_files_through_the_script_are_one_line_and_leave_nothing(installed, args, culprit, tmp_path):
    root = write(tmp_path / "pets", {"": 3})
    litter(root, not_images=False)
    (root / "circle" / "notes.txt").write_text("to do")
    if not args:
        (root / "circle" / "broken.gif").write_bytes(b"GIF89a" + b"\xff" * 3)
    result = _zoo("train", "softmax", "--dataset", str(root), "--epochs", "1", *args,
                  "--data-dir", str(tmp_path / "tfds"), "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and culprit in lines[0], lines
    if args:
        assert "--strict-files" in lines[0]
    assert not (tmp_path / "run").exists() and not (tmp_path / "tfds").exists()


@pytest.mark.slow
@pytest.mark.integration
def test_an_mnist_folder_of_every_format_and_its_litter_trains_and_says_what_it_skipped(installed, tmp_path):
    if not (MNIST_FILES / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"the MNIST files are not in {MNIST_FILES}")
    root = tmp_path / "digits"
    written = mnist_folder(root, MNIST_FILES, {"train": 450, "test": 150})
    expected = litter(root)
    run = tmp_path / "run"
    trained = _zoo("train", "softmax", "--dataset", str(root), "--channels", "1", "--epochs", "8",
                   "--batch-size", "32", "--learning-rate", "0.01", "--precision", "float32",
                   "--data-dir", str(tmp_path / "tfds"), "--run-dir", str(run))
    assert trained.returncode == 0, trained.stderr[-3000:]
    source = json.loads((run / "config.json").read_text())["dataset"]["source"]
    assert {reason: s["count"] for reason, s in source["skipped"].items()} == expected
    assert sum(n for split in source["files"].values() for n in split.values()) == len(written)
    assert (f"skipped {expected['not an image']} files that are not images" in trained.stdout
            and f"{expected['hidden or system']} hidden or system files" in trained.stdout), trained.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.7  # 450 digits, a linear model: the images are the digits
    for path, pixels in written.items():  # and each kind decodes to its digit
        error = np.abs(imagefiles.decode(path, 1)[..., 0].astype(int) - pixels)
        assert error.mean() < 4 if path.suffix.lower() in (".jpg", ".jpeg") else not error.any(), path

    # --strict-files refuses the first file that is not an image, by name.
    refused = _zoo("train", "softmax", "--dataset", str(root), "--channels", "1", "--strict-files",
                   "--data-dir", str(tmp_path / "tfds"), "--run-dir", str(tmp_path / "run2"))
    assert refused.returncode == 2 and any(n in refused.stderr for n in NOT_IMAGES), refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "run2").exists()
    assert all(name not in refused.stderr for name in LITTER)
