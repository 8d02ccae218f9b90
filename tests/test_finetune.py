"""Fine-tuning a preset (zoo train MODEL --init PRESET [--freeze N|all]), in process on the tiny
dataset: a tiny cnn is trained and published once, then runs start from it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import imagefolders
import numpy as np
import pytest
from clicalls import zoo_cli

import zoo
from zoo.presets.store import seal

HP = {"filters": "4,8", "dense_units": 16}
COMMON = {"dataset": "zoo_tiny", "batch_size": 32, "learning_rate": 0.01, "schedule": "constant", "augment": False}


@pytest.fixture(scope="module")
def parent(tiny_data_dir, tmp_path_factory) -> Path:
    """A preset of cnn (filters 4,8, dense 16) trained 2 epochs on zoo_tiny (classes 0, 1, 2)."""
    folder = tmp_path_factory.mktemp("finetune")
    run = zoo.train("cnn", hparams=HP, epochs=2, data_dir=tiny_data_dir, run_dir=folder / "parent-run",
                    verbose=0, **COMMON)
    return run.publish(folder / "presets", license="MIT", name="cnn.tiny").path


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch, parent):
    monkeypatch.setenv("ZOO_CACHE_HOME", str(tmp_path / "cache"))  # hashes of this test's files only
    monkeypatch.setenv("ZOO_PRESETS_PATH", str(parent.parent))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def starts(monkeypatch) -> list[list[np.ndarray]]:
    """The weights each run's model has when fit is called (after the preset's are loaded)."""
    from zoo.training import runner

    seen, fit = [], runner.fit

    def recording(model, *args, **kwargs):
        seen.append([np.array(w) for w in model.weights])
        return fit(model, *args, **kwargs)

    monkeypatch.setattr(runner, "fit", recording)
    return seen


@pytest.fixture
def epochs_end(monkeypatch) -> list[list[np.ndarray]]:
    """The weights after each epoch (as the backup saves them)."""
    from zoo.training import callbacks

    seen, save = [], callbacks.Backup.on_epoch_end

    def recording(self, epoch, logs=None):
        seen.append([np.array(w) for w in self.model.weights])
        return save(self, epoch, logs)

    monkeypatch.setattr(callbacks.Backup, "on_epoch_end", recording)
    return seen


def preset_weights(path: Path) -> list[np.ndarray]:
    return [np.array(w) for w in zoo.create_model("cnn", weights=str(path)).weights]


def renamed(parent: Path, tmp_path: Path, classes: list[str]) -> Path:
    """A copy of the parent preset whose classes are called otherwise (or ordered otherwise)."""
    copy = shutil.copytree(parent, tmp_path / f"cnn.{''.join(classes)}")
    record = json.loads((copy / "preset.json").read_text())
    record["classes"] = classes
    (copy / "preset.json").write_text(json.dumps(seal(record)))  # published so: sealed
    return copy


def head_positions(run_or_model) -> set[int]:
    from zoo.presets import weights

    model = run_or_model
    new = {id(v) for layer in weights.head(model) for v in layer.weights}
    return {i for i, v in enumerate(model.weights) if id(v) in new}


def train(tiny_data_dir, run_dir, **options) -> zoo.Run:
    return zoo.train("cnn", data_dir=tiny_data_dir, run_dir=run_dir, verbose=0, **{**COMMON, "epochs": 1, **options})


@pytest.mark.slow
def test_the_preset_s_classes_load_every_weight_and_the_run_records_it(parent, tiny_data_dir, tmp_path, starts):
    run = train(tiny_data_dir, tmp_path / "run", init="cnn.tiny")
    expected = preset_weights(parent)
    assert len(starts[0]) == len(expected)
    assert all(np.array_equal(a, b) for a, b in zip(starts[0], expected))  # the head too
    record = json.loads((run.path / "config.json").read_text())
    from zoo.presets.catalog import find

    assert record["format_version"] == 3
    assert record["init"] == {"preset": "cnn.tiny", "digest": find("cnn.tiny").digest, "new_head": False,
                              "freeze": None}
    assert record["config"]["init"] == "cnn.tiny" and record["config"]["hparams"]["dense_units"] == 16
    # The preset's hyperparameters are the run's: no --hp was given.
    assert run.record["model"]["hparams_resolved"]["filters"] == [4, 8]


@pytest.mark.slow
@pytest.mark.parametrize("classes", [["a", "b", "c"], ["2", "1", "0"]], ids=["other-names", "other-order"])
def test_other_class_names_get_a_new_head_and_the_rest_loads(parent, tiny_data_dir, tmp_path, starts, classes):
    other = renamed(parent, tmp_path, classes)  # same count: deciding by the count would load the head
    run = train(tiny_data_dir, tmp_path / "run", init=str(other))
    expected = preset_weights(parent)
    head = head_positions(run.model())
    assert head and len(head) < len(expected)
    for i, (a, b) in enumerate(zip(starts[0], expected)):
        assert np.array_equal(a, b) == (i not in head), i
    assert run.record["init"]["new_head"] is True
    assert run.record["config"]["init"] == str(other.resolve())  # a path, recorded absolute


@pytest.mark.slow
def test_freeze_all_trains_the_head_alone(parent, tiny_data_dir, tmp_path, starts):
    other = renamed(parent, tmp_path, ["a", "b", "c"])
    run = train(tiny_data_dir, tmp_path / "run", init=str(other), freeze="all", epochs=2)
    final = [np.array(w) for w in run.model().weights]
    head, expected = head_positions(run.model()), preset_weights(parent)
    for i, (start, end, theirs) in enumerate(zip(starts[0], final, expected)):
        if i in head:
            assert not np.array_equal(start, end), f"head weight {i} did not train"
        else:
            assert np.array_equal(end, theirs), f"frozen weight {i} changed"
    assert all(layer.trainable for layer in run.model().layers)  # model.keras is an ordinary model
    assert run.record["init"]["freeze"] == "all"


@pytest.mark.slow
def test_freeze_n_trains_the_head_alone_for_n_epochs_then_everything(parent, tiny_data_dir, tmp_path, epochs_end):
    run = train(tiny_data_dir, tmp_path / "run", init="cnn.tiny", freeze=1, epochs=2)
    head, expected = head_positions(run.model()), preset_weights(parent)
    first, second = epochs_end
    body = [i for i in range(len(expected)) if i not in head]
    assert all(np.array_equal(first[i], expected[i]) for i in body)
    assert not any(np.array_equal(first[i], expected[i]) for i in head)
    assert not any(np.array_equal(second[i], first[i]) for i in body)  # thawed in epoch 2
    assert [r["epoch"] for r in run.history] == [1, 2]


@pytest.mark.slow
def test_a_frozen_run_resumes_exactly_in_its_phase(parent, tiny_data_dir, tmp_path, monkeypatch):
    """Stopped after epoch 1 of 3 with --freeze 2: the resume trains epoch 2 frozen and epoch 3
    thawed, and ends with the weights of the run that was never stopped."""
    from zoo.training import callbacks

    options = {"init": "cnn.tiny", "freeze": 2, "epochs": 3}
    whole = train(tiny_data_dir, tmp_path / "whole", **options)
    save = callbacks.Backup.on_epoch_end

    def stop_after_epoch_1(self, epoch, logs=None):
        save(self, epoch, logs)
        if epoch == 0:
            raise KeyboardInterrupt

    monkeypatch.setattr(callbacks.Backup, "on_epoch_end", stop_after_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_data_dir, tmp_path / "stopped", **options)
    monkeypatch.setattr(callbacks.Backup, "on_epoch_end", save)
    with pytest.raises(zoo.ZooUsageError, match="`freeze`"):  # a resume keeps the run's schedule
        train(tiny_data_dir, tmp_path / "stopped", resume=True, **{**options, "freeze": 1})
    resumed = train(tiny_data_dir, tmp_path / "stopped", resume=True, **options)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    for a, b in zip(whole.model().weights, resumed.model().weights):
        assert np.array_equal(np.array(a), np.array(b))


@pytest.mark.slow
def test_publishing_a_fine_tuned_run_names_its_parent(parent, tiny_data_dir, tmp_path):
    run = train(tiny_data_dir, tmp_path / "run", init="cnn.tiny", freeze=1)
    child = run.publish(tmp_path / "presets", license="MIT", name="cnn.tiny2")
    from zoo.presets.catalog import find

    assert child.record["parent"] == {"preset": "cnn.tiny", "digest": find("cnn.tiny").digest, "new_head": False,
                                      "freeze": 1}
    assert f"Fine-tuned from:** cnn.tiny ({find('cnn.tiny').digest})" in (child.path / "README.md").read_text()


def one_line_refusal(result, code: int, run_dir: Path, *, starts: str = "Error: ") -> str:
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(starts), result.stderr
    assert not run_dir.exists()
    return lines[0]


def test_refusals_are_one_line_and_leave_no_run_directory(parent, tiny_data_dir, tmp_path):
    run_dir = tmp_path / "run"
    args = ["--dataset", "zoo_tiny", "--data-dir", tiny_data_dir, "--epochs", "1", "--run-dir", run_dir]
    line = one_line_refusal(zoo_cli("train", "mlp", "--init", "cnn.tiny", *args), 2, run_dir)
    assert line.endswith("preset cnn.tiny is a preset of model 'cnn', not 'mlp'")
    line = one_line_refusal(zoo_cli("train", "cnn", "--init", "cnn.tinny", *args), 2, run_dir)
    assert "unknown preset 'cnn.tinny'. Did you mean: cnn.tiny" in line
    line = one_line_refusal(zoo_cli("train", "cnn", "--freeze", "1", *args), 2, run_dir)
    assert "--freeze needs --init" in line
    line = one_line_refusal(zoo_cli("train", "cnn", "--init", "cnn.tiny", "--freeze", "some", *args), 2, run_dir)
    assert "--freeze must be a number of epochs" in line
    line = one_line_refusal(zoo_cli("train", "cnn", "--init", "cnn.tiny", "--freeze", "2", *args), 2, run_dir)
    assert line.endswith("--freeze 2 is more than the run's 1 epochs: give --freeze all to train only the head "
                         "throughout, or at most 1")
    tampered = shutil.copytree(parent, tmp_path / "tampered")
    weights = tampered / "model.weights.h5"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    line = one_line_refusal(zoo_cli("train", "cnn", "--init", tampered, *args), 1, run_dir)
    assert "does not match its manifest" in line


@pytest.mark.slow
@pytest.mark.parametrize("size, channels, hint", [
    ((8, 8), 3, "8x8x3: prepare the folder's images at the preset's shape (--image-size 8,8 --channels 1)"),
    ((12, 12), 1, "12x12x1: prepare"),
])
def test_images_of_another_shape_are_refused_before_training(parent, tmp_path, size, channels, hint):
    folder = imagefolders.write(tmp_path / "images", {"": 4}, sizes=(size,), formats=("png",), channels=channels)
    run_dir = tmp_path / "run"
    result = zoo_cli("train", "cnn", "--init", "cnn.tiny", "--dataset", folder, "--epochs", "1", "--run-dir", run_dir)
    line = one_line_refusal(result, 2, run_dir)
    assert f"preset cnn.tiny takes images of shape 8x8x1, the dataset {folder.resolve()} has {hint}" in line
