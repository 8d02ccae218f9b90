"""`zoo bench`: real trainings on real MNIST, records appended, reports rebuilt."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import warm
from click.testing import CliRunner

from zoo import formats
from zoo.benchmark import jobs, measure, reports
from zoo.benchmark import records as bench_records
from zoo.cli import main

REQUIRED = {
    "model", "distribution", "version", "hparams", "dataset", "dataset_version", "splits", "seed",
    "epochs", "batch_size", "params", "flops_per_example", "train_seconds",
    "train_examples_per_second", "test_accuracy", "test_loss", "saved_model_bytes",
    "latency_ms_p50", "latency_ms_p99", "saved_model_examples_per_second",
    "keras_predict_examples_per_second", "saved_model_vs_keras", "peak_rss_mb", "env",
    "hparams_set", "recipe_changed",
}


def run_bench(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return warm.run([sys.executable, "-m", "zoo", "bench", *args], env=env, timeout=900)


def records(out) -> list[dict]:
    """OUT/results.jsonl as the zoo reads it (each line in the current format, without its version)."""
    return bench_records.read_records(out)


def old_records(*recs: dict) -> list[dict]:
    """Records of format 0 (before records carried a version), read as the zoo reads them."""
    return [formats.read(formats.BENCH_RECORD, r, "results.jsonl") for r in recs]


@pytest.mark.integration
@pytest.mark.slow
def test_bench_trains_measures_appends_and_reports(mnist_data_dir, tmp_path):
    out = tmp_path / "bench"
    first = run_bench("softmax", "--epochs", "1", "--seeds", "0,1", "--precision", "float32", "--out", str(out),
                      "--data-dir", mnist_data_dir)
    assert first.returncode == 0, first.stderr[-2000:]
    # Not a terminal here: a progress line per finished job instead of a bar.
    progress = [line for line in first.stderr.splitlines() if line.startswith("[")]
    assert [line.split(":")[0] for line in progress] == ["[1/2] softmax seed 0", "[2/2] softmax seed 1"]
    assert re.search(r"; ETA \d+ (s|min)$", progress[0]) and re.search(r"; done in \d+ (s|min)$", progress[-1])
    assert len([line for line in first.stderr.splitlines() if "job(s)" in line]) == 1  # the count, once
    recs = records(out)
    assert [(r["model"], r["seed"]) for r in recs] == [("softmax", 0), ("softmax", 1)]
    for r in recs:
        assert REQUIRED <= r.keys()
        assert r["distribution"] == "keras-zoo" and r["dataset"] == "mnist" and r["dataset_version"] == "3.0.1"
        assert r["splits"] == {"train": "train[:90%]", "validation": "train[90%:]", "test": "test"}
        assert r["params"] == 7850
        assert r["hparams_set"] == {} and r["recipe_changed"] == {}  # only --epochs, which has a column
        assert 2 * 784 * 10 <= r["flops_per_example"] < 2 * 784 * 10 * 1.5
        assert r["test_accuracy"] > 0.85
        assert 0 < r["latency_ms_p50"] <= r["latency_ms_p99"]
        assert r["saved_model_bytes"] > 7850 * 4 and r["peak_rss_mb"] > 100
        # The training process's own peak (VmHWM), not what Linux carries over from the bench
        # process that forked it.
        peak = out / "jobs" / f"{Path(r['run_dir']).name}.peak.json"
        assert r["peak_rss_mb"] == json.loads(peak.read_text())["peak_rss_mb"]
        assert r["input"]["train"] == "memory" and "within the memory budget" in r["input"]["reason"]
        assert r["env"]["cores"] == os.cpu_count() and r["env"]["tensorflow"]
    assert recs[0]["test_accuracy"] != recs[1]["test_accuracy"]  # seeds really differ
    md = (out / "results.md").read_text()
    assert "| 1 | softmax | float32, CPU, memory | mnist | 1 | 2 |" in md and "±" in md and "zoo bench softmax" in md
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with (out / "results.csv").open() as f:
        assert [row["hardware.precision"] for row in csv.DictReader(f)] == ["float32", "float32"]  # flat

    # Existing runs are measured without retraining; the record is appended.
    run_dir = recs[0]["run_dir"]
    again = run_bench("--from-runs", run_dir, "--out", str(out))
    assert again.returncode == 0, again.stderr[-2000:]
    recs = records(out)
    assert len(recs) == 3 and recs[2]["run_dir"] == run_dir and recs[2]["peak_rss_mb"] is None
    assert recs[2]["test_accuracy"] == recs[0]["test_accuracy"]
    # The same run measured again is one run of the leaderboard (its newer record), not a third seed.
    assert "| softmax | float32, CPU, memory | mnist | 1 | 2 |" in (out / "results.md").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seeds", "a,b"], "--seeds expects comma-separated integers"),
        (["--seeds", "-1"], "--seeds expects integers between 0 and"),
        (["nosuchmodel"], "unknown model 'nosuchmodel'"),
        (["zz*"], "no model matches 'zz*'"),
        (["softmax", "--epochs", "0"], "--epochs must be between 1 and"),
        (["softmax", "--from-runs", "x"], "give no MODELS, --hp or training options with it"),
        (["--hp", "units=4", "--from-runs", "x"], "give no MODELS, --hp or training options with it"),
        (["--no-augment", "--from-runs", "x"], "give no MODELS, --hp or training options with it"),
        (["softmax", "--batch-size", "0"], "--batch-size must be between 1 and"),
        (["softmax", "--learning-rate", "-1"], "--learning-rate must be a positive number"),
        (["cnn", "--hp", "filter=8,16"], "no hyperparameter 'filter'. Did you mean 'filters'?"),
        # softmax takes no 'units': checked for every selected model before any training starts.
        (["mlp", "softmax", "--hp", "units=8,8,8"], "model 'softmax' has no hyperparameter 'units'"),
        (["cnn", "--hp", "dropout"], "--hp expects KEY=VALUE"),
    ],
)
def test_bench_bad_input(tmp_path, args, message):
    result = CliRunner().invoke(main, ["bench", *args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_leaderboard_is_mean_and_std_best_first():
    def rec(model, seed, acc):
        return {"model": model, "dataset": "d", "epochs": 1, "batch_size": 8, "seed": seed,
                "test_accuracy": acc, "params": 10, "flops_per_example": 20, "peak_rss_mb": 100.0 + seed,
                **{k: 1.0 for k in reports._MEANS}}

    rows = reports.leaderboard(old_records(rec("a", 0, 0.90), rec("b", 0, 0.95), rec("a", 1, 0.92), rec("b", 1, 0.97)))
    assert [r["model"] for r in rows] == ["b", "a"]
    assert rows[0]["acc_mean"] == pytest.approx(0.96)
    assert rows[0]["acc_std"] == pytest.approx(0.0141421, rel=1e-4)
    assert rows[0]["seeds"] == 2 and rows[0]["peak_rss_mb"] == 101.0


def test_leaderboard_keeps_hyperparameter_variants_apart():
    def rec(seed, acc, recipe_changed=None, **hparams_set):
        return {"model": "cnn", "hparams_set": hparams_set, "recipe_changed": recipe_changed or {},
                "dataset": "d", "epochs": 3, "batch_size": 8,
                "seed": seed, "test_accuracy": acc, "params": 10, "flops_per_example": 20,
                "peak_rss_mb": None, **{k: 1.0 for k in reports._MEANS}}

    fast = {"batch_size": 64, "augment": False}
    rows = reports.leaderboard(old_records(rec(0, 0.99), rec(0, 0.98, filters=[16, 32]), rec(1, 0.97, filters=[16, 32]),
                                           rec(0, 0.96, fast, filters=[16, 32])))
    assert [(r["model"], r["seeds"]) for r in rows] == [
        ("cnn", 1), ("cnn filters=16,32", 2), ("cnn filters=16,32 batch_size=64 augment=False", 1)]
    md = reports.markdown(rows, ENV, ["zoo bench cnn", "zoo bench cnn --hp filters=16,32"])
    assert "| 2 | cnn filters=16,32 | float32, CPU, memory | d | 3 | 2 |" in md  # records from before precision
    assert md.endswith("Made by `zoo bench cnn`, then `zoo bench cnn --hp filters=16,32`.\n")


def test_leaderboard_keeps_precisions_devices_and_input_paths_apart():
    def rec(seed, acc, precision="float32", kind="CPU", replicas=1, name="AMD EPYC", train="memory"):
        hardware = {"precision": precision, "device_kind": kind, "device_name": name, "replicas": replicas}
        return {"model": "cnn", "dataset": "d", "epochs": 3, "batch_size": 8, "seed": seed, "test_accuracy": acc,
                "hardware": hardware, "params": 10, "flops_per_example": 20, "peak_rss_mb": None,
                "input": {"train": train, "evaluation": "memory"}, **{k: 1.0 for k in reports._MEANS}}

    rows = reports.leaderboard(old_records(
        rec(0, 0.99), rec(1, 0.98), rec(0, 0.97, precision="mixed_bfloat16"), rec(0, 0.96, replicas=2),
        rec(0, 0.95, "mixed_float16", "GPU", 2, "NVIDIA A100"), rec(0, 0.94, "mixed_float16", "GPU", 2, "Tesla T4"),
        rec(0, 0.93, train="stream"), rec(1, 0.92, train="stream"),
    ))
    assert [(r["hardware"], r["seeds"]) for r in rows] == [
        ("float32, CPU, memory", 2), ("mixed_bfloat16, CPU, memory", 1), ("float32, 2 CPU, memory", 1),
        ("mixed_float16, 2 GPU (NVIDIA A100), memory", 1), ("mixed_float16, 2 GPU (Tesla T4), memory", 1),
        ("float32, CPU, stream", 2),
    ]
    assert "| 4 | cnn | mixed_float16, 2 GPU (NVIDIA A100), memory | d |" in reports.markdown(rows, ENV, [])


ENV = {"python": "3", "tensorflow": "2", "keras": "3", "tensorflow_datasets": "4", "cpu": "cpu", "cores": 2}


def test_bench_selects_a_duplicated_name_by_distribution(monkeypatch):
    import importlib.metadata as metadata

    from test_registry import HERE as REGISTRY_TESTS
    from test_registry import FakeDist

    dists = [FakeDist("pkg-a", "1.0", twin=f"{REGISTRY_TESTS}:good", solo=f"{REGISTRY_TESTS}:good"),
             FakeDist("pkg-b", "2.0", twin=f"{REGISTRY_TESTS}:good")]
    monkeypatch.setattr(metadata, "distributions", lambda: iter(dists))
    assert jobs.select_models([]) == ["solo", "pkg-a:twin", "pkg-b:twin"]
    assert jobs.select_models(["tw*"]) == ["pkg-a:twin", "pkg-b:twin"]


def test_rows_compare_with_the_recipe_recorded_in_the_run():
    # The run trained with the recipe of its day; the plugin's recipe has changed since.
    config = {"model": "softmax", **{k: v for k, v in jobs.DEFAULTS.items()}, "learning_rate": 0.1}
    recorded = {"recipe": {"learning_rate": 0.1}}
    assert measure._recipe_changed(config, recorded) == {}
    assert measure._recipe_changed(config, {"recipe": {}}) == {"learning_rate": 0.1}


@pytest.mark.slow  # trains, exports and measures: 8 s alone, 17 s beside another worker
def test_zoo_bench_runs_a_notebook_registered_model_in_process(tiny_data_dir, tmp_path):
    import keras

    import registry
    import zoo

    @zoo.register(name="cellnet")
    def builder(*, input_shape, num_classes, width: int = 8):
        """Registered in this process only."""
        inputs = keras.Input(shape=input_shape)
        x = keras.layers.Dense(width, activation="relu")(keras.layers.Flatten()(inputs))
        return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))

    try:
        recs = zoo.bench("cellnet", seeds=[0], out=tmp_path / "out", dataset="zoo_tiny", data_dir=tiny_data_dir,
                         hparams={"width": "4"}, epochs=2, batch_size=32)
    finally:
        registry._discovery._LOCAL.pop("cellnet", None)
    (rec,) = recs
    assert rec["model"] == "cellnet" and rec["hparams"] == {"width": 4} and rec["epochs"] == 2
    assert rec["distribution"] is None and rec["peak_rss_mb"] is None  # no child process to measure
    assert rec["train_seconds"] > 0 and rec["val_seconds"] > 0
    assert records(tmp_path / "out") == recs and (tmp_path / "out" / "results.md").is_file()
