"""Shared fixtures. TF_CPP_MIN_LOG_LEVEL must be set before TensorFlow is first imported."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# The tiny TFDS datasets live in a package (TFDS locates a builder's files through its package).
import tinydata  # noqa: E402,F401  (defining the classes registers zoo_tiny and zoo_tiny_no_test)

ROOT = Path(__file__).resolve().parents[1]
MNIST_FILES = Path(os.environ.get("ZOO_MANUAL_DIR") or ROOT.parent / "shared" / "datasets" / "mnist").resolve()
if "ZOO_MANUAL_DIR" in os.environ:
    # README's command sets it relative to the clone; tests that change directory must still find it.
    os.environ["ZOO_MANUAL_DIR"] = str(MNIST_FILES)


@pytest.fixture(scope="session")
def mnist_data_dir(tmp_path_factory) -> str:
    """A TFDS data_dir with the real MNIST prepared offline from the four official files."""
    if not (MNIST_FILES / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"the MNIST files are not in {MNIST_FILES} (set ZOO_MANUAL_DIR)")
    from zoo import data

    data_dir = tmp_path_factory.mktemp("tfds")
    data.prepared_builder("mnist", data_dir=str(data_dir), manual_dir=str(MNIST_FILES))
    return str(data_dir)


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> str:
    """A data_dir with the tiny datasets prepared (zoo_tiny and zoo_tiny_no_test)."""
    from tinydata import ZooTiny, ZooTinyNoTest

    data_dir = tmp_path_factory.mktemp("tiny_tfds")
    for cls in (ZooTiny, ZooTinyNoTest):
        cls(data_dir=str(data_dir)).download_and_prepare()
    return str(data_dir)
