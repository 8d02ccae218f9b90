"""Shared fixtures. TF_CPP_MIN_LOG_LEVEL must be set before TensorFlow is first imported."""

from __future__ import annotations

import fcntl
import faulthandler
import os
import shutil
import sys

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


def _mnist_problem() -> str:
    """Why MNIST_FILES cannot prepare MNIST ("" if it can): names and sizes as TFDS registered them."""
    import tensorflow_datasets as tfds

    for info in tfds.builder("mnist").url_infos.values():
        path = MNIST_FILES / info.filename
        if not path.is_file():
            return f"the MNIST files are not in {MNIST_FILES} (no {info.filename}; set ZOO_MANUAL_DIR)"
        if path.stat().st_size != int(info.size):
            return f"{path} is not the official MNIST file (wrong size)"
    return ""


def pytest_collection_modifyitems(config, items):
    # In CI a missing or wrong MNIST folder must fail the run, not quietly skip every real-data test.
    if os.environ.get("CI", "").lower() != "true":
        return
    if any(item.get_closest_marker("integration") for item in items):
        problem = _mnist_problem()
        if problem:
            pytest.exit(f"CI=true: {problem}", returncode=1)


@pytest.fixture
def installed():
    """The `zoo` console script of the environment running the tests, as a user runs it."""
    script = Path(sys.executable).with_name("zoo")
    if not script.is_file():
        pytest.skip(f"no installed console script at {script}")


def _made_once(tmp_path_factory, name: str, make) -> str:
    """A session folder ``name`` filled by ``make(folder)`` once per test run.

    Under pytest-xdist every worker has its own session, so a plain session fixture would prepare
    the same data once per worker. Here the first worker to ask makes it in the folder the workers
    of one run share (the parent of their own temporary folders), under a file lock; the others
    wait for it and read the same folder. Without xdist it is an ordinary session folder."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.mktemp(name)
        make(folder)
        return str(folder)
    shared = tmp_path_factory.getbasetemp().parent
    folder, done = shared / name, shared / f"{name}.done"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or its worker dies
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a worker that failed left
            folder.mkdir()
            make(folder)
            done.touch()
    return str(folder)


@pytest.fixture(scope="session")
def mnist_data_dir(tmp_path_factory) -> str:
    """A TFDS data_dir with the real MNIST prepared offline from the four official files."""
    problem = _mnist_problem()
    if problem:
        pytest.skip(problem)

    def make(data_dir: Path) -> None:
        from zoo.data import catalog

        catalog.prepared_builder("mnist", data_dir=str(data_dir), manual_dir=str(MNIST_FILES))

    return _made_once(tmp_path_factory, "tfds", make)


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> str:
    """A data_dir with the tiny datasets prepared (zoo_tiny and zoo_tiny_no_test)."""
    from tinydata import ZooTiny, ZooTinyNoTest

    def make(data_dir: Path) -> None:
        for cls in (ZooTiny, ZooTinyNoTest):
            cls(data_dir=str(data_dir)).download_and_prepare()

    return _made_once(tmp_path_factory, "tiny_tfds", make)


@pytest.fixture(scope="session")
def stream_data_dir(tmp_path_factory) -> str:
    """A data_dir with zoo_stream prepared in several shards. Processes that cannot import
    tinydata (the installed `zoo`) still load it by name from here (TFDS's read-only builder)."""
    import tensorflow_datasets as tfds
    from tinydata import ZooStream

    def make(data_dir: Path) -> None:
        ZooStream(data_dir=str(data_dir)).download_and_prepare(
            download_config=tfds.download.DownloadConfig(num_shards=ZooStream.SHARDS)
        )

    return _made_once(tmp_path_factory, "stream_tfds", make)
