"""Promises of the documentation that no test kept (#30, item 7), through the installed `zoo`
script, where a user meets them:

- docs/export.md: "`normalized` | float32 images in [0, 1] | the model alone", a second
  signature of every export (the three precisions' exports: tests/test_precision_matrix.py);
- docs/datasets.md: a model trained on resized images "takes uint8 images of any height and width
  ... (with the channels it was trained with)": a `--channels 1` model serves grayscale;
- docs/datasets.md: "other split folders such as `validation/` are prepared too, for `zoo evaluate
  RUN --split validation`, but training's validation is always the slice of `train/`";
- docs/streaming.md: "a dataset prepared again gets a cache of its own".

One folder of colour images of two sizes in train/, validation/ and test/, trained once with
`--channels 1 --image-size 16,16`, streamed through a decoded cache, and exported. Its
validation/ images are labelled one class on (a circle's band in square/), so evaluating that
split, and only that split, scores near zero.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import warm
from PIL import Image

pytestmark = pytest.mark.slow

CLASSES = ("circle", "square", "triangle")
SIZE = (16, 16)


def _zoo(*args: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("zoo")
    if not script.is_file():  # (conftest's `installed` is per test; the fixtures here are not)
        pytest.skip(f"no installed console script at {script}")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return warm.run([str(script), *args], env=env, timeout=600)


def _image(label: int, size: tuple[int, int], rng: np.random.Generator, channels: int = 3) -> np.ndarray:
    """Dim noise with a bright band at a class's height: the class, at any size and in grey."""
    height, width = size
    pixels = rng.integers(0, 60, (height, width, channels), dtype=np.uint8)
    top = int(height * (0.15 + 0.3 * label))
    pixels[top : top + max(2, height // 6)] = 250
    return pixels


def _write(root: Path, split: str, per_class: int, rng: np.random.Generator, shift: int = 0) -> None:
    for label, name in enumerate(CLASSES):
        folder = root / split / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            size = ((24, 24), (30, 20))[i % 2]  # two sizes: training resizes them
            pixels = _image((label + shift) % len(CLASSES), size, rng)
            Image.fromarray(pixels, "RGB").save(folder / f"{i:03d}.{('png', 'jpg')[i % 2]}", quality=95)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("promises")
    root, rng = base / "shapes", np.random.default_rng(0)
    _write(root, "train", 30, rng)
    _write(root, "validation", 6, rng, shift=1)  # each class folder holds the next class's images
    _write(root, "test", 6, rng)
    paths = {"root": root, "data": base / "tfds", "cache": base / "cache", "run": base / "run",
             "exports": base / "exports"}
    result = _zoo("train", "softmax", "--dataset", str(root), "--channels", "1", "--image-size", "16,16",
                  "--epochs", "10", "--batch-size", "16", "--learning-rate", "0.02", "--precision", "float32",
                  "--input", "stream", "--cache-dir", str(paths["cache"]), "--data-dir", str(paths["data"]),
                  "--run-dir", str(paths["run"]), "--export", str(paths["exports"]))
    assert result.returncode == 0, result.stderr[-3000:]
    return {**paths, "stdout": result.stdout, "stderr": result.stderr}


def test_a_channels_1_model_serves_grayscale_images_of_any_size(trained):
    """`--channels 1` on colour images: the export takes uint8 images of any height and width (a
    camera frame as it is), grayscale or colour, converted in the graph as the folder was."""
    import tensorflow as tf

    metadata = json.loads((trained["exports"] / "1" / "assets.extra" / "zoo.json").read_text())
    assert metadata["input_shape"] == [16, 16, 1] and metadata["class_names"] == list(CLASSES)
    serve = tf.saved_model.load(str(trained["exports"] / "1")).signatures["serving_default"]
    spec = serve.structured_input_signature[1]["image"]
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, None, None, None]

    rng = np.random.default_rng(1)
    for size in ((480, 640), (16, 16), (33, 17)):
        frames = np.stack([_image(label, size, rng, channels=1) for label in range(3) for _ in range(4)])
        out = serve(image=tf.constant(frames))
        assert out["probabilities"].shape == (12, 3)
        assert np.mean(out["class_id"].numpy() == np.repeat(np.arange(3), 4)) >= 0.9, size
        # The same frames in colour (and with alpha) are made grayscale as the folder's images were.
        colour = np.repeat(frames, 3, axis=-1)
        rgba = np.concatenate([colour, np.full_like(frames, 255)], axis=-1)
        for other in (colour, rgba):
            np.testing.assert_allclose(serve(image=tf.constant(other))["probabilities"].numpy(),
                                       out["probabilities"].numpy(), atol=1e-6)
    assert [n.decode() for n in out["class_name"].numpy()] == [CLASSES[i] for i in out["class_id"].numpy()]
    # Neither a batch without a channel axis nor an empty image is an image.
    for shape, shown in (((2, 16, 16), "[2 16 16]"), ((1, 0, 5, 1), "[1 0 5 1]"), ((1, 8, 8, 5), "[1 8 8 5]")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(f"received shape {shown}")):
            serve(image=tf.zeros(shape, tf.uint8))


def test_the_export_has_a_normalized_signature_the_model_alone(trained):
    """`normalized`: float32 images in [0, 1] at the model's input size, the model's own
    probabilities, the same as `serving_default` gives for the uint8 images."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(trained["exports"] / "1"))
    normalized = loaded.signatures["normalized"]
    (name, spec), = normalized.structured_input_signature[1].items()
    assert spec.dtype == tf.float32 and spec.shape.as_list() == [None, 16, 16, 1]
    rng = np.random.default_rng(2)
    images = np.stack([_image(label, SIZE, rng, channels=1) for label in range(3) for _ in range(4)])
    (probabilities,) = normalized(**{name: tf.constant(images.astype(np.float32) / 255)}).values()
    assert probabilities.dtype == tf.float32 and probabilities.shape == (12, 3)
    np.testing.assert_allclose(probabilities.numpy().sum(-1), 1, atol=1e-5)
    served = loaded.signatures["serving_default"](image=tf.constant(images))
    np.testing.assert_allclose(probabilities.numpy(), served["probabilities"].numpy(), atol=1e-5)


def test_a_validation_folder_is_a_split_for_evaluate_and_not_trainings_validation(trained):
    config = json.loads((trained["run"] / "config.json").read_text())
    files = config["dataset"]["source"]["files"]
    assert files["validation"] == {name: 6 for name in CLASSES}  # prepared as a split of its own
    metrics = json.loads((trained["run"] / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.9  # the bands are learnt
    # Training's validation is the slice of train/: its accuracy is high, as test's.
    history = (trained["run"] / "history.csv").read_text().splitlines()
    last = dict(zip(history[0].split(","), history[-1].split(",")))
    assert float(last["val_accuracy"]) >= 0.9, last

    result = _zoo("evaluate", str(trained["run"]), "--split", "validation")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("validation: accuracy "), result.stdout
    evaluated = json.loads((trained["run"] / "eval-validation.json").read_text())
    assert evaluated["split"] == "validation"
    # validation/'s images, labelled one class on: a model that knows the bands gets them wrong.
    assert evaluated["accuracy"] <= 0.2, evaluated


def test_a_folder_prepared_again_gets_a_cache_of_its_own(trained):
    """The same folder, prepared again into the same --data-dir, with the same --cache-dir: the
    cache of the first preparation is not read back, a new one is written beside it."""
    first = json.loads((trained["run"] / "metrics.json").read_text())["input"]["cache"]
    assert first and Path(first).parent == trained["cache"] and Path(first).is_dir()
    assert "writing the decoded train" in trained["stderr"]
    prepared = [p for p in trained["data"].iterdir() if p.is_dir()]
    shutil.rmtree(trained["data"])

    run = trained["run"].with_name("again")
    result = _zoo("train", "softmax", "--dataset", str(trained["root"]), "--channels", "1",
                  "--image-size", "16,16", "--epochs", "1", "--precision", "float32", "--input", "stream",
                  "--cache-dir", str(trained["cache"]), "--data-dir", str(trained["data"]),
                  "--run-dir", str(run))
    assert result.returncode == 0, result.stderr[-3000:]
    # The same dataset (the folder's fingerprint and shape name it) ...
    assert sorted(p.name for p in trained["data"].iterdir() if p.is_dir()) == sorted(p.name for p in prepared)
    # ... with a cache of its own, written anew; the first one is left as it was.
    second = json.loads((run / "metrics.json").read_text())["input"]["cache"]
    assert Path(second).parent == trained["cache"] and second != first, (first, second)
    assert "writing the decoded train" in result.stderr, result.stderr[-2000:]
    assert sorted(p for p in trained["cache"].iterdir()) == sorted(Path(p) for p in (first, second))
