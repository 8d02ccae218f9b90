"""Files written before the zoo's files carried a format version (tests/fixtures/format-v0, made
by scripts/make_format_fixtures.py at commit 569b3be) still read, evaluate, export, resume and
report, with the values they recorded.

Each test works on a copy in tmp_path (the tracked fixtures are never changed) whose recorded
data folder is rewritten to this session's prepared ``zoo_tiny`` (see the fixtures' README). The
commands run as ``python -m zoo`` in a subprocess, as a user runs them, except where the Python
API is the subject.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import warm

import zoo
import zoo.plan
from zoo import Run, formats
from zoo.benchmark import records as bench_records
from zoo.benchmark import reports

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "format-v0"

# What the fixtures recorded (README.md there): a fixture made again would have to match these.
TRAIN = ["train", "mlp", "--hp", "units=8,8,8", "--dataset", "zoo_tiny", "--epochs", "3",
         "--batch-size", "32", "--learning-rate", "0.01", "--precision", "float32", "--seed", "0"]
BENCH = ["bench", "softmax", "--dataset", "zoo_tiny", "--epochs", "1", "--seeds", "0",
         "--learning-rate", "0.05", "--batch-size", "32", "--precision", "float32"]
TEST_ACCURACY = 0.6666666865348816  # 40 of the 60 test images, as float32 reports it
TEST_LOSS = 0.8131207823753357
VAL_ACCURACY = 0.65  # 13 of the 20 validation images (train[90%:]), after the last epoch
PARAMS = 691
HISTORY = [  # finished/history.csv without its timings, read as the zoo reads it: epochs from 1
    {"epoch": 1, "loss": 1.05861, "accuracy": 0.455556, "val_loss": 0.979679, "val_accuracy": 0.65,
     "learning_rate": 0.01},
    {"epoch": 2, "loss": 0.919334, "accuracy": 0.533333, "val_loss": 0.865002, "val_accuracy": 0.65,
     "learning_rate": 0.0075},
    {"epoch": 3, "loss": 0.855112, "accuracy": 0.555556, "val_loss": 0.839963, "val_accuracy": 0.65,
     "learning_rate": 0.0025},
]
FILE_EPOCHS = ["0", "1", "2"]  # what finished/history.csv holds: format 0 counted epochs from 0
LOSS_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")
BENCH_JOB, BENCH_PLAN, BENCH_ACCURACY = "9e6e56078fbd1783", "ff8e04ed3a12", 1.0
ZOO_JSON_KEYS = {"model", "precision", "dataset", "input_shape", "class_names", "run_dir", "zoo_version",
                 "verified_tolerance"}


def old(kind: str, tmp_path: Path, data_dir: str | None = None) -> Path:
    """A copy of fixture folder ``kind`` whose runs read the data from ``data_dir`` (None: as
    recorded). Every test works on a copy: a reader must never change the tracked files."""
    copy = tmp_path / kind
    shutil.copytree(FIXTURES / kind, copy)
    for config in copy.rglob("config.json") if data_dir is not None else ():
        record = json.loads(config.read_text())
        assert record["config"]["data_dir"].startswith("/tmp/zoo-format-v0-")  # as made
        record["config"]["data_dir"] = data_dir
        config.write_text(json.dumps(record, indent=2) + "\n")
    return copy


def run_zoo(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    env.pop("TFDS_DATA_DIR", None)
    proc = warm.run([sys.executable, "-m", "zoo", *map(str, args)], env=env, timeout=timeout)
    assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_old_runs_read_through_run_open(tmp_path):
    """config.json, metrics.json, history.csv, eval-test.json and the backup, as the zoo reads them."""
    finished = Run.open(old("finished", tmp_path))
    config = finished.config
    assert (config.model, config.dataset, config.epochs, config.batch_size, config.learning_rate) == (
        "mlp", "zoo_tiny", 3, 32, 0.01)
    assert (config.optimizer, config.schedule, config.precision, config.input, config.devices) == (
        "adam", "cosine", "float32", "memory", "cpu:0")
    assert list(config.hparams["units"]) == [8, 8, 8] and config.seed == 0 and config.backend == "tensorflow"
    assert finished.record["model"]["hparams_resolved"] == {"units": [8, 8, 8], "dropout": 0.2}
    assert finished.record["model"]["distribution"] == "keras-zoo"
    assert finished.dataset["name"] == "zoo_tiny" and finished.dataset["test_split"] == "test"
    assert finished.dataset["class_names"] == ["0", "1", "2"] and finished.dataset["num_test"] == 60
    assert zoo.plan.recorded_backend(finished.path) == "tensorflow"
    assert finished.complete and finished.model_path().name == "model.keras"
    metrics = finished.metrics
    assert metrics["test_accuracy"] == TEST_ACCURACY and metrics["test_loss"] == TEST_LOSS
    assert (metrics["params"], metrics["epochs"], metrics["model"]) == (PARAMS, 3, "mlp")
    assert metrics["hardware"]["precision"] == "float32" and metrics["input"]["train"] == "memory"
    history = finished.history
    assert [{k: r[k] for k in LOSS_COLUMNS} for r in history] == HISTORY  # counted from 1, as the console
    assert [r["epoch"] for r in rows(finished.path / "history.csv")] == FILE_EPOCHS  # reading changes no file
    assert finished.summary()["epochs"] == 3
    assert all(r["train_seconds"] > 0 and r["examples_per_second"] > 0 for r in history)
    assert finished.read_json("eval-test.json") == {
        "split": "test", "loss": pytest.approx(TEST_LOSS, rel=1e-6), "accuracy": TEST_ACCURACY}

    (finished.path / "model.keras").rename(tmp_path / "elsewhere.keras")
    with pytest.raises(zoo.ZooUsageError, match=r"has no model.keras \(the run finished: it was moved or deleted since\)"):
        finished.model_path()
    interrupted = Run.open(old("interrupted", tmp_path))
    assert not interrupted.complete and interrupted.metrics is None
    assert interrupted.config == config  # the same command
    assert [{k: r[k] for k in LOSS_COLUMNS} for r in interrupted.history] == HISTORY[:1]
    with pytest.raises(zoo.ZooUsageError, match="training did not finish"):
        interrupted.model_path()
    from zoo.training.callbacks import (
        Backup,  # the reader of backup/state.json (imports TensorFlow)
    )

    assert Backup(interrupted.path / "backup").saved_epoch() == 1


@pytest.mark.slow
def test_old_run_evaluates_to_its_recorded_accuracy(tiny_data_dir, tmp_path):
    run = old("finished", tmp_path, tiny_data_dir)
    result = run_zoo("evaluate", run)
    lines = result.stdout.splitlines()
    assert lines[0] == "test: accuracy 0.6667, loss 0.8131", result.stdout  # then per class and the matrix
    assert lines[1].startswith("per class: ") and lines[2].startswith("confusion (rows: true class")
    written = json.loads((run / "eval-test.json").read_text())
    assert written["accuracy"] == pytest.approx(TEST_ACCURACY, abs=1e-7)
    assert written["loss"] == pytest.approx(TEST_LOSS, rel=1e-5)
    assert "trained_on_fingerprint" not in written
    # The Python API, on the validation split: the last epoch's validation accuracy.
    validation = Run.open(run).evaluate("train[90%:]")
    assert validation["accuracy"] == pytest.approx(VAL_ACCURACY, abs=1e-7)
    assert validation["loss"] == pytest.approx(HISTORY[-1]["val_loss"], rel=1e-4)
    assert json.loads((run / "eval-train-90.json").read_text())["accuracy"] == validation["accuracy"]


@pytest.mark.slow
def test_old_run_exports_a_verified_saved_model(tiny_data_dir, tmp_path):
    import numpy as np
    import tensorflow as tf
    import tensorflow_datasets as tfds

    run = old("finished", tmp_path, tiny_data_dir)
    exports = tmp_path / "exports"
    result = run_zoo("export", run, exports)
    assert result.stdout.startswith(f"exported {exports / '1'} (version 1); reloaded and compared on 60 images")
    old_json = json.loads((FIXTURES / "export" / "1" / "assets.extra" / "zoo.json").read_text())
    new_json = json.loads((exports / "1" / "assets.extra" / "zoo.json").read_text())
    assert set(old_json) == ZOO_JSON_KEYS and ZOO_JSON_KEYS <= set(new_json)
    assert {k: new_json[k] for k in ZOO_JSON_KEYS - {"run_dir", "zoo_version"}} == {
        k: old_json[k] for k in ZOO_JSON_KEYS - {"run_dir", "zoo_version"}}
    assert new_json["run_dir"] == str(run) and new_json["zoo_version"] == zoo.__version__
    # Served on the test split, the export scores what the run recorded.
    serve = tf.saved_model.load(str(exports / "1")).signatures["serving_default"]
    images, labels = tfds.as_numpy(tfds.load("zoo_tiny", split="test", data_dir=tiny_data_dir,
                                             as_supervised=True, batch_size=-1))
    predicted = serve(image=tf.constant(images))["class_id"].numpy()
    assert np.mean(predicted == labels) == pytest.approx(TEST_ACCURACY, abs=1e-7)


@pytest.mark.slow
def test_old_interrupted_run_resumes_to_its_final_epoch(tiny_data_dir, tmp_path):
    """Resumed with the same command, the run ends as the same command uninterrupted did."""
    import keras
    import numpy as np

    run = old("interrupted", tmp_path, tiny_data_dir)
    before = rows(run / "history.csv")
    assert [r["epoch"] for r in before] == FILE_EPOCHS[:1]
    config_before = json.loads((run / "config.json").read_text())
    # Another dataset is refused before it is prepared: no MNIST here, and no word of downloading it.
    with pytest.raises(zoo.ZooUsageError, match=r"^`resume` with different settings than run .* \(`dataset`: it trained "
                                                r"on 'zoo_tiny', not 'mnist'\); resume with the same command$"):
        zoo.train("mlp", hparams={"units": (8, 8, 8)}, epochs=3, data_dir=tmp_path / "nothing", run_dir=run, resume=True)
    assert json.loads((run / "config.json").read_text()) == config_before
    result = run_zoo(*TRAIN, "--devices", "cpu", "--data-dir", tiny_data_dir, "--run-dir", run, "--resume")
    assert "test accuracy 0.6667, test loss 0.8131" in result.stdout
    assert "Epoch 2/3" in result.stdout and "Epoch 1/3" not in result.stdout  # went on from epoch 2
    # history.csv and config.json both in the current format: the kept row counts from 1 as well.
    assert json.loads((run / "config.json").read_text())["format_version"] == formats.CURRENT[formats.RUN_CONFIG]
    after = rows(run / "history.csv")
    assert after[:1] == [{**before[0], "epoch": "1"}]  # epoch 1 kept as it was, timings too: not trained again
    assert [r["epoch"] for r in after] == ["1", "2", "3"]
    resumed = Run.open(run)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]  # not shifted twice
    for got, want in zip(resumed.history, HISTORY):
        assert {k: got[k] for k in LOSS_COLUMNS} == pytest.approx(want, rel=1e-4)
    assert resumed.complete and not (run / "backup").exists()
    assert resumed.metrics["epochs"] == 3 and resumed.metrics["params"] == PARAMS
    assert resumed.metrics["test_accuracy"] == pytest.approx(TEST_ACCURACY, abs=1e-7)
    assert resumed.metrics["test_loss"] == pytest.approx(TEST_LOSS, rel=1e-4)
    assert "changes" not in resumed.record  # nothing changed: config.json as it was
    assert resumed.record["config"] == {**config_before["config"], "data_dir": tiny_data_dir}
    weights = [keras.saving.load_model(path / "model.keras", compile=False).get_weights()
               for path in (run, FIXTURES / "finished")]
    assert all(np.allclose(a, b, atol=1e-5) for a, b in zip(*weights))


def test_old_bench_records_read(tmp_path):
    out = old("bench", tmp_path)
    (record,) = bench_records.read_records(out)
    assert record == json.loads((FIXTURES / "bench" / "results.jsonl").read_text())
    assert (record["status"], record["job"], record["model"], record["seed"]) == ("ok", BENCH_JOB, "softmax", 0)
    assert record["test_accuracy"] == BENCH_ACCURACY and record["params"] == 195 and record["epochs"] == 1
    assert record["plan"] == {"fingerprint": BENCH_PLAN, "index": 1, "jobs": 1}
    assert bench_records.states([record]) == {BENCH_JOB: bench_records.RECORDED_STATE}
    assert bench_records.status(out, [record]) == []  # the plan in plans/ is complete
    missing = f"sweep {BENCH_PLAN}: 0 of 1 jobs recorded; not recorded (yet): #1 softmax seed 0"
    assert bench_records.status(out, []) == [missing]
    (row,) = reports.leaderboard([record])
    assert row["model"] == "softmax batch_size=32 learning_rate=0.05"
    assert (row["acc_mean"], row["seeds"], row["hardware"]) == (BENCH_ACCURACY, 1, "float32, CPU, memory")


@pytest.mark.slow
def test_old_bench_folder_reports_again(tmp_path):
    out = old("bench", tmp_path)
    result = run_zoo("bench", "--report", out)
    assert "| 1 | softmax batch_size=32 learning_rate=0.05 | float32, CPU, memory | zoo_tiny | 1 | 1 | " \
           "1.0000 |" in result.stdout
    assert (out / "results.png").is_file()
    old_rows, new_rows = rows(FIXTURES / "bench" / "results.csv"), rows(out / "results.csv")
    assert len(new_rows) == len(old_rows) == 1
    (old_row,), (new_row,) = old_rows, new_rows
    # Every old column with a plain value is unchanged; one holding JSON is now a dotted column per field.
    nested = {k for k, v in old_row.items() if v.startswith("{") or v == "null"}
    assert nested == {"hparams", "hparams_set", "recipe_changed", "dataset_source", "hardware", "input", "where",
                      "plan"}
    assert {k: new_row.get(k) for k in old_row if k not in nested} == {k: old_row[k] for k in old_row if k not in nested}
    assert (new_row["hparams.l2"], new_row["hardware.precision"], new_row["plan.fingerprint"]) == (
        "0.0", "float32", BENCH_PLAN)
    assert (out / "results.jsonl").read_bytes() == (FIXTURES / "bench" / "results.jsonl").read_bytes()


@pytest.mark.slow
def test_old_bench_folder_skips_its_recorded_job(tiny_data_dir, tmp_path):
    """The same sweep into the old folder: its job is recorded, so nothing trains.

    A job's key (zoo.benchmark.jobs.job_key) hashes its whole RunConfig and its model's distribution version:
    a new RunConfig field changes every old key (old folders would train all their jobs again),
    and a new keras-zoo release is a new job by design, shown as "to run" without training.
    """
    out = old("bench", tmp_path)
    plan = run_zoo(*BENCH, "--data-dir", tiny_data_dir, "--out", out, "--plan").stdout
    job = plan.splitlines()[-1]
    assert job.split()[:6] == ["1", "softmax", "0", "epochs=1", "batch_size=32", "learning_rate=0.05"]
    if zoo.__version__ != "0.1.0":  # the version the record names
        assert " to run " in job
        pytest.skip(f"the old record is of keras-zoo 0.1.0, this is {zoo.__version__}: a new job by design")
    assert plan.splitlines()[0] == f"sweep {BENCH_PLAN}: 1 job(s); --out {out}", (
        "the same command no longer plans the recorded job: its key changed (a RunConfig field?)")
    assert " recorded " in job
    result = run_zoo(*BENCH, "--data-dir", tiny_data_dir, "--out", out)
    assert f"sweep {BENCH_PLAN}: 1 job(s); 1 already recorded in {out}, skipped" in result.stderr
    assert "nothing to run" in result.stderr
    assert "1.0000 ± 0.0000" in result.stdout  # the old results.md, printed as it is: nothing ran
    assert (out / "results.jsonl").read_bytes() == (FIXTURES / "bench" / "results.jsonl").read_bytes()
    assert not (out / "exports").exists() and not any(out.glob("runs/*/model.keras"))


@pytest.mark.slow
def test_old_run_benchmarks_from_runs(tiny_data_dir, tmp_path):
    """``zoo bench --from-runs`` reads an old run's config.json, metrics.json and history.csv."""
    run = old("finished", tmp_path, tiny_data_dir)
    out = tmp_path / "bench"
    run_zoo("bench", "--from-runs", run, "--out", out)
    (record,) = bench_records.read_records(out)
    assert record["status"] == "ok" and record["run_dir"] == str(run)
    assert (record["model"], record["dataset"], record["epochs"], record["batch_size"]) == ("mlp", "zoo_tiny", 3, 32)
    assert record["hparams"] == {"units": [8, 8, 8], "dropout": 0.2} and record["hparams_set"] == {"units": [8, 8, 8]}
    assert record["recipe_changed"] == {"batch_size": 32, "learning_rate": 0.01}
    assert (record["test_accuracy"], record["test_loss"], record["params"]) == (TEST_ACCURACY, TEST_LOSS, PARAMS)
    metrics = json.loads((run / "metrics.json").read_text())
    assert record["train_seconds"] == metrics["train_seconds"] and record["hardware"] == metrics["hardware"]


def test_old_zoo_json_keys():
    """assets.extra/zoo.json is written for people and serving tools: nothing in the zoo reads it
    back. Its format-0 keys and values, as the export of finished/ wrote them."""
    record = json.loads((FIXTURES / "export" / "1" / "assets.extra" / "zoo.json").read_text())
    assert set(record) == ZOO_JSON_KEYS
    assert {k: record[k] for k in ZOO_JSON_KEYS - {"run_dir"}} == {
        "model": "mlp", "precision": "float32", "dataset": "zoo_tiny", "input_shape": [8, 8, 1],
        "class_names": ["0", "1", "2"], "zoo_version": "0.1.0", "verified_tolerance": 1e-05}
    assert record["run_dir"].endswith("/finished")
