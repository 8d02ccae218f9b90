"""Bad requests through the installed ``zoo`` console script, as a user types them.

Each must end with its exit status, at most 3 lines on stderr, no traceback, and nothing new in
the run, export, data or working folders. (More cases that load TensorFlow run in process, through
CliRunner, in test_cli.py: each console-script case that loads it costs seconds.) The invocations run two at a time (each that loads
TensorFlow takes seconds); every case has folders of its own, so none can hide another's litter.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import warm

from zoo.config import RunConfig

# Every case reads the outcomes of one module fixture: one xdist worker runs them all.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("bad_input")]

ZOO = Path(sys.executable).with_name("zoo")
MNIST_SIZES = {
    "train-images-idx3-ubyte.gz": 9912422,
    "train-labels-idx1-ubyte.gz": 28881,
    "t10k-images-idx3-ubyte.gz": 1648877,
    "t10k-labels-idx1-ubyte.gz": 4542,
}

# (arguments, exit status, words the last stderr line must contain). Placeholders: {run}, {export}
# and {data} are this case's own (absent) folders; {gpu_beyond} and {gpus_here} this machine's
# (`machine`); the others come from the `places` fixture.
CASES = [
    # Click's own checks
    (["train"], 2, "Missing argument 'MODEL'"),
    (["train", "softmax", "--epochs", "abc"], 2, "'abc' is not a valid integer"),
    (["train", "softmax", "--optimizer", "adamx"], 2, "'adamx' is not one of"),
    (["train", "softmax", "--no-such-option"], 2, "No such option '--no-such-option'"),
    (["nosuchcommand"], 2, "No such command 'nosuchcommand'"),
    # Numbers Click accepts but the zoo cannot use
    (["train", "softmax", "--epochs", "0"], 2, "--epochs must be between 1 and 1000000"),
    (["train", "softmax", "--epochs", "99999999999999999999999"], 2, "--epochs must be between 1 and"),
    (["train", "softmax", "--batch-size", "0"], 2, "--batch-size must be between 1 and"),
    (["train", "softmax", "--batch-size", "4294967296"], 2, "--batch-size must be between 1 and"),
    (["train", "softmax", "--seed", "-1"], 2, "--seed must be between 0 and 4294967295"),
    (["train", "softmax", "--seed", "4294967296"], 2, "--seed must be between 0 and 4294967295"),
    (["train", "softmax", "--val-split", "1"], 2, "--val-split must be between 0 and 1"),
    (["train", "softmax", "--val-split", "nan"], 2, "--val-split must be between 0 and 1"),
    (["train", "softmax", "--learning-rate", "-1"], 2, "--learning-rate must be a positive number"),
    (["train", "softmax", "--learning-rate", "inf"], 2, "--learning-rate must be a positive number"),
    (["train", "softmax", "--label-smoothing", "1"], 2, "--label-smoothing must be in [0, 1)"),
    # Where and how to compute: each lists what it accepts
    (["train", "softmax", "--precision", "fp8"], 2, "'fp8' is not one of 'auto', 'float32', 'mixed_bfloat16', 'mixed_float16'"),
    (["train", "softmax", "--jit-compile", "maybe"], 2, "'maybe' is not one of 'auto', 'on', 'off'"),
    (["train", "softmax", "--jit-compile", "on"], 2, "--jit-compile on needs deterministic ops off (--no-deterministic"),
    (["train", "softmax", "--devices", "0"], 2, "--devices must be auto, cpu, a number of devices (1 or more) or a list"),
    (["train", "softmax", "--devices", "gpu:x"], 2, "received 'gpu:x'"),
    (["train", "softmax", "--devices", "{gpu_beyond}"], 2, "--devices names {gpu_beyond}, but this machine's GPUs are: {gpus_here}"),
    (["bench", "softmax", "--devices", "cpu,gpu:0", "--out", "{run}"], 2, "--devices must be auto, cpu"),
    (["bench", "softmax", "--seeds", "x"], 2, "--seeds expects comma-separated integers"),
    # input paths (#14)
    (["train", "softmax", "--input", "disk"], 2, "'disk' is not one of 'auto', 'memory', 'stream'"),
    (["train", "softmax", "--memory-budget", "lots"], 2, "--memory-budget must be a size such as 512MB"),
    (["train", "softmax", "--memory-budget", "0"], 2, "received '0'"),
    (["bench", "softmax", "--memory-budget", "-4GB", "--out", "{run}"], 2, "--memory-budget must be a size"),
    (["train", "softmax", "--input", "memory", "--memory-budget", "10MB"], 2,
     "--input memory: the decoded splits of 'mnist' take about 52.9 MB (70,000 images of 28x28x1), "
     "more than --memory-budget 10 MB"),
    (["train", "softmax", "--cache-dir", "{a_file}"], 2, "cache folder {a_file} exists and is not a directory"),
    (["train", "softmax", "--cache-dir", "{a_file}/cache"], 2, "is a file"),
    (["train", "softmax", "--cache-dir", ""], 2, "--cache-dir': must be a folder path, not empty"),
    (["train", "softmax", "--dataset", ""], 2, "--dataset is empty"),
    (["bench", "softmax", "--cache-dir", "/proc/zoo-cache", "--out", "{run}"], 2,
     "cannot create cache folder /proc/zoo-cache"),
    (["bench", "softmax", "--seeds", "4294967296"], 2, "--seeds expects integers between 0 and"),
    # Hyperparameters: syntax, names, types, and values the builder itself rejects
    (["train", "cnn", "--hp", "dropout"], 2, "--hp expects KEY=VALUE"),
    (["train", "cnn", "--hp", "dropout=0.1", "--hp", "dropout=0.2"], 2, "--hp dropout is given twice"),
    (["train", "mlp", "--hp", "units=-5"], 2, "model 'mlp' rejects units=-5: ValueError"),
    (["train", "cnn", "--hp", "filters=32"], 2, "model 'cnn' rejects filters=32: ValueError"),
    (["train", "softmax", "--recipe", "{a_file}"], 2, "is not a zoo recipe file"),
    # Models
    (["train", "nosuchmodel"], 2, "unknown model 'nosuchmodel'"),
    (["train", "cnnn"], 2, "Did you mean: cnn"),
    (["info", "nosuchmodel"], 2, "unknown model 'nosuchmodel'"),
    (["check", "mlpp"], 2, "Did you mean: mlp"),
    # Datasets: TFDS registry, features, files
    (["train", "softmax", "--dataset", "no_such_dataset"], 2, "unknown dataset 'no_such_dataset'"),
    (["train", "softmax", "--dataset", "mnist:9.9.9"], 2, "cannot be loaded at version 9.9.9, only: 3.0.1"),
    (["train", "softmax", "--data-dir", "{data}", "--manual-dir", "{same_size}"], 1,
     "does not have the checksum TFDS registered for dataset 'mnist'"),
    (["train", "softmax", "--data-dir", "/proc/zoo-data", "--manual-dir", "{same_size}"], 2,
     "cannot create the data folder of 'mnist' /proc/zoo-data"),
    (["train", "softmax", "--manual-dir", "{a_file}"], 2, "is a file"),
    # Run directories and export bases
    (["train", "softmax", "--resume"], 2, "--resume needs the --run-dir"),
    (["train", "softmax", "--run-dir", "{a_file}"], 2, "exists and is not a directory"),
    (["train", "softmax", "--run-dir", "{a_file}/run"], 2, "is a file"),
    (["train", "softmax", "--run-dir", "/proc/zoo-run"], 2, "cannot create run directory /proc/zoo-run"),
    (["train", "softmax", "--run-dir", "{finished}"], 2, "is not empty; pass --resume"),
    (["train", "softmax", "--run-dir", "{finished}", "--resume"], 2, "is already complete"),
    (["train", "softmax", "--run-dir", "{empty}", "--resume"], 2, "nothing to resume"),
    (["train", "softmax", "--run-dir", ""], 2, "run directory is empty; give a folder"),
    (["train", "softmax", "--export", ""], 2, "export base is empty; give a folder"),
    (["export", "cnn.mnist", " "], 2, "export base is empty; give a folder"),
    (["train", "softmax", "--export", "{a_file}"], 2, "export base {a_file} exists and is not a directory"),
    (["train", "softmax", "--export", "/sys/zoo-exports"], 2, "cannot create export base /sys/zoo-exports"),
    (["evaluate", "{empty}"], 2, "is not a run directory (no config.json)"),
    (["evaluate", "{a_file}/nothing"], 2, "is not a run directory"),
    (["evaluate", "{bad_model}"], 1, "model.keras: it is not a .keras (zip) file; damaged or cut short"),
    (["evaluate", "{bad_config}"], 1, "is corrupted or not a zoo config"),
    (["export", "{no_model}", "{export}"], 2, "has no model.keras"),
    # An export base is a folder of versions of its own: nothing published or recorded is written
    (["train", "softmax", "--export", "{a_version}"], 2, "{a_version} is a published SavedModel version, never written again"),
    (["export", "cnn.mnist", "{a_version}/variables"], 2, "is inside {a_version}, a published SavedModel version"),
    (["export", "cnn.mnist", "{a_preset}"], 2, "export base {a_preset} is a preset, never written"),
    (["export", "cnn.mnist", "{finished}"], 2, "export base {finished} is a run directory: give a folder of its own"),
    (["train", "softmax", "--run-dir", "{run}", "--export", "{run}"], 2, "is the run directory: give a folder of its own"),
    (["export", "cnn.mnist", "{images}"], 2, "export base {images} holds images (train/cat/1.png), as a dataset folder does"),
    (["train", "softmax", "--export", "{images}"], 2, "export base {images} holds images (train/cat/1.png)"),
    # ... and its newest version says what it serves, or what a new one must match is unknown
    (["export", "cnn.mnist", "{unreadable_version}"], 2, "its newest version (2) has no readable assets.extra/zoo.json"),
]


@pytest.fixture(scope="module")
def places(mnist_data_dir, tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad-input")
    (root / "a_file").write_text("a regular file where a folder is expected")
    (root / "empty").mkdir()
    for name, make in (("wrong_size", lambda size: 10), ("same_size", lambda size: size)):
        folder = root / name
        folder.mkdir()
        for file, size in MNIST_SIZES.items():
            with (folder / file).open("wb") as f:  # the right names, not the right contents
                f.truncate(make(size))
    config = {"config": RunConfig("softmax", data_dir=mnist_data_dir).to_dict()}
    for name in ("finished", "bad_model", "bad_config", "no_model"):
        (root / name).mkdir()
        (root / name / "config.json").write_text(json.dumps(config))
    (root / "finished" / "metrics.json").write_text("{}")
    (root / "finished" / "history.csv").write_text("epoch,loss\n0,1.0\n")
    (root / "a_version" / "variables").mkdir(parents=True)
    (root / "a_version" / "saved_model.pb").write_bytes(b"published")
    (root / "a_preset").mkdir()
    (root / "images" / "train" / "cat").mkdir(parents=True)  # a dataset folder in the split layout
    (root / "images" / "train" / "cat" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    for version in ("1", "2"):  # version 2's metadata is damaged
        (root / "unreadable_version" / version / "assets.extra").mkdir(parents=True)
        (root / "unreadable_version" / version / "saved_model.pb").write_bytes(b"published")
    (root / "unreadable_version" / "1" / "assets.extra" / "zoo.json").write_text("{}")
    (root / "unreadable_version" / "2" / "assets.extra" / "zoo.json").write_text("{damaged")
    (root / "a_preset" / "preset.json").write_text("{}")
    (root / "bad_model" / "model.keras").write_bytes(b"PK\x03\x04 truncated zip")
    (root / "bad_config" / "config.json").write_text('{"config": {"model": "mlp", "epochs": "many"}}')
    return {p.name: str(p) for p in root.iterdir()}


@functools.cache
def machine() -> dict[str, str]:
    """The GPU one past this machine's last (gpu:0 where it has none), and how the zoo lists its GPUs."""
    import tensorflow as tf

    have = len(tf.config.list_physical_devices("GPU"))
    return {"gpu_beyond": f"gpu:{have}", "gpus_here": f"{have} (gpu:0 to gpu:{have - 1})" if have else "none"}


def _snapshot(folder: str) -> dict[str, tuple]:
    """Every file and folder under ``folder``: a file by its content's hash and its mtime (a file
    rewritten with the same bytes, or other bytes of the same size, shows), a folder by its name."""
    return {str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) if p.is_file() else "dir"
            for p in sorted(Path(folder).rglob("*"))}


@pytest.fixture(scope="module")
def outcomes(places, mnist_data_dir, tmp_path_factory):
    if not ZOO.is_file():
        pytest.skip(f"no installed console script at {ZOO}")
    root = tmp_path_factory.mktemp("bad-input-cases")
    env = {k: v for k, v in os.environ.items() if k not in ("ZOO_MANUAL_DIR", "TFDS_DATA_DIR", "ZOO_DEBUG")}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", ZOO_OFFLINE="1")
    before = {name: _snapshot(path) for name, path in places.items() if Path(path).is_dir()}
    before["mnist"] = _snapshot(mnist_data_dir)

    def run(index: int):
        own = {k: str(root / f"{k}-{index}") for k in ("run", "export", "data", "cwd")}
        Path(own["cwd"]).mkdir()
        args = [a.format(**places, **own, **machine()) for a in CASES[index][0]]
        if args[0] == "train":
            args += [] if "--run-dir" in args or "--resume" in args else ["--run-dir", own["run"]]
            args += [] if "--data-dir" in args else ["--data-dir", mnist_data_dir]
        result = warm.run([str(ZOO), *args], env=env, cwd=own["cwd"], timeout=300)
        return args, own, result

    machine()  # once, before the threads
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(run, range(len(CASES))))
    after = {name: _snapshot(path) for name, path in places.items() if Path(path).is_dir()}
    after["mnist"] = _snapshot(mnist_data_dir)
    return results, before, after


def test_there_are_at_least_thirty_kinds_of_bad_input_each_invoked_once():
    invocations = [" ".join(args) for args, _, _ in CASES]
    assert len(set(invocations)) == len(invocations) >= 30  # no case counted twice
    # docs/runs.md's count of them is this table's: tests/test_suite.py


@pytest.mark.parametrize("index", range(len(CASES)), ids=[" ".join(c[0]) for c in CASES])
def test_bad_input_is_one_line_and_leaves_nothing(index, outcomes, places):
    (args, own, result), (_, code, words) = outcomes[0][index], CASES[index]
    stderr = result.stderr.strip().splitlines()
    assert result.returncode == code, (args, result.stderr[-3000:])
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert 1 <= len(stderr) <= 3, result.stderr
    assert stderr[-1].startswith("Error: ") and words.format(**places, **machine()) in stderr[-1], stderr[-1]
    for key in ("run", "export", "data"):
        assert not Path(own[key]).exists(), f"{key} folder {own[key]} was created"
    assert list(Path(own["cwd"]).iterdir()) == []


def test_bad_inputs_changed_no_existing_folder(outcomes):
    _, before, after = outcomes
    assert after == before
