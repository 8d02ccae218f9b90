"""The warm launcher (tests/warm.py): a command started warm ends as the same command started fresh."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import warm

ZOO = str(warm.ZOO)
PY_ZOO = [sys.executable, "-m", "zoo"]


def both(argv, monkeypatch, **kwargs) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """``argv`` started warm, then fresh (ZOO_TEST_FRESH=1)."""
    started = dict(warm.STARTED)
    hot = warm.run(argv, **kwargs)
    assert warm.STARTED["warm"] == started["warm"] + 1, "not started warm"
    monkeypatch.setenv("ZOO_TEST_FRESH", "1")
    fresh = warm.run(argv, **kwargs)
    monkeypatch.delenv("ZOO_TEST_FRESH")
    assert warm.STARTED["fresh"] == started["fresh"] + 1
    return hot, fresh


@pytest.mark.parametrize("argv", [
    [ZOO, "info", "mlp"],  # loads TensorFlow and builds the model
    [ZOO, "train", "no-such-model"],  # a usage error: exit 2
    [*PY_ZOO, "evaluate", "{tmp}/missing"],  # python -m zoo
], ids=["info", "usage-error", "module"])
def test_a_warm_command_ends_as_a_fresh_one(argv, tmp_path, monkeypatch):
    argv = [a.format(tmp=tmp_path) for a in argv]
    hot, fresh = both(argv, monkeypatch, timeout=120)
    assert (hot.returncode, hot.stdout, hot.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)


@pytest.mark.parametrize("body, code", [
    ("raise RuntimeError('boom')", 1),
    ("import sys; sys.exit('bye')", 1),
    ("import sys; print('out'); sys.exit(3)", 3),
    ("import atexit, threading, time\n"
     "atexit.register(print, 'atexit ran')\n"
     "threading.Thread(target=lambda: (time.sleep(0.5), print('thread ended'))).start()", 0),
], ids=["exception", "exit-message", "exit-code", "atexit-and-threads"])
def test_a_module_ends_as_the_interpreter_ends_it(body, code, tmp_path, monkeypatch):
    # python -m MODULE finds MODULE in its working folder.
    (tmp_path / "ending.py").write_text(body + "\n")
    monkeypatch.setattr(warm, "WARM_MODULES", {*warm.WARM_MODULES, "ending"})
    hot, fresh = both([sys.executable, "-m", "ending"], monkeypatch, cwd=tmp_path, timeout=60)
    assert hot.returncode == fresh.returncode == code
    assert hot.stdout.splitlines() == fresh.stdout.splitlines()
    # The same message; a traceback's frames above the module are the launcher's, not runpy's.
    assert hot.stderr.splitlines()[-1:] == fresh.stderr.splitlines()[-1:]
    assert hot.stderr.startswith("Traceback") == fresh.stderr.startswith("Traceback") == (body.startswith("raise"))


def test_the_working_folder_environment_and_pythonpath_are_the_commands(tiny_data_dir, tmp_path):
    # A dataset that only a module on PYTHONPATH registers, a relative run directory.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    code = "import sys, tinydata; from zoo.cli import main; sys.exit(main())"
    assert warm._program([sys.executable, "-c", code]) is None  # not the zoo: fresh
    result = warm.run([ZOO, "train", "softmax", "--dataset", "zoo_tiny", "--data-dir", tiny_data_dir, "--epochs", "1",
                         "--run-dir", "relative"], env={**env, "ZOO_MANUAL_DIR": ""}, cwd=tmp_path, timeout=300)
    # zoo_tiny is registered by tinydata, which the console script does not import: the prepared
    # folder is read by name; the run lands in the command's working folder.
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "relative" / "metrics.json").is_file()


def test_a_command_past_its_time_limit_is_killed(tiny_data_dir, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(subprocess.TimeoutExpired):
        warm.run([ZOO, "train", "mlp", "--dataset", "zoo_tiny", "--data-dir", tiny_data_dir, "--epochs", "500",
                    "--run-dir", str(run)], timeout=8)
    pid = int((run / ".lock").read_text().split()[1])  # "process 4711 on host"
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z":
        assert time.monotonic() < deadline, f"process {pid} outlived its time limit"
        time.sleep(0.05)


def test_what_a_fresh_interpreter_shows_starts_fresh(monkeypatch):
    env = dict(os.environ)
    assert warm._warm_env(env) and warm._warm_env({**env, "KERAS_BACKEND": "tensorflow"})
    for key, value in (("KERAS_BACKEND", "jax"), ("TFDS_DATA_DIR", "/elsewhere"), ("TF_CPP_MIN_LOG_LEVEL", "0")):
        assert not warm._warm_env({**env, key: value}), key
    assert warm._asks_for_jax([ZOO, "train", "mlp", "--backend", "jax"])
    assert warm._asks_for_jax([ZOO, "train", "mlp", "--backend=jax"])
    assert warm._program([sys.executable, "-c", "import zoo"]) is None
    assert warm._program(["/elsewhere/venv/bin/zoo", "list"]) is None
    monkeypatch.setenv("ZOO_TEST_FRESH", "1")
    assert warm._program([ZOO, "list"]) is None
