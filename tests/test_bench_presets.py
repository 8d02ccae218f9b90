"""`zoo bench --from-presets` and `zoo.bench(from_presets=...)`: published presets measured as they
are (no training) on their dataset's test split, recorded once per --out, shown apart from
trained runs; bad requests refused in one line before anything is written."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import warm
from click.testing import CliRunner

import zoo
from zoo.benchmark import records as bench_records
from zoo.cli import main
from zoo.presets import catalog

MEASURED = {
    "params", "flops_per_example", "test_accuracy", "test_loss", "saved_model_bytes", "latency_ms_p50",
    "latency_ms_p99", "saved_model_examples_per_second", "keras_predict_examples_per_second",
}


@pytest.fixture(autouse=True)
def own_hash_cache(monkeypatch, tmp_path):
    """The verified-hash cache of these tests is their own (not the user's ~/.cache)."""
    monkeypatch.setenv("ZOO_CACHE_HOME", str(tmp_path / "cache"))


def run_bench(*args: str, **env: str) -> object:
    return warm.run([sys.executable, "-m", "zoo", "bench", *map(str, args)],
                    env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env}, timeout=600)


def published(name: str) -> tuple[float, int]:
    """A built-in preset's published test accuracy and the number of test examples behind it."""
    metrics = catalog.find(name).record["metrics"]
    return metrics["test_accuracy"], metrics["examples"]


def copied(name: str, folder: Path, as_name: str | None = None) -> Path:
    target = folder / (as_name or name)
    shutil.copytree(catalog.find(name).path, target)
    return target


@pytest.mark.integration
@pytest.mark.slow
def test_bench_measures_builtin_presets_as_published_and_once(mnist_data_dir, tmp_path):
    out = tmp_path / "bench"
    first = run_bench("--from-presets", "softmax.mnist", "--from-presets", "cnn.mnist", "--out", out,
                      "--data-dir", mnist_data_dir)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "2 preset(s) to measure" in first.stderr
    recs = bench_records.read_records(out)
    assert [r["preset"]["name"] for r in recs] == ["softmax.mnist", "cnn.mnist"]
    for r in recs:
        preset = catalog.find(r["preset"]["name"])
        accuracy, examples = published(preset.name)
        assert r["status"] == "ok" and r["model"] == preset.model and r["dataset"] == "mnist"
        assert abs(r["test_accuracy"] - accuracy) <= 1 / examples + 1e-9  # within one test image
        assert r["preset"]["digest"] == preset.digest and r["preset"]["license"] == "Apache-2.0"
        assert r["splits"]["test"] == "test" and r["run_dir"] is None
        assert r["train_seconds"] is None and r["train_examples_per_second"] is None  # never trained
        assert all(r[k] is not None for k in MEASURED) and 0 < r["latency_ms_p50"] <= r["latency_ms_p99"]
    assert recs[0]["params"] == 7850
    md = (out / "results.md").read_text()
    assert f"| 1 | preset cnn.mnist (cnn, {recs[1]['preset']['digest'][:15]}) |" in md
    assert "| n/a | n/a | 421,642 |" in md  # no training figures
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The same presets again (here through a pattern): recorded once; only the new one is measured.
    again = run_bench("--from-presets", "[sc]*.mnist", "--out", out, "--data-dir", mnist_data_dir)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"0 preset(s) to measure; 2 already recorded in {out}, skipped" in again.stderr
    assert "nothing to run" in again.stderr
    assert len(bench_records.read_records(out)) == 2


@pytest.mark.integration
@pytest.mark.slow
def test_bench_measures_a_preset_of_the_search_path_from_python(mnist_data_dir, tmp_path, monkeypatch):
    shelf = tmp_path / "shelf"
    preset = copied("softmax.mnist", shelf, "team.softmax")
    monkeypatch.setenv(catalog.SEARCH_ENV, str(shelf))
    out = tmp_path / "bench"
    (rec,) = zoo.bench(from_presets=["team.*"], out=out, data_dir=mnist_data_dir)
    assert rec["preset"]["name"] == "team.softmax" and rec["preset"]["path"] == str(preset.resolve())
    assert rec["preset"]["digest"] == catalog.find("softmax.mnist").digest  # the same bytes
    accuracy, examples = published("softmax.mnist")
    assert abs(rec["test_accuracy"] - accuracy) <= 1 / examples + 1e-9
    assert bench_records.read_records(out) == [rec]
    assert zoo.bench(from_presets=["team.softmax"], out=out, data_dir=mnist_data_dir) == []  # recorded once


def refused(tmp_path, *args: str) -> str:
    """``zoo bench ARGS --out OUT`` fails in one line and writes nothing; its message."""
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["bench", *args, "--out", str(out)])
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not out.exists()
    return result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--from-presets", "nosuch.mnist"], "unknown preset 'nosuch.mnist'"),
        (["--from-presets", "cnn.mnsit"], "Did you mean: cnn.mnist"),
        (["--from-presets", "zz*"], "no preset matches 'zz*'"),
        (["--from-presets", "./no/such/folder"], "is not a preset (no such folder)"),
        (["softmax", "--from-presets", "cnn.mnist"], "give no MODELS, --hp, --seeds or training options"),
        (["--hp", "units=4", "--from-presets", "cnn.mnist"], "give no MODELS, --hp, --seeds or training options"),
        (["--epochs", "1", "--from-presets", "cnn.mnist"], "give no MODELS, --hp, --seeds or training options"),
        (["--precision", "float32", "--from-presets", "cnn.mnist"], "give no MODELS, --hp, --seeds or training"),
        (["--seeds", "1", "--from-presets", "cnn.mnist"], "give no MODELS, --hp, --seeds or training options"),
        (["--from-runs", "r", "--from-presets", "cnn.mnist"], "--from-presets and --from-runs: give one of them"),
        (["--shard", "1/2", "--from-presets", "cnn.mnist"], "--plan, --shard and --ray are for training sweeps"),
        (["--ray", "--from-presets", "cnn.mnist"], "--plan, --shard and --ray are for training sweeps"),
        (["--plan", "--from-presets", "cnn.mnist"], "--plan, --shard and --ray are for training sweeps"),
    ],
)
def test_bench_from_presets_bad_input(tmp_path, args, message):
    assert message in refused(tmp_path, *args)


def test_bench_refuses_a_dataset_of_other_classes(tiny_data_dir, tmp_path):
    message = refused(tmp_path, "--from-presets", "cnn.mnist", "--dataset", "zoo_tiny", "--data-dir", tiny_data_dir)
    assert "preset cnn.mnist cannot be measured on zoo_tiny: its classes are not the preset's" in message


def test_python_api_refuses_presets_with_training(tmp_path):
    with pytest.raises(zoo.ZooUsageError, match="give no models, hparams or training options"):
        zoo.bench("softmax", from_presets=["cnn.mnist"], out=tmp_path / "out")
    with pytest.raises(zoo.ZooUsageError, match="give no models, hparams or training options"):
        zoo.bench(from_presets=["cnn.mnist"], epochs=1, out=tmp_path / "out")
    with pytest.raises(zoo.ZooUsageError, match="shard and ray are for training sweeps"):
        zoo.bench(from_presets=["cnn.mnist"], shard="1/2", out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_tampered_preset_is_refused_by_every_load(tmp_path, monkeypatch):
    preset = copied("softmax.mnist", tmp_path / "shelf")
    catalog.at(preset).verify()  # hashed (and cached) while intact
    weights = preset / "model.weights.h5"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # one byte, the size unchanged
    weights.write_bytes(bytes(data))
    named = f"{weights.resolve()} does not match its manifest"
    # As a folder, and by name from the search path (the loads a bench does), in the CLI and the API.
    assert named in refused(tmp_path, "--from-presets", str(preset))
    monkeypatch.setenv(catalog.SEARCH_ENV, str(tmp_path / "shelf"))
    assert named in refused(tmp_path, "--from-presets", "softmax.mnist")
    with pytest.raises(zoo.ZooError, match="does not match its manifest"):
        zoo.bench(from_presets=[preset], out=tmp_path / "out")
    with pytest.raises(zoo.ZooError, match="does not match its manifest"):
        zoo.create_model("softmax", weights=preset)
    assert not (tmp_path / "out").exists()
