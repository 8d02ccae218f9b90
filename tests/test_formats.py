"""zoo.formats: every file the zoo writes and reads back carries a format version; older files are
migrated on read (one migration per kind of file), newer ones refused in one line.

The v0 fixtures (tests/fixtures/format-v0, files of the zoo before versions) must read as they
are; hand-made minimal v0 payloads stand for the older shapes that the "runs from before X"
fallbacks used to handle. tests/test_old_formats.py is the acceptance test: it loads, evaluates,
exports and resumes the fixtures.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import warm

import zoo
import zoo.plan
from zoo import Run, formats
from zoo.benchmark import records as bench_records
from zoo.benchmark import reports
from zoo.config import RunConfig
from zoo.errors import ZooError
from zoo.runs import file_kind

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "format-v0"
V0_FILES = {  # every kind of file the fixtures hold, and one of them
    formats.RUN_CONFIG: "finished/config.json",
    formats.RUN_METRICS: "finished/metrics.json",
    formats.RUN_EVAL: "finished/eval-test.json",
    formats.BACKUP_STATE: "interrupted/backup/state.json",
    formats.BENCH_PLAN: "bench/plans/ff8e04ed3a12.json",
    formats.EXPORT: "export/1/assets.extra/zoo.json",
}


def v0(relative: str) -> dict:
    return json.loads((FIXTURES / relative).read_text())


def copy(kind: str, tmp_path: Path) -> Path:
    shutil.copytree(FIXTURES / kind, tmp_path / kind)
    return tmp_path / kind


def test_every_kind_is_at_version_1_with_one_migration_each_but_config_json_at_3():
    """config.json's version 2 is its history.csv's epochs counted from 1; version 3 adds
    fine-tuning's init (older runs: null, nothing frozen)."""
    assert formats.CURRENT == {**{kind: 1 for kind in formats.MIGRATIONS}, formats.RUN_CONFIG: 3}
    assert formats.HISTORY_FROM_1 == 2
    assert set(formats.MIGRATIONS) == {
        formats.RUN_CONFIG, formats.RUN_METRICS, formats.RUN_EVAL, formats.RUN_FAILED, formats.RUN_PRUNED, formats.BACKUP_STATE,
        formats.BENCH_RECORD, formats.BENCH_PLAN, formats.BENCH_JOB, formats.BENCH_PEAK, formats.BENCH_STUDY, formats.EXPORT,
        formats.PRESET, formats.RECIPE}
    older = {"format_version": 2, "config": {"model": "mlp"}}
    assert formats.read(formats.RUN_CONFIG, older, "x") == {"config": {"model": "mlp"}}  # no init: none


def test_stamp_puts_the_version_first_and_read_takes_it_off():
    stamped = formats.stamp(formats.RUN_METRICS, {"b": 1, "a": {"c": 2}, "format_version": 7})
    assert list(stamped) == ["format_version", "b", "a"] and stamped["format_version"] == 1
    payload = {"format_version": 1, "a": {"c": 2}}
    assert formats.read(formats.RUN_METRICS, payload, "metrics.json") == {"a": {"c": 2}}
    assert payload == {"format_version": 1, "a": {"c": 2}}  # the caller's object is left alone


@pytest.mark.parametrize("kind", sorted(V0_FILES))
def test_the_v0_fixtures_migrate_to_what_they_recorded(kind):
    """The fixtures (the last version 0) recorded every key the migrations fill in: they read back
    unchanged, and so again once written in the current format."""
    raw = v0(V0_FILES[kind])
    assert formats.FIELD not in raw
    migrated = formats.read(kind, raw, V0_FILES[kind])
    assert migrated == raw
    assert formats.read(kind, json.loads(json.dumps(formats.stamp(kind, migrated))), "again") == raw


def test_the_v0_bench_records_and_run_files_migrate_to_what_they_recorded(tmp_path):
    out = copy("bench", tmp_path)
    (record,) = bench_records.read_records(out)
    assert record == json.loads((out / "results.jsonl").read_text())
    run = Run.open(next((out / "runs").iterdir()))
    assert run.record == v0(f"bench/runs/{run.path.name}/config.json")
    assert run.metrics == v0(f"bench/runs/{run.path.name}/metrics.json")


# -- hand-made version 0 payloads: the shapes the removed "from before X" branches handled -------

def config_v0(**config_block) -> dict:
    """A config.json as the zoo wrote it before precision, devices, input, hardware, backends,
    recipes and folders were recorded."""
    return {"config": {"model": "mlp", "hparams": {}, "dataset": "mnist", **config_block},
            "model": {"name": "mlp", "distribution": "keras-zoo", "version": "0.0.1",
                      "hparams_resolved": {}},
            "dataset": {"name": "mnist", "test_split": "test"}}


def test_config_v0_from_before_precision_input_devices_and_backend():
    # Was: config.py RunConfig.read's legacy float32/memory; resume_changes' "auto" devices;
    # zoo.plan.recorded_backend's tensorflow; resume_splits' hardware and input (zoo/training/resume.py).
    record = formats.read(formats.RUN_CONFIG, config_v0(), "config.json")
    config = record["config"]
    assert (config["precision"], config["input"], config["devices"], config["backend"]) == (
        "float32", "memory", "auto", "tensorflow")
    assert record["hardware"] == {"precision": "float32", "device_kind": "CPU", "replicas": 1,
                                  "backend": "tensorflow", "processes": 1}
    assert record["input"] == {"train": "memory", "evaluation": "memory", "shuffle_buffer": None}


def test_config_v0_with_an_unresolved_precision_takes_the_hardware_block_s():
    # Was: evaluation.run_precision.
    record = config_v0(precision="auto")
    record["hardware"] = {"precision": "mixed_bfloat16", "device_kind": "CPU", "replicas": 1}
    migrated = formats.read(formats.RUN_CONFIG, record, "config.json")
    assert migrated["config"]["precision"] == "mixed_bfloat16"
    assert migrated["hardware"]["processes"] == 1 and migrated["hardware"]["backend"] == "tensorflow"
    # Version 1 records it resolved: nothing is filled in or resolved there.
    assert formats.read(formats.RUN_CONFIG, formats.stamp(formats.RUN_CONFIG, record),
                        "config.json")["config"]["precision"] == "auto"


def test_config_v0_model_origin_recipe_and_dataset_source():
    # Was: evaluation.load_model's origin, measure._recipe_changed's recipe, dataset.get("source").
    record = formats.read(formats.RUN_CONFIG, config_v0(), "config.json")
    assert record["model"]["origin"] == "entry point" and record["model"]["recipe"] is None
    assert record["dataset"]["source"] is None


def test_config_v0_read_as_a_run(tmp_path):
    """RunConfig.read, Run.record and zoo.plan.recorded_backend all read through the migration."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps(config_v0(epochs=2)))
    config = RunConfig.read(run_dir / "config.json")
    assert (config.precision, config.input, config.devices, config.backend) == ("float32", "memory", "auto",
                                                                                  "tensorflow")
    assert Run.open(run_dir).record["hardware"]["processes"] == 1
    assert zoo.plan.recorded_backend(run_dir) == "tensorflow"


def test_metrics_v0_from_before_hardware_and_input():
    # Was: measure.measure's metrics.get("hardware", LEGACY_HARDWARE) and .get("input", LEGACY_INPUT).
    metrics = formats.read(formats.RUN_METRICS, {"params": 10, "test_accuracy": 0.5}, "metrics.json")
    assert metrics["hardware"] == {**formats.LEGACY_HARDWARE, "backend": "tensorflow"}
    assert metrics["input"] == formats.LEGACY_INPUT


def test_bench_record_v0_from_before_status_hardware_input_and_variants():
    # Was: records.succeeded's status "ok"; reports.leaderboard's LEGACY_HARDWARE, LEGACY_INPUT,
    # hparams_set and recipe_changed; hardware_label's tensorflow backend.
    old = {"model": "cnn", "dataset": "d", "epochs": 1, "batch_size": 8, "seed": 0, "test_accuracy": 0.9,
           "params": 10, "flops_per_example": 20, "peak_rss_mb": None, **{k: 1.0 for k in reports._MEANS}}
    record = formats.read(formats.BENCH_RECORD, old, "results.jsonl, line 1")
    assert record == {**old, "status": "ok", "hparams_set": {}, "recipe_changed": {},
                      "hardware": {**formats.LEGACY_HARDWARE, "backend": "tensorflow"},
                      "input": formats.LEGACY_INPUT}
    assert bench_records.succeeded(record)
    (row,) = reports.leaderboard([record])
    assert (row["model"], row["hardware"]) == ("cnn", "float32, CPU, memory")
    # A failed record is what it was: it never had hardware or input.
    failed = {"status": "failed", "job": "k", "model": "cnn", "seed": 0, "error": "boom"}
    assert formats.read(formats.BENCH_RECORD, failed, "results.jsonl") == failed


def test_bench_record_lines_of_both_formats_in_one_file(tmp_path):
    """results.jsonl is appended to by every zoo: each line is migrated on its own."""
    (line_v0,) = (FIXTURES / "bench" / "results.jsonl").read_text().splitlines()
    new = {**json.loads(line_v0), "seed": 1}
    (tmp_path / "results.jsonl").write_text(line_v0 + "\n" + formats.dumps(formats.BENCH_RECORD, new) + "\n")
    assert bench_records.read_records(tmp_path) == [json.loads(line_v0), new]


def test_backup_state_v0_from_before_seed_states():
    # Was: zoo.training.callbacks.Backup.restore's state.get("seed_states").
    state = formats.read(formats.BACKUP_STATE, {"epoch": 2, "weights": "epoch-2.weights.h5"}, "state.json")
    assert state == {"epoch": 2, "weights": "epoch-2.weights.h5", "seed_states": None}


# -- history.csv: the version of its run's config.json --------------------------------------------

def history_csv(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "history.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def config_json_of(tmp_path: Path, version: int) -> Path:
    """A run directory whose config.json is of ``version``: a v0 one, migrated to it."""
    record = config_v0(epochs=2)
    for step in formats.MIGRATIONS[formats.RUN_CONFIG][:version]:
        record = step(record)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"format_version": version, **record} if version else record))
    return run_dir


def test_history_csv_of_a_config_json_before_version_2_counts_epochs_from_0():
    rows = [{"epoch": "0", "loss": "0.5"}, {"epoch": "1", "loss": ""}]
    assert formats.read_history(rows, 0) == formats.read_history(rows, 1) == [
        {"epoch": "1", "loss": "0.5"}, {"epoch": "2", "loss": ""}]
    assert formats.read_history(rows, 2) == rows
    assert rows == [{"epoch": "0", "loss": "0.5"}, {"epoch": "1", "loss": ""}]  # the caller's rows unchanged


@pytest.mark.parametrize("version, epochs", [(0, [1, 2]), (1, [1, 2]), (2, [0, 1])])
def test_run_history_reads_every_format_counted_from_1(tmp_path, version, epochs):
    """What history.csv holds, as Run reads it by its config.json's version (a version 2 file
    with an epoch 0 is no file the zoo writes: it shows no shift is made)."""
    run_dir = config_json_of(tmp_path, version)
    (run_dir / "history.csv").write_text("epoch,loss\n0,0.5\n1,0.25\n")
    run = Run.open(run_dir)
    assert [r["epoch"] for r in run.history] == epochs and run.summary()["epochs"] == 2
    assert (run_dir / "history.csv").read_text() == "epoch,loss\n0,0.5\n1,0.25\n"  # reading changes no file


def test_config_json_written_over_an_older_one_rewrites_history_csv_first(tmp_path):
    """What a resume of an older run does (resume.record_resume): both files end in the current
    format, history.csv counting from 1, once only."""
    run_dir = config_json_of(tmp_path, 1)
    (run_dir / "history.csv").write_text("epoch,loss\n0,0.5\n1,0.25\n")
    run = Run.open(run_dir)
    for _ in range(2):  # and again, as a second resume does: nothing older any more
        run.write_json("config.json", run.record)
        assert stamped(run_dir / "config.json", formats.RUN_CONFIG)
        assert [(r["epoch"], r["loss"]) for r in history_csv(run_dir)] == [("1", "0.5"), ("2", "0.25")]
        assert [r["epoch"] for r in run.history] == [1, 2]
    run.write_json("metrics.json", {"a": 1})  # another file: history.csv is config.json's alone
    assert [r["epoch"] for r in history_csv(run_dir)] == ["1", "2"]


# -- newer versions are refused -----------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(formats.MIGRATIONS))
def test_a_newer_version_is_refused_in_one_line_naming_the_file(kind):
    with pytest.raises(ZooError) as err:
        formats.read(kind, {"format_version": formats.CURRENT[kind] + 1}, "/x/some.json")
    message = str(err.value)
    assert type(err.value) is ZooError and "\n" not in message
    assert message.startswith(f"/x/some.json has format_version {formats.CURRENT[kind] + 1}, newer than keras-zoo ")
    assert message.endswith(f"({kind} format {formats.CURRENT[kind]}): upgrade keras-zoo to read it")


@pytest.mark.parametrize("found", ["1", -1, 1.0, True, None])
def test_a_version_that_is_not_one_is_a_corrupted_file(found):
    with pytest.raises(ZooError, match=r"^f\.json is corrupted: format_version .* is not a format version$"):
        formats.read(formats.RUN_CONFIG, {"format_version": found}, "f.json")


def newer(path: Path, version: int = 99) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), "format_version": version}))


def test_a_newer_run_is_refused_by_every_reader(tmp_path):
    run = copy("finished", tmp_path)
    newer(run / "config.json")
    for read in (Run.open, RunConfig.read, zoo.plan.recorded_backend):
        with pytest.raises(ZooError, match="config.json has format_version 99, newer than keras-zoo"):
            read(run / "config.json" if read == RunConfig.read else run)


@pytest.mark.slow  # zoo.training loads TensorFlow
def test_a_newer_backup_is_refused(tmp_path):
    other = copy("interrupted", tmp_path)
    newer(other / "backup" / "state.json", 2)
    from zoo.training.callbacks import Backup

    with pytest.raises(ZooError, match=r"state.json has format_version 2, newer .* upgrade keras-zoo"):
        Backup(other / "backup").saved_epoch()


def test_zoo_evaluate_refuses_a_newer_run_in_one_line(tmp_path):
    run = copy("finished", tmp_path)
    newer(run / "config.json")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = warm.run([sys.executable, "-m", "zoo", "evaluate", str(run)], env=env, timeout=300)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == (f"Error: {run / 'config.json'} has format_version 99, newer than keras-zoo "
                           f"{zoo.__version__} reads (config.json format 3): upgrade keras-zoo to read it\n")
    assert (run / "eval-test.json").read_bytes() == (FIXTURES / "finished" / "eval-test.json").read_bytes()


@pytest.mark.parametrize("kind, command", [
    ("finished", ["export", "{run}", "{tmp}/exports"]),
    ("interrupted", ["train", "mlp", "--dataset", "zoo_tiny", "--epochs", "3", "--run-dir", "{run}", "--resume"]),
])
def test_zoo_export_and_resume_refuse_a_newer_run_in_one_line(tmp_path, kind, command):
    run = copy(kind, tmp_path)
    newer(run / "config.json")
    args = [a.format(run=run, tmp=tmp_path) for a in command]
    proc = warm.run([sys.executable, "-m", "zoo", *args], env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1
    assert proc.stderr.startswith(f"Error: {run / 'config.json'} has format_version 99, newer than keras-zoo ")
    assert not (tmp_path / "exports").exists() and not (run / "tensorboard").exists()


@pytest.mark.slow  # zoo bench loads TensorFlow
def test_zoo_bench_report_refuses_a_newer_record_in_one_line(tmp_path):
    from click.testing import CliRunner

    from zoo.cli import main

    out = copy("bench", tmp_path)
    with (out / "results.jsonl").open("a") as f:
        f.write(json.dumps({"format_version": 2, "status": "ok"}) + "\n")
    result = CliRunner().invoke(main, ["bench", "--report", str(out)])
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {out / 'results.jsonl'}, line 2 has format_version 2, newer than keras-zoo "
                             f"{zoo.__version__} reads (results.jsonl record format 1): upgrade keras-zoo to read it\n")


# -- writers stamp the current version ----------------------------------------------------------

def stamped(path: Path, kind: str) -> bool:
    return list(json.loads(path.read_text()))[0] == "format_version" and \
        json.loads(path.read_text())["format_version"] == formats.CURRENT[kind]


def test_run_write_json_stamps_each_run_file_by_its_kind(tmp_path):
    run = Run(tmp_path)
    for name in ("config.json", "metrics.json", "failed.json", "pruned.json", "eval-train-90.json"):
        run.write_json(name, {"a": 1})
        assert stamped(tmp_path / name, file_kind(name)) and run.read_json(name) == {"a": 1}
    with pytest.raises(ValueError, match="not a JSON file of a run directory"):
        run.write_json("notes.json", {})


@pytest.mark.slow  # zoo.training loads TensorFlow
def test_a_resume_writes_config_json_in_the_current_format(tmp_path):
    """The v0 run's config.json, stamped and otherwise as it was: history.csv, which has the
    version of its run's config.json, is rewritten in the current format with it."""
    from zoo.training import resume

    run = Run.open(copy("interrupted", tmp_path))
    resume.record_resume(run, run.config, {}, 1)
    assert stamped(run.path / "config.json", formats.RUN_CONFIG)
    assert run.record == v0("interrupted/config.json")
    assert history_csv(run.path) == [{**history_csv(FIXTURES / "interrupted")[0], "epoch": "1"}]
    resume.record_resume(run, run.config, {}, 1)  # a second resume: nothing older to rewrite
    assert [r["epoch"] for r in history_csv(run.path)] == ["1"] and [r["epoch"] for r in run.history] == [1]


@pytest.mark.slow
def test_every_writer_stamps_the_current_version(tiny_data_dir, tmp_path, monkeypatch):
    """A tiny run (config.json, metrics.json, the backup's state.json), its evaluation, its export's
    zoo.json, and a bench sweep (results.jsonl, plans/, jobs/, the job's run)."""
    from click.testing import CliRunner

    from zoo.cli import main
    from zoo.training import callbacks

    monkeypatch.setattr(callbacks.Backup, "remove", lambda self: None)  # keep the last backup
    run = zoo.train("softmax", dataset="zoo_tiny", data_dir=tiny_data_dir, epochs=1, batch_size=32,
                    precision="float32", run_dir=tmp_path / "run", export=tmp_path / "exports", verbose=0)
    for name, kind in (("config.json", formats.RUN_CONFIG), ("metrics.json", formats.RUN_METRICS),
                       ("backup/state.json", formats.BACKUP_STATE)):
        assert stamped(run.path / name, kind), name
    assert formats.FIELD not in run.record and formats.FIELD not in run.metrics
    run.evaluate("test")
    assert stamped(run.path / "eval-test.json", formats.RUN_EVAL)
    assert stamped(tmp_path / "exports" / "1" / "assets.extra" / "zoo.json", formats.EXPORT)

    out = tmp_path / "bench"
    result = CliRunner().invoke(main, ["bench", "softmax", "--dataset", "zoo_tiny", "--data-dir", tiny_data_dir,
                                       "--epochs", "1", "--seeds", "0", "--batch-size", "32",
                                       "--precision", "float32", "--out", str(out)])
    assert result.exit_code == 0, result.output
    (line,) = (out / "results.jsonl").read_text().splitlines()
    assert line.startswith('{"format_version": 1, ')
    (record,) = bench_records.read_records(out)
    assert record["status"] == "ok" and formats.FIELD not in record
    assert "format_version" not in (out / "results.csv").read_text()  # a version is no column
    (plan,), jobs = list(out.glob("plans/*.json")), sorted(out.glob("jobs/*.json"))
    assert [p.name.endswith(".peak.json") for p in jobs] == [False, True]  # the job and its peak memory
    (job_run,) = out.glob("runs/*")
    for path, kind in ((plan, formats.BENCH_PLAN), (jobs[0], formats.BENCH_JOB), (jobs[1], formats.BENCH_PEAK),
                       (job_run / "config.json", formats.RUN_CONFIG), (job_run / "metrics.json", formats.RUN_METRICS)):
        assert stamped(path, kind), path
