"""The warm launcher (tests/warm.py): a command started warm ends as the same command started fresh."""

from __future__ import annotations

import json
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
    assert warm._warm_env({**env, "KERAS_BACKEND": "jax"})  # the JAX zygote's
    for key, value in (("KERAS_BACKEND", "torch"), ("TFDS_DATA_DIR", "/elsewhere"), ("TF_CPP_MIN_LOG_LEVEL", "0")):
        assert not warm._warm_env({**env, key: value}), key
    env.pop("KERAS_BACKEND", None)
    for argv, backend in (([ZOO, "train", "mlp"], "tensorflow"), ([ZOO, "train", "mlp", "--backend", "jax"], "jax"),
                          ([ZOO, "train", "mlp", "--backend=jax"], "jax"),
                          ([ZOO, "train", "mlp", "--coordinator", "127.0.0.1:1"], "jax")):  # a process of several
        assert warm._backend(argv, env) == backend, argv
    assert warm._backend([ZOO, "train", "mlp"], {**env, "KERAS_BACKEND": "jax"}) == "jax"
    assert warm._program([sys.executable, "-c", "import zoo"]) is None
    assert warm._program(["/elsewhere/venv/bin/zoo", "list"]) is None
    monkeypatch.setenv("ZOO_TEST_FRESH", "1")
    assert warm._program([ZOO, "list"]) is None


@pytest.mark.slow  # a JAX zygote and a fresh JAX process: about 20 s
def test_a_jax_command_forks_from_a_jax_zygote_and_ends_as_a_fresh_one(tiny_data_dir, tmp_path, monkeypatch):
    argv = [ZOO, "train", "softmax", "--backend", "jax", "--dataset", "zoo_tiny", "--data-dir", tiny_data_dir,
            "--epochs", "1", "--precision", "float32", "--run-dir", "{run}"]
    results = []
    for name, fresh in (("warm", "0"), ("fresh", "1")):
        monkeypatch.setenv("ZOO_TEST_FRESH", fresh)
        started = dict(warm.STARTED)
        result = warm.run([a.format(run=tmp_path / name) for a in argv], timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        assert warm.STARTED[name] == started[name] + 1
        results.append(json.loads((tmp_path / name / "metrics.json").read_text()))
    assert results[0]["hardware"]["backend"] == results[1]["hardware"]["backend"] == "jax"
    assert results[0]["test_accuracy"] == results[1]["test_accuracy"]


@pytest.mark.parametrize("fresh", ["0", "1"], ids=["warm", "fresh"])
def test_a_started_command_is_a_process_its_test_can_watch_and_kill(fresh, tiny_data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_TEST_FRESH", fresh)
    log, run = tmp_path / "log", tmp_path / "run"
    proc = warm.popen([ZOO, "train", "mlp", "--dataset", "zoo_tiny", "--data-dir", tiny_data_dir, "--epochs", "500",
                       "--run-dir", run], stdout=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 120
        while "Epoch 2/500" not in log.read_text():  # its output arrives as it is written
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.05)
        assert int((run / ".lock").read_text().split()[1]) == proc.pid  # the process training the run
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(0.1)
    finally:
        proc.kill()
    assert proc.wait(30) == -9 and proc.returncode == -9
