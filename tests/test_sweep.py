"""Sweeps across processes and machines: the plan, shards, skipping, concurrent records, Ray.

The trainings are real (the tiny TFDS dataset through `zoo bench` in subprocesses, as a scheduler
would start them); the Ray tests start a local cluster on 127.0.0.1 through the zoo, bounded in time, and
check that no Ray process of theirs is left afterwards.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import warm
from click.testing import CliRunner
from test_bench import records

from zoo.benchmark import child, reports
from zoo.benchmark import jobs as bench_jobs
from zoo.benchmark import records as bench_records
from zoo.cli import main
from zoo.errors import ZooUsageError

SWEEP = ["softmax", "mlp", "--seeds", "0,1", "--dataset", "zoo_tiny", "--epochs", "1", "--precision", "float32"]


def zoo_bench(*args: str, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    return warm.run([sys.executable, "-m", "zoo", "bench", *args],
                      env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}, timeout=timeout)


# A shard that registers zoo_tiny itself (as a dataset plugin would), so that it can prepare it in
# a fresh data folder, as a shard's first run on a new node does.
TINY_BENCH = "import sys, tinydata; from zoo.cli import main; sys.exit(main())"


def start_bench(*args: str, env: dict | None = None, tiny: bool = False) -> subprocess.Popen:
    """`zoo bench ARGS` started; ``tiny``: in a process that registers zoo_tiny (TINY_BENCH)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    command = [sys.executable, "-m", "zoo"]
    if tiny:
        command = [sys.executable, "-c", TINY_BENCH]
        env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    return subprocess.Popen([*command, "bench", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def accuracies(out: Path) -> dict[tuple[str, int], tuple[float, float]]:
    """(model, seed) -> test accuracy and loss of the successful records; each job recorded once."""
    ok = [r for r in records(out) if r["status"] == "ok"]
    found = {(r["model"], r["seed"]): (r["test_accuracy"], r["test_loss"]) for r in ok}
    assert len(found) == len(ok), f"a job is recorded twice: {[(r['model'], r['seed']) for r in ok]}"
    return found


# -- the plan and its shards -------------------------------------------------------------------


def test_shards_deal_the_plan_like_cards():
    for count in range(1, 6):
        shards = [bench_jobs.Shard(i, count) for i in range(1, count + 1)]
        owners = [[s.index for s in shards if s.holds(j)] for j in range(1, 12)]
        assert all(len(o) == 1 for o in owners)  # every job in exactly one shard
        assert [o[0] for o in owners] == [(j - 1) % count + 1 for j in range(1, 12)]
    assert bench_jobs.parse_shard(" 2 / 3 ") == bench_jobs.Shard(2, 3) and str(bench_jobs.Shard(2, 3)) == "2/3"


@pytest.mark.parametrize("text", ["3/2", "0/2", "x", "1/0", "-1/2", "1/2/3", "", "1.5/2"])
def test_a_bad_shard_is_one_usage_error(text):
    with pytest.raises(ZooUsageError, match=r"`shard` expects I/N, shard I of N with 1 <= I <= N"):
        bench_jobs.parse_shard(text)


def plan(out, models=("softmax", "mlp"), seeds=(0, 1), **options):
    return bench_jobs.sweep_jobs(list(models), seeds=list(seeds), out=out, hparams={},
                      options={"dataset": "mnist", "epochs": 1, **options})


def test_the_plan_is_numbered_and_names_jobs_by_what_they_train(tmp_path):
    jobs = plan(tmp_path, data_dir="/here")
    assert [(j.index, j.label, j.variant) for j in jobs] == [
        (1, "softmax seed 0", "epochs=1"), (2, "softmax seed 1", "epochs=1"),
        (3, "mlp seed 0", "epochs=1"), (4, "mlp seed 1", "epochs=1")]
    # Another node: its own data folders, later in time, the same plan and run directories.
    elsewhere = plan(tmp_path, data_dir="/there", manual_dir="/files")
    assert [(j.key, j.run_dir) for j in elsewhere] == [(j.key, j.run_dir) for j in jobs]
    assert len({j.run_dir for j in jobs}) == 4 and jobs[0].run_dir.name == f"softmax-seed0-{jobs[0].key[:8]}"
    assert bench_jobs.fingerprint([j.key for j in jobs]) == bench_jobs.fingerprint([j.key for j in elsewhere])
    # What a job trains is its identity: any other setting is another job.
    assert plan(tmp_path, seeds=(0, 0, 1)) == plan(tmp_path)  # a seed given twice is one job
    assert not {j.key for j in plan(tmp_path, batch_size=64)} & {j.key for j in jobs}
    assert not {j.key for j in plan(tmp_path, seeds=(2,))} & {j.key for j in jobs}
    assert plan(tmp_path, batch_size=64)[0].variant == "epochs=1 batch_size=64"
    assert [j.label for j in plan(tmp_path, models=("*m*",))] == [
        "mlp seed 0", "mlp seed 1", "softmax seed 0", "softmax seed 1"]  # a pattern's matches sorted


def rec(key, status="ok", **extra):
    return {"job": key, "status": status, "model": "m", "seed": 0, "log": f"/logs/{key}.log", **extra}


def test_a_failed_job_is_not_done_until_it_succeeds(tmp_path):
    jobs = plan(tmp_path)
    k1, k2, k3, _ = (j.key for j in jobs)
    found = bench_records.states([rec(k1), rec(k2, "failed"), rec(k3, "failed"), rec(k3), rec(k1, "failed"),
                          {"model": "from before sweeps"}])
    assert found == {k1: "recorded", k2: "failed", k3: "recorded"}
    out = tmp_path / "out"
    out.mkdir()
    for r in (rec(k1), rec(k2, "failed"), rec(k3, "failed"), rec(k3)):
        (out / "results.jsonl").open("a").write(json.dumps(r) + "\n")
    selection = bench_records.select(jobs, out, bench_jobs.Shard(2, 2))
    assert [j.index for j in selection.mine] == [2, 4] and [j.index for j in selection.todo] == [2, 4]
    assert [j.index for j in bench_records.select(jobs, out).todo] == [2, 4]
    bench_records.write_plan(out, selection.fingerprint, jobs)
    (line,) = bench_records.status(out, records(out))
    assert line == (f"sweep {selection.fingerprint}: 2 of 4 jobs recorded; failed: #2 softmax seed 1 "
                    f"(log: /logs/{k2}.log); not recorded (yet): #4 mlp seed 1")


def test_a_job_whose_run_finished_before_a_kill_is_measured_without_training_again(tiny_data_dir, tmp_path):
    from zoo.plan import resolve_config
    from zoo.training import runner

    out = tmp_path / "out"
    (job,) = bench_jobs.sweep_jobs(["softmax"], seeds=[0], out=out, hparams={},
                        options={"dataset": "zoo_tiny", "data_dir": tiny_data_dir, "epochs": 1})
    runner.train(resolve_config(job.config, job.run_dir), verbose=0)  # trained, then killed before its export
    history = (job.run_dir / "history.csv").stat().st_mtime_ns
    record = child.attempt(job, out)
    assert record["status"] == "ok" and record["job"] == job.key and record["run_dir"] == str(job.run_dir)
    assert (job.run_dir / "history.csv").stat().st_mtime_ns == history and record["peak_rss_mb"] is None
    assert record["export_dir"] == str(out / "exports" / job.run_dir.name / "1")


# -- bad input: one line, exit 2 or 1, nothing in --out ------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--shard", "3/2"], "--shard expects I/N, shard I of N with 1 <= I <= N, received '3/2'"),
    (["--shard", "0/2"], "--shard expects I/N"),
    (["--shard", "x"], "--shard expects I/N"),
    (["--gpus-per-job", "1"], "--gpus-per-job needs --ray"),
    (["--cpus-per-job", "0"], "0 is not in the range x>=1"),
    (["--gpus-per-job", "-1", "--ray"], "-1.0 is not in the range x>=0"),
    (["--ray", "not an address"], "--ray expects a Ray address (HOST:PORT, ray://HOST:PORT or auto)"),
    (["--from-runs", "r", "--shard", "1/2"], "--plan, --shard and --ray are for training sweeps"),
    (["--report", "r"], "--report rebuilds a folder's reports from its records; give nothing else with it (MODELS, --out)"),
])
def test_bench_sweep_bad_input(tmp_path, args, message):
    models = [] if "--from-runs" in args else ["softmax"]
    result = CliRunner().invoke(main, ["bench", *models, *args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_second_run_after_one_from_runs_is_told_to_repeat_the_flag(tmp_path):
    for name in ("r1", "r2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
    result = CliRunner().invoke(main, ["bench", "--from-runs", str(tmp_path / "r1"), str(tmp_path / "r2"),
                                       "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and result.stderr.strip().splitlines() == [
        f"Error: {tmp_path / 'r2'} is a run directory given as a MODEL: repeat --from-runs for each run "
        f"(--from-runs A --from-runs B)"]
    assert not (tmp_path / "out").exists()


def test_report_of_a_folder_without_records(tmp_path):
    result = CliRunner().invoke(main, ["bench", "--report", str(tmp_path)])
    assert result.exit_code == 2 and f"{tmp_path} holds no benchmark records (no results.jsonl)" in result.stderr
    result = CliRunner().invoke(main, ["bench", "--report", str(tmp_path), "--epochs", "2"])
    assert result.exit_code == 2 and "give nothing else with it (--epochs)" in result.stderr


def test_plan_prints_the_jobs_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["bench", *SWEEP, "--shard", "2/2", "--plan", "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    jobs = plan(out, dataset="zoo_tiny", precision="float32")
    assert lines[0] == f"sweep {bench_jobs.fingerprint([j.key for j in jobs])}: 4 job(s); shard 2/2: 2 of them; --out {out}"
    assert lines[1].split() == ["#", "MODEL", "SEED", "VARIANT", "STATUS", "RUN", "DIRECTORY"]
    assert [line.split() for line in lines[2:]] == [
        ["2", "softmax", "1", "epochs=1", "to", "run", str(jobs[1].run_dir)],
        ["4", "mlp", "1", "epochs=1", "to", "run", str(jobs[3].run_dir)]]
    assert not out.exists()


# -- concurrent writers --------------------------------------------------------------------------

SAVER = """
import json, sys
from pathlib import Path
from zoo.benchmark import reports
out, tag, count, pad = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
record = json.loads(sys.argv[5])
for i in range(count):
    reports.save(out, {**record, "job": f"{tag}-{i}", "writer": tag, "i": i, "pad": tag * pad})
"""


def save_concurrently(out: Path, writers: str, count: int, pad: int, record: dict) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", SAVER, str(out), tag, str(count), str(pad), json.dumps(record)],
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}) for tag in writers]
    assert [p.wait(timeout=300) for p in procs] == [0] * len(writers)


def test_four_processes_recording_at_once_lose_and_mix_nothing(tmp_path):
    # Failed records: appended under the lock like any other, with nothing to draw.
    save_concurrently(tmp_path, "abcd", 100, 10000, {"status": "failed"})
    recs = records(tmp_path)  # every line parses: none was torn or interleaved
    for tag in "abcd":
        assert [r["i"] for r in recs if r["writer"] == tag] == list(range(100))
    assert all(r["pad"] == r["writer"] * 10000 for r in recs)


@pytest.mark.slow  # three processes that import the reports (matplotlib): 8 s alone, 12 s beside another worker
def test_reports_rebuilt_by_concurrent_shards_hold_every_record(tmp_path):
    # Each process rebuilds the reports after every record, under the lock: the last rebuild
    # cannot be an older view of the records than another shard's.
    env = {"python": "3", "tensorflow": "2", "keras": "3", "tensorflow_datasets": "4", "cpu": "cpu", "cores": 2}
    record = {"status": "ok", "model": "m", "dataset": "d", "epochs": 1, "batch_size": 8, "seed": 0,
              "test_accuracy": 0.9, "params": 10, "flops_per_example": 20, "peak_rss_mb": None,
              "splits": {"train": "train"}, "env": env, **{k: 1.0 for k in reports._MEANS},
              "hparams_set": {}, "recipe_changed": {}, "input": {"train": "memory", "evaluation": "memory"},
              "hardware": {"precision": "float32", "device_kind": "CPU", "replicas": 1, "backend": "tensorflow"}}
    save_concurrently(tmp_path, "abc", 4, 10, record)
    with (tmp_path / "results.csv").open() as f:
        assert sorted(row["job"] for row in csv.DictReader(f)) == sorted(f"{t}-{i}" for t in "abc" for i in range(4))
    assert "| 1 | m | float32, CPU, memory | d | 1 | 12 |" in (tmp_path / "results.md").read_text()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


# -- real sweeps: plainly, as concurrent shards, killed and run again, on Ray ---------------------


# One xdist worker runs the tests of the module fixture `plain` (4 trainings, made once) and the
# tests that start a local Ray cluster of all this machine's CPUs (one cluster at a time).
SWEEPS = pytest.mark.xdist_group("sweeps")
# The first test to ask for `plain` pays for it too.
PLAIN_LIMIT = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def plain(tiny_data_dir, tmp_path_factory) -> dict[tuple[str, int], tuple[float, float]]:
    """The 2-model x 2-seed sweep run plainly, one job after another: (model, seed) -> accuracy
    and loss."""
    out = tmp_path_factory.mktemp("plain")
    result = zoo_bench(*SWEEP, "--out", str(out), "--data-dir", tiny_data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    for r in records(out):
        assert r["where"]["shard"] is None and r["where"]["ray"] is None and r["where"]["tf_threads"] == [0, 0]
        assert r["where"]["measure_tf_threads"] == [0, 0]  # without --cpus-per-job: TensorFlow's default
    found = accuracies(out)
    assert sorted(found) == [("mlp", 0), ("mlp", 1), ("softmax", 0), ("softmax", 1)]
    return found


@pytest.mark.slow
@SWEEPS
@PLAIN_LIMIT
def test_concurrent_shards_into_one_out_equal_the_plain_sweep(plain, tmp_path):
    out = tmp_path / "out"
    # A fresh data folder: the two shards start together and take turns to prepare zoo_tiny
    # (which they register themselves, as a dataset plugin would).
    args = [*SWEEP, "--out", str(out), "--data-dir", str(tmp_path / "tfds")]
    shards = [start_bench(*args, "--shard", f"{i}/2", tiny=True) for i in (1, 2)]
    for proc in shards:
        _, stderr = proc.communicate(timeout=900)
        assert proc.returncode == 0, stderr[-3000:]
    assert accuracies(out) == plain
    recs = records(out)
    for r in recs:
        assert r["where"]["shard"] == f"{(r['plan']['index'] - 1) % 2 + 1}/2" and r["where"]["host"]
        assert r["plan"]["jobs"] == 4 and len(r["job"]) == 16
    assert len({r["run_dir"] for r in recs}) == 4 and len({r["plan"]["fingerprint"] for r in recs}) == 1

    # Run again, a shard finds its jobs recorded and trains nothing.
    again = zoo_bench(*args, "--shard", "2/2")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "shard 2/2: 2; 2 already recorded in" in again.stderr and "nothing to run" in again.stderr
    assert len(records(out)) == 4

    # The reports, rebuilt from every shard's records.
    (out / "results.csv").unlink()
    report = zoo_bench("--report", str(out))
    assert report.returncode == 0, report.stderr[-3000:]
    with (out / "results.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 4
    assert "| softmax | float32, CPU, memory | zoo_tiny | 1 | 2 |" in report.stdout
    assert "sweep " not in (out / "results.md").read_text()  # complete: no missing or failed jobs


@pytest.mark.slow
@SWEEPS
@PLAIN_LIMIT
def test_a_shard_killed_midway_and_run_again_records_every_job_once(plain, tiny_data_dir, tmp_path):
    out = tmp_path / "out"
    args = [*SWEEP, "--out", str(out), "--data-dir", tiny_data_dir, "--shard", "1/2"]
    planned = plan(out, dataset="zoo_tiny", data_dir=tiny_data_dir, precision="float32")
    jobs = bench_records.select(planned, out, bench_jobs.Shard(1, 2)).mine
    assert [j.label for j in jobs] == ["softmax seed 0", "mlp seed 0"]
    second = jobs[1].run_dir
    shard = start_bench(*args)
    try:
        # Midway: the first job recorded, the second one training (its run is locked by its process).
        deadline = time.monotonic() + 600
        while not ((second / "config.json").is_file() and (second / ".lock").read_text().strip()):
            assert shard.poll() is None and time.monotonic() < deadline, shard.communicate()[1][-3000:]
            time.sleep(0.05)
        trainer = int((second / ".lock").read_text().split()[1])  # "process 4711 on host"
        shard.kill()  # SIGKILL to the shard alone, not its process group
        shard.communicate(timeout=60)
    finally:
        shard.kill()
    assert not (second / "metrics.json").exists()  # killed while training
    assert [r["model"] for r in records(out)] == ["softmax"]
    deadline = time.monotonic() + 10
    while Path(f"/proc/{trainer}").exists():  # the training died with the shard that started it
        assert time.monotonic() < deadline, f"training process {trainer} outlived its killed shard"
        time.sleep(0.05)

    again = zoo_bench(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "1 already recorded in" in again.stderr
    found = accuracies(out)  # no job twice, none missing
    assert found == {k: v for k, v in plain.items() if k[1] == 0}


# -- a job killed after an epoch, run again: it resumes, exactly ---------------------------------

# mlp (dropout: its random generators' state is part of the backup) on zoo_tiny, two epochs; small
# batches, so an epoch is a dozen steps rather than two.
RESUMED = {"dataset": "zoo_tiny", "epochs": 2, "batch_size": 16, "precision": "float32"}
RESUMED_ARGS = ["mlp", *(f"--{k.replace('_', '-')}={v}" for k, v in RESUMED.items())]
# --cpus-per-job for these sweeps: neither default (TensorFlow's 0 without Ray, 1 on Ray) where the
# machine has two cores, and never more than it has.
THREADS = min(2, os.cpu_count() or 1)
HISTORY_VALUES = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")


def history(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "history.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def weights_digest(run_dir: Path) -> str:
    from zoo.runs import Run
    from zoo.training import runner

    return runner.weights_digest(Run(run_dir).model())


@pytest.fixture(scope="module")
def whole(tiny_data_dir, tmp_path_factory) -> dict:
    """mlp seed 0 of RESUMED trained without interruption as a sweep trains a job (in a child
    process, --cpus-per-job THREADS): its record, history and weights digest."""
    out = tmp_path_factory.mktemp("whole")
    (job,) = bench_jobs.sweep_jobs(["mlp"], seeds=[0], out=out, hparams={},
                                   options={**RESUMED, "data_dir": tiny_data_dir})
    record = child.attempt(job, out, threads=THREADS)
    assert record["status"] == "ok", record
    assert record["where"]["tf_threads"] == [THREADS, THREADS]
    return {**record, "history": history(job.run_dir), "digest": weights_digest(job.run_dir)}


def training_pid(run_dir: Path, starter: subprocess.Popen, deadline: float) -> int:
    """The process training ``run_dir``, once it holds the run's lock ("process 4711 on host")."""
    lock = run_dir / ".lock"
    while not (lock.is_file() and lock.read_text().strip()):
        assert starter.poll() is None and time.monotonic() < deadline, starter.communicate()[1][-3000:]
        time.sleep(0.02)
    return int(lock.read_text().split()[1])


def gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie has: only its exit status is left)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def stopped_after_its_first_epoch(pid: int, run_dir: Path, deadline: float) -> list[dict[str, str]]:
    """Leave the training process ``pid`` stopped (SIGSTOP) right after its first epoch's backup;
    return history.csv as it is then.

    An epoch of zoo_tiny takes tens of milliseconds, less than polling can be sure to catch under
    load. So the process runs in slices of about 5 ms, stopped while the backup is looked for: it
    is caught within a slice of writing the first backup, long before a second could follow."""
    state = run_dir / "backup" / "state.json"
    while True:
        os.kill(pid, signal.SIGSTOP)
        while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
            time.sleep(0.001)
        if state.is_file():
            break
        assert time.monotonic() < deadline, f"no backup in {run_dir} in time"
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.005)
    assert json.loads(state.read_text())["epoch"] == 1, "stopped after its second epoch, not its first"
    return history(run_dir)


def assert_resumed_exactly(run_dir: Path, before: list[dict[str, str]], record: dict, whole: dict) -> None:
    """The run killed with ``before`` as its history went on from its backup: epoch 1 not trained
    again, and the result the uninterrupted job's, to the last bit of every weight."""
    assert [r["epoch"] for r in before] == ["1"]  # killed after its first epoch, before the second
    after = history(run_dir)
    assert [r["epoch"] for r in after] == ["1", "2"]  # each epoch once
    assert after[0] == before[0]  # the same row, timings and all: not trained again
    log = (run_dir.parents[1] / "logs" / f"{run_dir.name}.log").read_text()  # the last training's
    assert "Epoch 2/2" in log and "Epoch 1/2" not in log  # which started at the second epoch
    assert [[r[k] for k in HISTORY_VALUES] for r in after] == [[r[k] for k in HISTORY_VALUES] for r in whole["history"]]
    assert (record["test_accuracy"], record["test_loss"]) == (whole["test_accuracy"], whole["test_loss"])
    assert weights_digest(run_dir) == whole["digest"]


@pytest.mark.slow
@SWEEPS
def test_a_job_killed_after_an_epoch_resumes_exactly_when_its_shard_runs_again(whole, tmp_path):
    out = tmp_path / "out"
    args = [*RESUMED_ARGS, "--seeds", "1,2,0", "--shard", "1/2", "--cpus-per-job", str(THREADS),
            "--data-dir", str(tmp_path / "tfds"), "--out", str(out)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-c", TINY_BENCH, "bench", *args]
    planned = bench_jobs.sweep_jobs(["mlp"], seeds=[1, 2, 0], out=out, hparams={}, options=RESUMED)
    first, killed = bench_records.select(planned, out, bench_jobs.Shard(1, 2)).mine
    assert (first.label, killed.label) == ("mlp seed 1", "mlp seed 0") and killed.key == whole["job"]
    shard = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 600
        trainer = training_pid(killed.run_dir, shard, deadline)  # the shard's second job
        before = stopped_after_its_first_epoch(trainer, killed.run_dir, deadline)
        os.kill(trainer, signal.SIGKILL)  # the job's training alone, as the OOM killer would
        _, stderr = shard.communicate(timeout=300)
    finally:
        shard.kill()
    assert shard.returncode == 1, stderr[-3000:]
    assert stderr.splitlines()[-1].startswith(
        "Error: 1 of 2 job(s) failed, first mlp seed 0: mlp seed 0: training failed (killed by SIGKILL); log: ")
    (done,) = [r for r in records(out) if r["status"] == "ok"]
    assert done["seed"] == 1
    # --cpus-per-job: the training process's pools, and those of the shard that measured the
    # export, which prepared the data first (TensorFlow refuses new pool sizes once started).
    assert done["where"]["threads"] == THREADS and done["where"]["shard"] == "1/2"
    assert done["where"]["tf_threads"] == done["where"]["measure_tf_threads"] == [THREADS, THREADS]

    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "1 already recorded in" in again.stderr
    assert sorted(accuracies(out)) == [("mlp", 0), ("mlp", 1)]  # each job recorded once
    (resumed,) = [r for r in records(out) if r["status"] == "ok" and r["seed"] == 0]
    assert_resumed_exactly(killed.run_dir, before, resumed, whole)
    assert resumed["where"]["tf_threads"] == resumed["where"]["measure_tf_threads"] == [THREADS, THREADS]


# -- Ray -----------------------------------------------------------------------------------------


@pytest.fixture
def ray_env():
    """Environment for a `zoo bench --ray` of this test: its own short Ray temp folder (Unix socket
    paths are limited to 107 bytes), to check that no Ray process is left from it."""
    pytest.importorskip("ray")
    folder = tempfile.mkdtemp(prefix="zr", dir="/tmp")
    yield {"RAY_TMPDIR": folder, "RAY_USAGE_STATS_ENABLED": "0"}
    left = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and folder.encode() in (proc / "cmdline").read_bytes():
                left.append(proc.name)
        except OSError:
            pass
    assert not left, f"Ray processes left running: {left}"
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
@SWEEPS
@PLAIN_LIMIT
def test_a_sweep_on_a_local_ray_cluster_equals_the_plain_sweep(plain, tiny_data_dir, tmp_path, ray_env):
    out = tmp_path / "out"
    result = zoo_bench(*SWEEP, "--out", str(out), "--data-dir", tiny_data_dir, "--ray", env=ray_env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert accuracies(out) == plain
    progress = [line.split(":")[0] for line in result.stderr.splitlines() if line.startswith("[")]
    assert len(progress) == 4 and progress[-1].startswith("[4/4] ")
    nodes = set()
    for r in records(out):
        where = r["where"]
        assert where["ray"]["node_ip"] == "127.0.0.1" and where["pid"] != os.getpid()
        assert where["threads"] == 1 and where["tf_threads"] == [1, 1]  # --cpus-per-job's default
        assert where["measure_tf_threads"] == [1, 1] and where["ray"]["resources"] == {"CPU": 1}
        nodes.add(where["ray"]["node_id"])
    assert len(nodes) == 1


@pytest.mark.integration
@pytest.mark.slow
@SWEEPS
def test_ray_refuses_what_it_cannot_run_in_one_line_writing_nothing(tmp_path, ray_env):
    import tensorflow as tf

    gpus = len(tf.config.list_physical_devices("GPU"))
    out = tmp_path / "out"
    started = time.monotonic()
    # 127.0.0.1 stays 127.0.0.1 (Ray would otherwise put this machine's public address for it).
    unreachable = zoo_bench("softmax", "--ray", "127.0.0.1:1", "--out", str(out), timeout=120,
                            env={**ray_env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
    assert unreachable.returncode == 1 and time.monotonic() - started < 60
    assert unreachable.stderr.splitlines() == [
        "Error: cannot reach the Ray cluster at 127.0.0.1:1: Connection refused"]
    for args, message in (
        # One GPU more than this machine has (Ray counts the GPUs TensorFlow sees), whatever it has.
        (["--gpus-per-job", str(gpus + 1)], f"Error: --gpus-per-job {gpus + 1}: the Ray cluster on this machine has "
                                             + (f"at most {gpus} GPUs on one node" if gpus else "no GPUs")),
        # One CPU more than this machine has, whatever it has.
        (["--cpus-per-job", str(os.cpu_count() + 1)],
         f"Error: --cpus-per-job {os.cpu_count() + 1}: the Ray cluster on this machine has at most "
         f"{os.cpu_count()} CPUs on one node"),
    ):
        result = zoo_bench("softmax", "--ray", *args, "--out", str(out), env=ray_env, timeout=300)
        assert result.returncode == 2 and result.stderr.splitlines() == [message]
    assert not out.exists()


def test_ray_refuses_a_model_registered_in_this_process_before_starting(tiny_data_dir, tmp_path):
    import keras

    import registry
    import zoo

    @zoo.register(name="cellnet")
    def builder(*, input_shape, num_classes):
        inputs = keras.Input(shape=input_shape)
        return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(keras.layers.Flatten()(inputs)))

    try:
        with pytest.raises(ZooUsageError, match=r"model 'cellnet' is registered in this process only \(zoo.register\): "
                                                r"Ray workers cannot import it"):
            zoo.bench("cellnet", seeds=[0], out=tmp_path / "out", dataset="zoo_tiny", data_dir=tiny_data_dir,
                      ray="local")
    finally:
        registry._discovery._LOCAL.pop("cellnet", None)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@SWEEPS
def test_ray_records_a_failed_job_retries_a_lost_one_and_a_rerun_finishes(whole, tiny_data_dir, tmp_path, ray_env):
    out = tmp_path / "out"
    args = [*RESUMED_ARGS, "--data-dir", tiny_data_dir, "--seeds", "0,1,2", "--cpus-per-job", str(THREADS),
            "--out", str(out), "--ray"]
    lost, _, broken = bench_jobs.sweep_jobs(["mlp"], seeds=[0, 1, 2], out=out, hparams={}, options=RESUMED)
    assert lost.key == whole["job"]
    broken.run_dir.mkdir(parents=True)
    (broken.run_dir / "config.json").write_text("{")  # a run directory nobody can resume
    driver = start_bench(*args, env=ray_env)
    try:
        job_file = out / "jobs" / f"{lost.run_dir.name}.json"
        deadline = time.monotonic() + 300
        while not job_file.is_file():  # the worker hands the job to its training process
            assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()[1][-3000:]
            time.sleep(0.02)
        worker = json.loads(job_file.read_text())["parent"]
        trainer = training_pid(lost.run_dir, driver, deadline)
        before = stopped_after_its_first_epoch(trainer, lost.run_dir, deadline)
        os.kill(worker, signal.SIGKILL)  # the worker is lost, with the training it started
        _, stderr = driver.communicate(timeout=600)
    finally:
        driver.kill()
    assert gone(trainer)  # the training died with its worker
    assert driver.returncode == 1
    assert stderr.splitlines()[-1].startswith(
        "Error: 1 of 3 job(s) failed, first mlp seed 2: mlp seed 2: training failed (Error: ")
    assert "is corrupted or not a zoo config" in stderr.splitlines()[-1]
    recs = records(out)
    assert sorted((r["seed"], r["status"]) for r in recs) == [(0, "ok"), (1, "ok"), (2, "failed")]
    (retried,) = [r for r in recs if r["seed"] == 0]
    assert retried["where"]["pid"] != worker  # run again, in another worker
    assert_resumed_exactly(lost.run_dir, before, retried, whole)  # from the lost one's backup
    for r in recs:  # each task reserved --cpus-per-job CPUs, and its TensorFlow pools are that big
        assert r["where"]["threads"] == THREADS and r["where"]["ray"]["resources"] == {"CPU": THREADS}
        if r["status"] == "ok":
            assert r["where"]["tf_threads"] == r["where"]["measure_tf_threads"] == [THREADS, THREADS]
    (failed,) = [r for r in recs if r["status"] == "failed"]
    assert failed["where"]["ray"]["node_ip"] == "127.0.0.1" and failed["run_dir"] == str(broken.run_dir)
    assert "is corrupted or not a zoo config" in Path(failed["log"]).read_text()
    assert f"failed: #3 mlp seed 2 (log: {failed['log']})" in (out / "results.md").read_text()

    # The broken run moved out of the way, the same command runs the failed job alone.
    broken.run_dir.rename(tmp_path / "broken")
    again = zoo_bench(*args, env=ray_env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 already recorded in" in again.stderr
    assert sorted(accuracies(out)) == [("mlp", 0), ("mlp", 1), ("mlp", 2)]
    assert "failed:" not in (out / "results.md").read_text()


# -- the example files: their commands as a scheduler would run them, with --plan ------------------

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.slow
def test_the_slurm_example_runs_its_shard_of_the_plan(tmp_path):
    script = (EXAMPLES / "slurm" / "sweep.sbatch").read_text()
    assert "#SBATCH --array=0-7" in script and "SHARDS=${SHARDS:-8}" in script
    script = script.replace("\nzoo bench ", "\nzoo bench --plan ")
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "2", "SLURM_CPUS_PER_TASK": "2", "VENV": str(Path(sys.prefix)),
           "OUT": str(tmp_path / "out"), "DATA": str(tmp_path / "data"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[0].endswith(f"9 job(s); shard 3/8: 1 of them; --out {tmp_path / 'out'}")
    assert result.stdout.splitlines()[2].split()[:3] == ["3", "softmax", "2"]


@pytest.mark.slow
def test_the_kubernetes_example_runs_its_shard_of_the_plan():
    yaml = pytest.importorskip("yaml")
    job = yaml.safe_load((EXAMPLES / "kubernetes" / "sweep-job.yaml").read_text())
    assert job["spec"]["completionMode"] == "Indexed"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    command = container["args"][0]
    assert f"/{job['spec']['completions']}\"" in command  # N is the number of completions
    zoo = Path(sys.executable).with_name("zoo")
    command = command.replace("zoo bench ", f"{zoo} bench --plan ", 1)
    result = subprocess.run([*container["command"], command], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "JOB_COMPLETION_INDEX": "7", "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "9 job(s); shard 8/8: 1 of them; --out /shared/bench/mnist" in result.stdout
    assert result.stdout.splitlines()[2].split()[:3] == ["8", "cnn", "1"]


def test_a_pattern_leaves_out_a_broken_model_and_says_so(tmp_path, monkeypatch):
    from zoo.benchmark import sweep
    from zoo.export.request import SAVED_MODEL_ONLY

    info = tmp_path / "zoo_half_broken-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-half-broken\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[zoo.models]\nbrokenx = zoo_no_such_module:build\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    said: list[str] = []
    jobs = sweep.training_jobs(["*"], seeds=[0], out=tmp_path / "out", hparams={}, options={},
                               export=SAVED_MODEL_ONLY, say=said.append)
    assert "brokenx" not in {job.config.model for job in jobs} and {"softmax", "mlp", "cnn"} <= {
        job.config.model for job in jobs}
    (note,) = [line for line in said if "brokenx" in line]
    assert note.startswith("note: brokenx is left out, broken: ") and note.endswith("(zoo info brokenx)")
    assert "zoo_no_such_module" in note
