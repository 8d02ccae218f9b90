"""Resume, in process on the tiny dataset: a non-finite loss in epoch 2, the one setting a resume
may change after it, and a hand-built interrupted run directory."""

from __future__ import annotations

import csv
import json
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from zoo.cli import main

FRAGILE = '''
import keras


@keras.saving.register_keras_serializable(package="zoo_fragile")
class Fragile(keras.layers.Layer):
    """Softmax regression whose output turns NaN once a kernel weight exceeds `limit`: a model that
    diverges after a while with a too-large learning rate, deterministically."""

    def __init__(self, units, limit, **kwargs):
        super().__init__(**kwargs)
        self.units, self.limit = units, limit
        self.dense = keras.layers.Dense(units, activation="softmax")

    def call(self, x):
        y = self.dense(x)
        too_big = keras.ops.max(keras.ops.abs(self.dense.kernel)) > self.limit
        return y * keras.ops.where(too_big, float("nan"), 1.0)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "limit": self.limit}


def fragile(*, input_shape, num_classes, limit: float = 2.2):
    """Softmax regression that blows up once a weight passes `limit`."""
    inputs = keras.Input(shape=input_shape)
    return keras.Model(inputs, Fragile(num_classes, limit)(keras.layers.Flatten()(inputs)))
'''


@pytest.fixture
def fragile_plugin(tmp_path, monkeypatch):
    """A real plugin module and dist-info on sys.path, as an installed package has them."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "zoo_fragile.py").write_text(textwrap.dedent(FRAGILE))
    info = root / "zoo_fragile-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-fragile\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[zoo.models]\nfragile = zoo_fragile:fragile\n")
    monkeypatch.syspath_prepend(str(root))
    yield
    import sys

    sys.modules.pop("zoo_fragile", None)


def zoo(*args) -> object:
    return CliRunner().invoke(main, [str(a) for a in args])


def history(run: Path) -> list[dict[str, str]]:
    with (run / "history.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.mark.slow  # five trainings and refusals in process: 10 s alone, 17 s beside another worker
def test_non_finite_loss_in_epoch_2_keeps_epoch_1_and_a_smaller_learning_rate_resumes(
    fragile_plugin, tiny_data_dir, tmp_path
):
    run = tmp_path / "run"
    # Adam at 0.5 pushes a weight past the limit during epoch 2 (1.93 after epoch 1, 2.54 after
    # epoch 2); at 0.005 it moves less than 0.03 an epoch.
    args = ["train", "fragile", "--dataset", "zoo_tiny", "--data-dir", tiny_data_dir, "--epochs", "4",
            "--batch-size", "32", "--optimizer", "adam", "--schedule", "constant", "--run-dir", run,
            "--precision", "float32"]  # the plugin is written for float32 (auto is bfloat16 on some CPUs)
    result = zoo(*args, "--learning-rate", "0.5")
    assert result.exit_code == 1, result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: loss became nan at epoch 2, batch ") and "try a smaller --learning-rate" in line
    assert "the weights after epoch 1 are kept" in line
    assert [r["epoch"] for r in history(run)] == ["1"]
    state = json.loads((run / "backup" / "state.json").read_text())
    assert state["epoch"] == 1
    with h5py.File(run / "backup" / state["weights"]) as f:
        arrays = []
        f.visititems(lambda _, obj: arrays.append(obj[()]) if isinstance(obj, h5py.Dataset) else None)
    assert arrays and all(np.all(np.isfinite(a)) for a in arrays)
    assert json.loads((run / "failed.json").read_text())["finished_epochs"] == 1
    first_row = history(run)[0]

    # The advice can be followed: only a smaller learning rate may change after a blow-up.
    for other, word in ((["--learning-rate", "0.5", "--batch-size", "16"], "batch-size"),
                        (["--learning-rate", "1"], "learning-rate"),
                        (["--learning-rate", "0.005", "--seed", "1"], "seed")):
        refused = zoo(*args, *other, "--resume")
        assert refused.exit_code == 2, refused.output
        message = refused.stderr.strip().splitlines()[-1]
        assert f"(--{word})" in message and "only a smaller --learning-rate may change" in message

    resumed = zoo(*args, "--learning-rate", "0.005", "--resume")
    assert resumed.exit_code == 0, resumed.output
    rows = history(run)
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"] and rows[0] == first_row
    assert [float(r["learning_rate"]) for r in rows] == [0.5, 0.005, 0.005, 0.005]
    record = json.loads((run / "config.json").read_text())
    assert record["config"]["learning_rate"] == 0.005
    (change,) = record["changes"]
    assert change["from_epoch"] == 1 and change["changed"] == {"learning_rate": [0.5, 0.005]}
    assert change["reason"].startswith("loss became nan at epoch 2")
    assert not (run / "failed.json").exists() and (run / "metrics.json").is_file()


@pytest.mark.slow  # a training, six refusals and a resume in process: 17 s alone, 26 s beside another worker
def test_resume_of_a_hand_built_interrupted_run(tiny_data_dir, tmp_path, monkeypatch):
    """A run killed in epoch 3 after writing epoch 2's history row but before its backup."""
    from zoo.training import callbacks

    run = tmp_path / "run"
    args = ["train", "mlp", "--dataset", "zoo_tiny", "--data-dir", tiny_data_dir, "--epochs", "3",
            "--batch-size", "32", "--hp", "units=8,8,8", "--run-dir", run, "--precision", "float32"]
    monkeypatch.setattr(callbacks.Backup, "remove", lambda self: None)  # keep the last backup
    assert zoo(*args).exit_code == 0
    whole = history(run)
    for name in ("metrics.json", "model.keras", "curves.png"):
        (run / name).unlink()
    backup = run / "backup"
    state = json.loads((backup / "state.json").read_text())
    assert state["epoch"] == 3
    # Back to the state after epoch 1: its weights file, the rows of epochs 1 and 2 (stale), and
    # the temporary a kill during the next save leaves behind.
    (backup / state["weights"]).rename(backup / "epoch-1.weights.h5")
    (backup / "state.json").write_text(json.dumps({**state, "epoch": 1, "weights": "epoch-1.weights.h5"}))
    (backup / ".tmp-0badc0de-epoch-2.weights.h5").write_bytes(b"half a file")

    refused = zoo(*args, "--epochs", "4", "--resume")
    assert refused.exit_code == 2
    assert refused.stderr.strip().endswith("(--epochs); resume with the same command")
    # Where and how it computes is part of the run too: float32 on one device.
    for option, value in (("--precision", "mixed_bfloat16"), ("--jit-compile", "off")):
        refused = zoo(*args, option, value, "--resume")
        assert refused.exit_code == 2
        assert refused.stderr.strip().endswith(f"({option}); resume with the same command")
    assert zoo(*args, "--precision", "float32", "--resume", "--epochs", "4").exit_code == 2
    config_json = run / "config.json"
    as_trained = config_json.read_text()
    record = json.loads(as_trained)
    record["config"]["devices"] = "cpu:0,cpu:1"  # as if it had trained with --devices 2
    config_json.write_text(json.dumps(record))
    refused = zoo(*args, "--resume")
    assert refused.exit_code == 2 and refused.stderr.strip().endswith("(--devices); resume with the same command")
    config_json.write_text(as_trained)
    resumed = zoo(*args, "--resume")
    assert resumed.exit_code == 0, resumed.output
    rows = history(run)
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]  # the stale rows were dropped, not kept twice
    assert rows[0] == whole[0]
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 3
    # The path the run took, for the reason it took it: not "asked for" (nobody asked).
    started = json.loads(as_trained)["input"]
    (line,) = [line for line in resumed.stdout.splitlines() if line.startswith("input: ")]
    assert line == f"input: memory (as the run started: {started['reason']})"
    assert "within the memory budget" in started["reason"]
    assert json.loads((run / "metrics.json").read_text())["input"]["requested"] == "auto"
