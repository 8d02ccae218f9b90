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


# The longest test files, longest first. They start first (on two xdist workers under --dist
# loadfile a file is one unit of work): the short ones then fill in around them, and both workers
# finish together instead of one starting the longest file when the other is nearly done.
LONGEST_FILES = ("test_sweep.py", "test_multihost.py", "test_plugin_install.py", "test_applications.py",
                 "test_robustness.py", "test_readme.py", "test_integration.py", "test_stream.py")


def _first(item) -> int:
    name = item.path.name
    return LONGEST_FILES.index(name) if name in LONGEST_FILES else len(LONGEST_FILES)


def pytest_collection_modifyitems(config, items):
    items.sort(key=_first)  # stable: each file's tests keep their order
    # In CI a missing or wrong MNIST folder must fail the run, not quietly skip every real-data test.
    if os.environ.get("CI", "").lower() != "true":
        return
    if any(item.get_closest_marker("integration") for item in items):
        problem = _mnist_problem()
        if problem:
            pytest.exit(f"CI=true: {problem}", returncode=1)


# -- skips in CI -----------------------------------------------------------------------------------
# With CI=true a skipped test fails the run unless its reason starts with one of the reasons listed
# in docs/development.md after the <!-- allowed-skips --> marker (one "- `reason`: why" a line):
# the list the docs print is the list CI allows, and nothing passes in CI by skipping.
ALLOWED_SKIPS_DOC = ROOT / "docs" / "development.md"


def allowed_skips() -> list[str]:
    """The reasons (prefixes) docs/development.md lists after its <!-- allowed-skips --> marker."""
    lines = ALLOWED_SKIPS_DOC.read_text().split("<!-- allowed-skips -->", 1)[1].strip().splitlines()
    reasons = []
    for line in lines:
        if not line.startswith("- `"):
            break
        reasons.append(line[3:line.index("`", 3)])
    return reasons


def skip_reason(report) -> str:
    """A skipped test's reason, as pytest reports it ("Skipped: " stripped)."""
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return text.removeprefix("Skipped: ")


_UNLISTED_SKIPS: list[tuple[str, str]] = []


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def pytest_runtest_logreport(report):
    # Under xdist the controller sees every worker's reports: judge there (or without xdist) only.
    if not _in_ci() or os.environ.get("PYTEST_XDIST_WORKER") or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = skip_reason(report)
    if not any(reason.startswith(allowed) for allowed in allowed_skips()):
        _UNLISTED_SKIPS.append((report.nodeid, reason))


def pytest_terminal_summary(terminalreporter):
    if _UNLISTED_SKIPS:
        terminalreporter.section("skips CI does not allow (docs/development.md lists those it does)", red=True)
        for nodeid, reason in _UNLISTED_SKIPS:
            terminalreporter.line(f"SKIPPED IN CI {nodeid}: {reason}")


def pytest_sessionfinish(session, exitstatus):
    if _UNLISTED_SKIPS and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


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


# The finished zoo_tiny runs the export tests share (tiny_runs): model, hyperparameters, precision.
# softmax computes in float32, the others in the precision `auto` picks on this machine, so the
# formats' checks meet both kinds of tolerance.
TINY_RUNS = {
    "softmax": ("softmax", {}, "float32"),
    "cnn": ("cnn", {}, "auto"),
    "cnn-batchnorm": ("cnn", {"filters": (4, 8), "dense_units": 16, "batch_norm": True}, "auto"),
}


@pytest.fixture(scope="session")
def tiny_runs(tiny_data_dir, tmp_path_factory):
    """``get(key)``: the finished zoo_tiny run ``TINY_RUNS[key]``, trained once per test run (by
    the first xdist worker to ask, as _made_once does) and only read afterwards: exporting a run
    takes its shared lock and writes nothing into it."""
    import zoo

    made = {}

    def get(key: str) -> zoo.Run:
        if key not in made:
            name, hparams, precision = TINY_RUNS[key]

            def train(folder: Path) -> None:
                zoo.train(name, dataset="zoo_tiny", data_dir=tiny_data_dir, hparams=hparams, precision=precision,
                          epochs=3, batch_size=32, run_dir=folder / "run", verbose=0)

            made[key] = zoo.Run.open(Path(_made_once(tmp_path_factory, f"run-{key}", train)) / "run")
        return made[key]

    return get


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
