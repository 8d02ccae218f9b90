"""The JAX backend and training on several processes (127.0.0.1 only, every process stopped by id).

Real processes of the installed ``zoo`` joined through JAX's coordination service: two training
MNIST together against one alone, a JAX-trained export served by TensorFlow alone, a peer killed
(and the run resumed), a peer frozen, and the bad requests.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import warm

import zoo
from zoo.compute import multihost
from zoo.data import pipeline
from zoo.errors import ZooUsageError
from zoo.runs import Run

jax = pytest.importorskip("jax", reason='the JAX tests need the jax extra: pip install ".[jax]"')
# One xdist worker, one multi-process run at a time: test_two_processes_train_mnist_as_one_does
# checks that no zoo-process-* scratch folder is left in the system temp folder, and the peer
# tests time how fast a lost peer is noticed.
pytestmark = pytest.mark.xdist_group("multihost")

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
ENV.pop("KERAS_BACKEND", None)
ENV.pop("KERAS_DISTRIBUTION_JOB_ADDRESSES", None)


def zoo_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "zoo", *map(str, args)]


def run_zoo(*args, timeout: float = 600, env=None) -> subprocess.CompletedProcess:
    return warm.run(zoo_cmd(*args), env={**ENV, **(env or {})}, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Processes of one multi-process run, each told its id; all are killed at the end."""

    def __init__(self, tmp_path: Path):
        self.tmp, self.procs, self.logs = tmp_path, [], []

    def start(self, count: int, *args, port: int | None = None) -> None:
        port = port or free_port()
        self.procs, self.logs = [], []
        for i in range(count):
            log = self.tmp / f"p{i}-{time.monotonic_ns()}.log"
            cmd = zoo_cmd(*args, "--coordinator", f"127.0.0.1:{port}", "--num-processes", count, "--process-id", i)
            self.procs.append(warm.popen(cmd, stdout=log, env=ENV))
            self.logs.append(log)

    def output(self, i: int) -> str:
        return self.logs[i].read_text(errors="replace")

    def wait(self, timeout: float = 600) -> list[int]:
        deadline = time.monotonic() + timeout
        for p in self.procs:
            p.wait(max(1, deadline - time.monotonic()))
        return [p.returncode for p in self.procs]

    def kill_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.fixture
def processes(tmp_path):
    group = Processes(tmp_path)
    yield group
    group.kill_all()


def history(run: Path) -> list[dict[str, float | int]]:
    return Run(run).history  # [] before the first epoch


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("Error:")]


# --- Bad requests: one line, exit 2, nothing started -------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--coordinator", "127.0.0.1:1234"], "missing --num-processes, --process-id"),
    (["--coordinator", "127.0.0.1:1234", "--num-processes", "2", "--process-id", "2"],
     "--process-id must be between 0 and 1"),
    (["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"], "HOST:PORT"),
    (["--coordinator", "127.0.0.1:70000", "--num-processes", "2", "--process-id", "0"], "HOST:PORT"),
    (["--coordinator", "127.0.0.1:1234", "--num-processes", "0", "--process-id", "0"],
     "--num-processes must be at least 1"),
    (["--coordinator", "127.0.0.1:1234", "--num-processes", "2", "--process-id", "0", "--peer-timeout", "0"],
     "--peer-timeout must be between 1"),
    (["--peer-timeout", "-5"], "--peer-timeout must be between 1"),  # one process: still a bad value
    (["--local-processes", "0"], "--local-processes must be between 1"),
    (["--local-processes", "2", "--process-id", "1"], "--local-processes chooses"),
    (["--backend", "tensorflow", "--coordinator", "127.0.0.1:1234", "--num-processes", "2", "--process-id", "0"],
     "keras-team/keras#20585"),
    (["--backend", "torch"], "'torch' is not one of"),
])
def test_bad_multiprocess_requests_are_one_line_usage_errors(args, message, tmp_path, monkeypatch):
    # In process (CliRunner), as test_cli.py checks the other bad requests: each is refused before
    # any process, backend or dataset is started, so a `python -m zoo` each (with TensorFlow's
    # import) tested nothing more. The environment is ENV's: no backend or cluster preset.
    from click.testing import CliRunner

    from zoo.cli import main

    for name in ("KERAS_BACKEND", "KERAS_DISTRIBUTION_JOB_ADDRESSES"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(main, ["train", "mlp", "--run-dir", str(tmp_path / "run"), *map(str, args)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.stderr
    assert not (tmp_path / "run").exists()


def test_keras_distribution_environment_variables_are_read(monkeypatch):
    monkeypatch.setenv("KERAS_DISTRIBUTION_JOB_ADDRESSES", "10.0.0.1:1234,10.0.0.2:2345")
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "2")
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "1")
    assert multihost.cluster() == multihost.Cluster("10.0.0.1:1234", 2, 1)
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "one")
    with pytest.raises(ZooUsageError, match="must be integers"):
        multihost.cluster()
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "1")
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "0")
    assert multihost.cluster() is None  # one process: nothing to join


def test_another_backend_after_keras_started_is_refused():
    import keras

    assert keras.backend.backend() == "tensorflow"
    with pytest.raises(ZooUsageError, match="Keras already started with the tensorflow backend"):
        zoo.train("mlp", backend="jax", epochs=1)


# --- Data shares ------------------------------------------------------------------------------

def _examples(ds) -> list[int]:
    """The example indices tinydata wrote into pixels (0, 0) and (0, 1), batch by batch."""
    ids = []
    for batch in ds:
        images = batch[0].numpy()
        ids.extend((np.round(images[:, 0, 0, 0] * 255) * 256 + np.round(images[:, 0, 1, 0] * 255)).astype(int))
    return ids


def test_each_process_reads_an_equal_disjoint_share_in_smaller_batches(tiny_data_dir):
    whole = pipeline.load("zoo_tiny", batch_size=8, data_dir=tiny_data_dir, val_fraction=0.25)
    shares = [pipeline.load("zoo_tiny", batch_size=8, data_dir=tiny_data_dir, val_fraction=0.25, process=(i, 2))
              for i in range(2)]
    first, second = (_examples(s.train) for s in shares)
    assert len(first) == len(second) == whole.info.num_train // 2 == 75
    assert not set(first) & set(second) and set(first) | set(second) == set(_examples(whole.train))
    assert shares[0].steps_per_epoch == shares[1].steps_per_epoch == -(-75 // 4)
    assert {len(b[1]) for b in shares[0].train} == {4, 3}  # half the batch; the last is smaller
    # Validation and test are whole on every process: the global metrics are the splits' own.
    assert _examples(shares[1].validation) == _examples(whole.validation)
    with pytest.raises(ZooUsageError, match="multiple of the 3 processes"):
        pipeline.load("zoo_tiny", batch_size=8, data_dir=tiny_data_dir, process=(0, 3))


def test_padded_batches_weigh_their_padding_zero(tiny_data_dir):
    splits = pipeline.load("zoo_tiny", batch_size=8, data_dir=tiny_data_dir, pad_to=3)
    sizes, real = [], 0
    for images, labels, weights in splits.test:
        sizes.append(len(labels))
        real += int(weights.numpy().sum())
        assert images.shape[0] == len(weights) and set(weights.numpy()[int(weights.numpy().sum()):]) <= {0.0}
    assert all(n % 3 == 0 for n in sizes) and real == splits.info.num_test == 60


# --- The JAX backend on one process -----------------------------------------------------------



@pytest.mark.slow
def test_jax_export_is_served_by_tensorflow_alone(tiny_data_dir, tmp_path):
    result = run_zoo("train", "softmax", "--backend", "jax", "--dataset", "zoo_tiny", "--data-dir", tiny_data_dir,
                     "--epochs", "2", "--precision", "float32", "--run-dir", tmp_path / "run",
                     "--export", tmp_path / "exports")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "jax backend" in result.stdout
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["hardware"]["backend"] == "jax"
    # TensorFlow alone (no JAX imported) serves it, and agrees with the model.keras that Keras
    # loads on TensorFlow: one model, whichever backend trained it.
    check = f"""
import sys
sys.modules["jax"] = sys.modules["jaxlib"] = None  # as if JAX were not installed: imports fail
import numpy as np, tensorflow as tf, keras, tensorflow_datasets as tfds
serve = tf.saved_model.load({str(tmp_path / "exports" / "1")!r}).signatures["serving_default"]
assert serve.structured_input_signature[1]["image"].dtype == tf.uint8
images, labels = tfds.load("zoo_tiny", split="test", data_dir={tiny_data_dir!r}, as_supervised=True, batch_size=-1)
out = serve(image=images)
assert out["probabilities"].dtype == tf.float32 and out["class_id"].dtype == tf.int64
model = keras.saving.load_model({str(tmp_path / "run" / "model.keras")!r})
expected = model.predict(images.numpy() / 255.0, verbose=0)
print(float(np.abs(out["probabilities"].numpy() - expected).max()), sys.modules["jax"] is not None,
      float((out["class_id"].numpy() == labels.numpy()).mean()))
"""
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                         env={**ENV, "KERAS_BACKEND": "tensorflow"}, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    diff, jax_imported, accuracy = out.stdout.split()
    assert float(diff) < 1e-5 and jax_imported == "False"
    assert abs(float(accuracy) - metrics["test_accuracy"]) < 1e-6


@pytest.mark.slow
def test_jax_on_several_devices_pads_batches_without_changing_the_result(tiny_data_dir, tmp_path):
    """Logical CPU devices split each batch evenly; batches of 7 are padded with weight-0 examples."""
    results = {}
    for count in (1, 2):
        run = tmp_path / f"run{count}"
        result = run_zoo("train", "softmax", "--backend", "jax", "--devices", count, "--dataset", "zoo_tiny",
                         "--data-dir", tiny_data_dir, "--epochs", "2", "--batch-size", "7",
                         "--precision", "float32", "--run-dir", run)
        assert result.returncode == 0, result.stderr[-3000:]
        results[count] = json.loads((run / "metrics.json").read_text())
    assert results[2]["hardware"]["replicas"] == 2
    assert results[2]["test_accuracy"] == pytest.approx(results[1]["test_accuracy"], abs=1e-6)
    assert results[2]["test_loss"] == pytest.approx(results[1]["test_loss"], rel=1e-4)
    # Validation loss is Keras' own figure, which weighs a padded batch by its padded size.
    assert float(history(tmp_path / "run2")[-1]["val_loss"]) == pytest.approx(
        float(history(tmp_path / "run1")[-1]["val_loss"]), rel=1e-2)


# --- Two processes ----------------------------------------------------------------------------

@pytest.mark.integration
@pytest.mark.slow
def test_two_processes_train_mnist_as_one_does(mnist_data_dir, tmp_path):
    common = ["--epochs", "1", "--batch-size", "128", "--precision", "float32", "--data-dir", mnist_data_dir]
    scratch_before = set(Path(tempfile.gettempdir()).glob("zoo-process-*"))
    two = run_zoo("train", "mlp", "--local-processes", "2", *common, "--run-dir", tmp_path / "two",
                  "--export", tmp_path / "exports", timeout=900)
    assert two.returncode == 0, (two.stdout + two.stderr)[-4000:]
    lines = two.stdout.splitlines()
    by_process = {i: [line[4:] for line in lines if line.startswith(f"[{i}] ")] for i in (0, 1)}
    digests = {i: [line for line in by_process[i] if line.startswith("weights digest")] for i in (0, 1)}
    assert digests[0] and digests[0] == digests[1]  # identical final weights on both
    assert any("process 0 writes the run directory" in line for line in by_process[1])
    assert any(line.startswith("exported ") for line in by_process[0])
    assert not any(line.startswith("exported ") for line in by_process[1])
    # Written once, by process 0; process 1's scratch copy is gone.
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == ["1"]
    assert set(Path(tempfile.gettempdir()).glob("zoo-process-*")) == scratch_before
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert metrics["hardware"]["processes"] == 2 and metrics["hardware"]["backend"] == "jax"
    assert [int(r["epoch"]) for r in history(tmp_path / "two")] == [1]

    one = run_zoo("train", "mlp", "--backend", "jax", *common, "--run-dir", tmp_path / "one", timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    single = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert abs(metrics["test_accuracy"] - single["test_accuracy"]) < 0.01

    # The export serves: its accuracy on the test split is the run's.
    import tensorflow as tf
    import tensorflow_datasets as tfds

    serve = tf.saved_model.load(str(tmp_path / "exports" / "1")).signatures["serving_default"]
    images, labels = tfds.load("mnist", split="test", data_dir=mnist_data_dir, as_supervised=True, batch_size=-1)
    predicted = serve(image=images)["class_id"].numpy()
    assert abs((predicted == labels.numpy()).mean() - metrics["test_accuracy"]) < 1e-3


TINY = ["--dataset", "zoo_tiny", "--batch-size", "8", "--precision", "float32", "--peer-timeout", "10"]


def files_of(folder: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``folder``: (mtime in ns, sha256 of its bytes)."""
    import hashlib

    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("victim", [1, 0], ids=["process 1 killed", "process 0 killed"])
def test_a_killed_peer_stops_the_other_at_once_and_the_run_resumes(victim, tiny_data_dir, tmp_path, processes):
    """Either process killed: the other stops at once with one line, the run directory keeps the
    last backup, a resume on another number of processes is refused without touching it, and the
    same commands with --resume finish the run."""
    run = tmp_path / "run"
    survivor = 1 - victim
    args = ["train", "mlp", *TINY, "--data-dir", tiny_data_dir, "--epochs", "8", "--run-dir", run]
    processes.start(2, *args)
    wait_until(lambda: len(history(run)) >= 2 or processes.procs[0].poll() is not None, 300, "two epochs")
    processes.procs[victim].kill()
    killed = time.monotonic()
    assert processes.procs[survivor].wait(60) == 1, processes.output(survivor)[-3000:]
    # A collective with a dead peer fails at once; process 0's death also takes the coordination
    # service, which process 1's watchdog notices within a beat.
    assert time.monotonic() - killed < 15
    output = processes.output(survivor)
    errors = error_lines(output)
    assert len(errors) == 1 and "--resume" in errors[0], output[-2000:]
    assert ("lost a peer" in errors[0] or "lost the coordinator" in errors[0]), errors
    assert "Check failure stack trace" not in output  # not JAX's abort
    # The last finished epoch the backup holds: the row of an epoch whose backup (a collective)
    # failed with the peer is dropped on resume.
    kept = json.loads((run / "backup" / "state.json").read_text())["epoch"]
    assert 1 <= kept < 8 and len(history(run)) in (kept, kept + 1)

    if victim == 0:  # (once: the refusal does not depend on which process died)
        _one_process_may_not_resume(run, args)

    processes.start(2, *args, "--resume")
    assert processes.wait(600) == [0, 0], processes.output(0)[-3000:] + processes.output(1)[-3000:]
    assert [int(r["epoch"]) for r in history(run)] == list(range(1, 9))
    assert f"Epoch {kept + 1}/8" in processes.output(1)  # process 1 too continued from the backup
    assert f"Epoch {kept}/8" not in processes.output(1)
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 8


def _one_process_may_not_resume(run: Path, args: list) -> None:
    """Each process's share of the data depends on their number: one process may not resume a
    run of two, and its refusal changes nothing in the run directory."""
    before = files_of(run)
    alone = run_zoo(*args, "--resume", "--backend", "jax", timeout=300)
    assert alone.returncode == 2, alone.stderr[-3000:]
    refusal = (f"Error: run {run} trained on 2 process(es), this resume has 1; each process's share "
               f"of the data depends on it: resume with 2")
    assert error_lines(alone.stderr) == [refusal], alone.stderr[-3000:]
    after = files_of(run)
    del after[".lock"], before[".lock"]  # the lock file names its last holder
    assert after == before


@pytest.mark.slow
def test_a_frozen_peer_is_an_error_within_the_peer_timeout(tiny_data_dir, tmp_path, processes):
    run = tmp_path / "run"
    processes.start(2, "train", "mlp", *TINY, "--data-dir", tiny_data_dir, "--epochs", "200", "--run-dir", run)
    wait_until(lambda: len(history(run)) >= 1 or processes.procs[0].poll() is not None, 300, "an epoch")
    processes.procs[1].send_signal(signal.SIGSTOP)  # alive, silent: a machine that vanished
    frozen = time.monotonic()
    assert processes.procs[0].wait(60) == 1, processes.output(0)[-3000:]
    waited = time.monotonic() - frozen
    # The peer timeout (10 s) counts from the peer's last sign of life, up to one beat (1 s) before
    # it froze, and ends up to two beats after (docs/multihost.md: "the peer timeout plus a second
    # or two"); one more second for a loaded machine to print and exit.
    assert 10 - 1 <= waited <= 10 + 2 + 1, waited
    errors = error_lines(processes.output(0))
    assert len(errors) == 1 and "process 1 has given no sign of life for 10 s" in errors[0], errors


@pytest.mark.slow
def test_a_refusal_on_process_0_is_every_process_refusal(tiny_data_dir, tmp_path, processes):
    """A batch that does not split evenly: process 0 refuses once it has read the dataset, and
    tells the others, which stop with the same words instead of waiting."""
    processes.start(2, "train", "mlp", *TINY[:2], "--batch-size", "9", "--data-dir", tiny_data_dir,
                    "--epochs", "1", "--run-dir", tmp_path / "run")
    assert processes.wait(300) == [2, 2]
    for i in (0, 1):
        errors = error_lines(processes.output(i))
        assert len(errors) == 1 and "must be a multiple of the 2 processes" in errors[0], processes.output(i)
    assert "process 0:" in error_lines(processes.output(1))[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_local_processes_stop_together_when_one_fails(tiny_data_dir, tmp_path):
    """--local-processes: a child that dies takes the run down, with every child's exit code in one
    line, and no child is left running."""
    run = tmp_path / "run"
    launcher = subprocess.Popen(
        zoo_cmd("train", "mlp", *TINY, "--data-dir", tiny_data_dir, "--epochs", "200", "--run-dir", run,
                "--local-processes", "2"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    children: dict[int, int] = {}
    try:
        wait_until(lambda: len(history(run)) >= 1 or launcher.poll() is not None, 300, "an epoch")
        children = _children(launcher.pid)
        assert sorted(children) == [0, 1], children
        os.kill(children[1], signal.SIGKILL)
        stdout, stderr = launcher.communicate(timeout=60)
    finally:
        for pid in [launcher.pid, *children.values()]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        launcher.wait()
    assert launcher.returncode == 1, stderr[-3000:]
    assert error_lines(stderr) == ["Error: 2 of 2 processes failed (process 0: exit 1, process 1: exit -9)"], stderr
    lost = [line for line in stdout.splitlines() if line.startswith("[0] Error:")]
    assert len(lost) == 1 and "lost a peer" in lost[0], stdout[-3000:]
    assert not any(_alive(pid) for pid in children.values())


def _children(parent: int) -> dict[int, int]:
    """--process-id -> pid of the `zoo` processes ``parent`` started."""
    found = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            ppid = int(next(line.split()[1] for line in status.read_text().splitlines() if line.startswith("PPid:")))
            argv = (status.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, StopIteration, ValueError):
            continue
        if ppid == parent and b"--process-id" in argv:
            found[int(argv[argv.index(b"--process-id") + 1])] = int(status.parent.name)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


AGREE = """
import sys
from zoo.compute import multihost
from zoo.errors import ZooError

port, index, digest = sys.argv[1:]
multihost.start(multihost.cluster(f"127.0.0.1:{port}", 2, int(index), 10))
try:
    multihost.agree("weights digest", digest)
    print("agreed")
except ZooError as exc:
    print(f"Error: {exc}")
multihost.finish()
"""


@pytest.mark.slow
@pytest.mark.parametrize("digests, outcome", [
    (("abc", "abc"), "agreed"),
    (("abc", "abd"), ("Error: the processes ended training with different weights digest "
                      "(process 0: abc, process 1: abd)")),
])
def test_processes_compare_their_final_weights(digests, outcome, tmp_path):
    """The digest check at the end of a run of several processes, through JAX's coordination
    service: equal digests pass, a difference is the same one-line error on every process."""
    port = free_port()
    procs = [subprocess.Popen([sys.executable, "-c", AGREE, str(port), str(i), digest], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=ENV) for i, digest in enumerate(digests)]
    try:
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for (stdout, stderr), p in zip(outputs, procs):
        assert p.returncode == 0, stderr[-2000:]
        assert stdout.strip().splitlines() == [outcome]
