"""End to end on the real MNIST: train, evaluate, export, then serve raw uint8 images."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from click.testing import CliRunner

from zoo.cli import main

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # MNIST prepared, an epoch, 10,000 images served: 11 s and more
def test_train_export_and_serve_real_mnist(mnist_data_dir, tmp_path):
    run, exports = tmp_path / "run", tmp_path / "exports"
    # float32 whatever `auto` picks on this CPU: the comparison below is float32's 1e-5.
    result = CliRunner().invoke(main, ["train", "softmax", "--epochs", "1", "--precision", "float32",
                                       "--data-dir", mnist_data_dir,
                                       "--run-dir", str(run), "--export", str(exports)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.88

    # What a serving system does: load the SavedModel with TensorFlow alone, send raw uint8 images.
    images, labels = next(iter(tfds.load("mnist", split="test", data_dir=mnist_data_dir,
                                         as_supervised=True, download=False).batch(1000)))
    serve = tf.saved_model.load(str(exports / "1")).signatures["serving_default"]
    out = serve(image=images)
    expected = keras.saving.load_model(run / "model.keras").predict(images.numpy() / 255.0, verbose=0)
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)
    accuracy = float(np.mean(out["class_id"].numpy() == labels.numpy()))
    assert accuracy > 0.88
    assert json.loads((exports / "1" / "assets.extra" / "zoo.json").read_text())["class_names"][:3] == ["0", "1", "2"]


@pytest.mark.slow  # a pytest process of its own, which imports TensorFlow: 7-10 s each
@pytest.mark.parametrize("folder", ["missing", "wrong"])
def test_ci_fails_without_the_real_mnist_files_instead_of_skipping(folder, tmp_path):
    import os
    import subprocess
    import sys

    manual = tmp_path / "mnist"
    if folder == "wrong":
        manual.mkdir()
        for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                     "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
            (manual / name).write_bytes(b"not mnist")
    env = {**os.environ, "CI": "true", "ZOO_MANUAL_DIR": str(manual)}
    test = "tests/test_integration.py::test_train_export_and_serve_real_mnist"
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
                            capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert result.returncode == 1, result.stdout[-2000:]
    assert "CI=true: " in result.stdout and str(manual) in result.stdout
    assert "passed" not in result.stdout and "skipped" not in result.stdout


@pytest.mark.slow  # two MNIST trainings of 2 epochs in processes of their own: 50 s
def test_two_devices_train_as_well_as_one_and_record_two_replicas(mnist_data_dir, tmp_path):
    """Data-parallel on two logical CPU devices: the same global batch, the same accuracy."""
    import sys

    import warm

    def train(name: str, *extra: str) -> dict:
        run = tmp_path / name
        cmd = [sys.executable, "-m", "zoo", "train", "mlp", "--epochs", "2", "--data-dir", mnist_data_dir,
               "--run-dir", str(run), *extra]
        result = warm.run(cmd, timeout=600)
        assert result.returncode == 0, result.stderr[-2000:]
        return json.loads((run / "metrics.json").read_text())

    one, two = train("one"), train("two", "--devices", "2", "--export", str(tmp_path / "exports"))
    assert one["hardware"]["replicas"] == 1 and two["hardware"]["replicas"] == 2
    assert two["hardware"]["devices"] == ["CPU:0", "CPU:1"]
    assert abs(two["test_accuracy"] - one["test_accuracy"]) <= 0.003, (one["test_accuracy"], two["test_accuracy"])
    assert (tmp_path / "exports" / "1" / "saved_model.pb").is_file()
