"""Nothing lost, nothing half-written: resume after SIGKILL, Ctrl-C, concurrent and killed exports,
offline failure, non-finite loss, determinism. Real subprocesses on real MNIST."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import warm

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]


def zoo_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "zoo", *args]


def run_zoo(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return warm.run(zoo_cmd(*args), env=env, timeout=timeout)


def _default_sigint() -> None:
    # A test runner started in the background of a non-interactive shell (as a CI script may be)
    # inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler at all; a
    # terminal's Ctrl-C always reaches a process whose SIGINT is at its default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_zoo(*args: str) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(zoo_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, preexec_fn=_default_sigint)


def history(run: Path) -> list[dict[str, str]]:
    path = run / "history.csv"
    if not path.exists():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"process ended early ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


# The tests of the module fixture trained_run run on one xdist worker, which trains it once.
TRAINED_RUN = pytest.mark.xdist_group("robustness_trained_run")


@pytest.fixture(scope="module")
def trained_run(mnist_data_dir, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("robust") / "softmax-run"
    result = run_zoo("train", "softmax", "--epochs", "1", "--data-dir", mnist_data_dir, "--run-dir", str(run))
    assert result.returncode == 0, result.stderr[-2000:]
    return run


def test_one_writer_per_run_directory(tiny_data_dir, tmp_path):
    run, exports = tmp_path / "run", tmp_path / "exports"
    # Enough tiny epochs that the winner still trains while the others are refused.
    args = ("train", "mlp", "--epochs", "60", "--batch-size", "32", "--hp", "units=16,16,16",
            "--dataset", "zoo_tiny", "--data-dir", tiny_data_dir, "--run-dir", str(run))
    first = start_zoo(*args)
    wait_for(lambda: (run / "backup" / "state.json").exists(), first)
    first.kill()
    first.wait()

    racers = [start_zoo(*args, "--resume") for _ in range(2)]  # the same killed run, at once
    deadline = time.monotonic() + 300
    while all(p.poll() is None for p in racers) and time.monotonic() < deadline:
        time.sleep(0.05)
    (loser,) = [p for p in racers if p.poll() is not None]
    (winner,) = [p for p in racers if p is not loser]
    _, stderr = loser.communicate()
    assert loser.returncode == 2, stderr
    assert f"is in use by process {winner.pid} on " in stderr.strip().splitlines()[-1]

    # While the winner trains, nobody else may write or read the run half-written.
    for other in (args + ("--resume",), ("evaluate", str(run)), ("export", str(run), str(exports))):
        result = run_zoo(*other)
        assert result.returncode == 2, result.stderr
        assert f"is in use by process {winner.pid} on " in result.stderr.strip().splitlines()[-1]
    assert winner.poll() is None, "the checks above must run while the winner is still training"
    _, stderr = winner.communicate(timeout=600)
    assert winner.returncode == 0, stderr[-2000:]
    assert [int(r["epoch"]) for r in history(run)] == list(range(1, 61))
    assert not exports.exists()
    assert run_zoo("evaluate", str(run)).returncode == 0  # the lock died with its holder


def test_sigint_stops_keeps_progress_and_prints_resume_command(tiny_data_dir, tmp_path):
    run = tmp_path / "run"
    args = ("train", "mlp", "--epochs", "20", "--batch-size", "32", "--hp", "units=16,16,16",
            "--dataset", "zoo_tiny", "--data-dir", tiny_data_dir, "--run-dir", str(run))
    proc = start_zoo(*args)
    wait_for(lambda: (run / "backup" / "state.json").exists(), proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "--resume" in stderr and str(run) in stderr
    assert "Traceback" not in stderr
    saved = json.loads((run / "backup" / "state.json").read_text())["epoch"]
    before = history(run)[:saved]
    assert 1 <= saved < 20
    resumed = run_zoo(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = history(run)
    assert [int(r["epoch"]) for r in after] == list(range(1, 21))
    assert after[:saved] == before  # the finished epochs were kept (their timings too), not retrained


@TRAINED_RUN
def test_finished_run_is_never_overwritten(trained_run):
    before = (trained_run / "model.keras").read_bytes()
    for extra in ((), ("--resume",)):
        result = run_zoo("train", "softmax", "--run-dir", str(trained_run), *extra)
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1
    assert (trained_run / "model.keras").read_bytes() == before


@TRAINED_RUN
def test_two_exports_at_once_get_different_versions(trained_run, tmp_path):
    base = tmp_path / "exports"
    procs = [start_zoo("export", str(trained_run), str(base)) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1000:] for o in outputs]
    assert sorted(p.name for p in base.iterdir()) == ["1", "2"]
    assert all((base / v / "saved_model.pb").is_file() for v in ("1", "2"))


@TRAINED_RUN
def test_killed_export_leaves_no_version_and_next_export_cleans_up(trained_run, tmp_path):
    base = tmp_path / "exports"
    proc = start_zoo("export", str(trained_run), str(base))
    wait_for(lambda: base.is_dir() and any(p.name.startswith(".tmp-") for p in base.iterdir()), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not [p for p in base.iterdir() if p.name.isdigit()]
    result = run_zoo("export", str(trained_run), str(base))
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in base.iterdir()) == ["1"]  # the stale temporary is gone


@pytest.mark.parametrize("manual", [False, True])
def test_offline_unprepared_dataset_fails_fast_and_leaves_nothing(tmp_path, manual):
    """As on a machine without network, on every machine: ZOO_OFFLINE=1 makes the zoo take the
    offline path (no download attempt) whether or not the download host is reachable."""
    data_dir, run = tmp_path / "tfds", tmp_path / "run"
    args = ["train", "softmax", "--data-dir", str(data_dir), "--run-dir", str(run)]
    if manual:
        (tmp_path / "empty").mkdir()
        args += ["--manual-dir", str(tmp_path / "empty")]
    env = {k: v for k, v in os.environ.items() if k not in ("ZOO_MANUAL_DIR", "TFDS_DATA_DIR")}
    env["ZOO_OFFLINE"] = "1"
    start = time.monotonic()
    result = warm.run(zoo_cmd(*args), env=env, timeout=120)
    assert time.monotonic() - start < 30
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert "--manual-dir" in line and "--data-dir" in line and "train-images-idx3-ubyte.gz" in line
    assert not run.exists()
    assert not data_dir.exists() or not any(data_dir.rglob("*"))


def test_non_finite_loss_stops_with_clear_error(mnist_data_dir, tmp_path):
    run = tmp_path / "run"
    result = run_zoo("train", "mlp", "--epochs", "2", "--learning-rate", "1e6", "--data-dir", mnist_data_dir, "--run-dir", str(run))
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: loss became nan") and "--learning-rate" in line
    assert json.loads((run / "failed.json").read_text())["reason"].startswith("loss became nan")
    assert not (run / "model.keras").exists()


@pytest.mark.parametrize("model, hp", [
    ("mlp", ["--hp", "units=64,64,64"]),
    ("cnn", ["--hp", "filters=8,16", "--hp", "dense_units=32", "--hp", "batch_norm=true"]),
])
def test_resume_after_a_kill_is_exact(model, hp, tiny_data_dir, tmp_path):
    """Killed after an epoch and resumed = never interrupted: the same history, the same weights.

    This is also the determinism test: two processes running the same command, one of them
    interrupted, end with identical metrics and weights.

    With augmentation and dropout, so the shuffle order, the shifts and dropout's random state all
    have to continue where they stopped. On the tiny dataset (TFDS reads a prepared dataset by
    name from its data folder), with enough epochs that the kill lands mid-run.
    """
    import keras
    import numpy as np

    common = ("train", model, *hp, "--epochs", "12", "--batch-size", "32", "--augment",
              "--dataset", "zoo_tiny", "--data-dir", tiny_data_dir, "--run-dir")
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    uninterrupted = start_zoo(*common, str(whole))
    proc = start_zoo(*common, str(killed))
    wait_for(lambda: (killed / "backup" / "state.json").exists(), proc)
    proc.kill()
    proc.wait()
    assert not (killed / "metrics.json").exists(), "killed too late: the run had finished"
    saved = json.loads((killed / "backup" / "state.json").read_text())["epoch"]
    before = history(killed)[:saved]
    resumed = run_zoo(*common, str(killed), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert history(killed)[:saved] == before  # finished epochs kept, timings too: not retrained
    assert not (killed / "backup").exists()
    _, stderr = uninterrupted.communicate(timeout=600)
    assert uninterrupted.returncode == 0, stderr[-2000:]

    columns = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")
    assert [{k: r[k] for k in columns} for r in history(killed)] == [
        {k: r[k] for k in columns} for r in history(whole)
    ]
    weights = [keras.saving.load_model(run / "model.keras", compile=False).get_weights() for run in (whole, killed)]
    assert all(np.array_equal(a, b) for a, b in zip(*weights))
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (whole, killed)]
    assert metrics[0]["test_accuracy"] == metrics[1]["test_accuracy"]
